"""Tables and plots from a ``results.jsonl``.

``table.md`` has one table per context length in the shape of the RLM paper's
Table 1: a row per method, a column per task, each cell ``score (mean cost ±
std)`` with the score in percent (mean over items) and the cost per item in
USD (``n/a`` when a model was unpriced). ``score_vs_length.png`` is Figure 1's
shape (score against context length, log scale, a line per method, a panel
per task) and ``cost_vs_length.png`` the same for the mean cost.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .methods import METHODS
from .runner import CONFIG_FILE, RESULTS_FILE, ResultRow, read_results
from .tasks import TASKS
from .tokens import format_length

__all__ = [
    "COST_PLOT",
    "SCORE_PLOT",
    "TABLE_FILE",
    "Cell",
    "ReportFiles",
    "cells",
    "plot_cost_vs_length",
    "plot_score_vs_length",
    "table_markdown",
    "write_report",
]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
TABLE_FILE = "table.md"
SCORE_PLOT = "score_vs_length.png"
COST_PLOT = "cost_vs_length.png"


@dataclass(frozen=True)
class ReportFiles:
    table: Path
    score_plot: Path
    cost_plot: Path


@dataclass(frozen=True)
class Cell:
    """The runs of one method on one task at one length."""

    runs: int
    failed: int
    score: float  # percent, mean over runs
    cost_mean: float | None  # USD per run; None when some run was unpriced
    cost_std: float | None

    def text(self) -> str:
        if self.cost_mean is None or self.cost_std is None:
            return f"{self.score:.1f} (n/a)"
        return f"{self.score:.1f} ({_usd_pair(self.cost_mean, self.cost_std)})"


def _usd_pair(mean: float, std: float) -> str:
    places = 2 if mean >= 0.1 else 3 if mean >= 0.01 else 4
    return f"${mean:.{places}f} ± ${std:.{places}f}"


def cells(rows: Iterable[ResultRow]) -> dict[tuple[int, str, str], Cell]:
    """``(length, task, method) -> Cell``."""
    groups: dict[tuple[int, str, str], list[ResultRow]] = {}
    for row in rows:
        groups.setdefault((row.length, row.task, row.method), []).append(row)
    out: dict[tuple[int, str, str], Cell] = {}
    for key, runs in groups.items():
        costs = [r.cost_usd for r in runs]
        priced = [c for c in costs if c is not None]
        mean = std = None
        if len(priced) == len(costs):
            mean = statistics.fmean(priced)
            std = statistics.stdev(priced) if len(priced) > 1 else 0.0
        out[key] = Cell(
            runs=len(runs),
            failed=sum(r.error is not None for r in runs),
            score=100 * statistics.fmean(r.score for r in runs),
            cost_mean=mean,
            cost_std=std,
        )
    return out


def _ordered(names: Iterable[str], canonical: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(names))
    return [n for n in canonical if n in present] + [n for n in present if n not in canonical]


def table_markdown(rows: Sequence[ResultRow], *, models: dict[str, Any] | None = None) -> str:
    """Markdown with one Table-1-shaped table per context length."""
    table = cells(rows)
    tasks = _ordered((r.task for r in rows), list(TASKS))
    methods = _ordered((r.method for r in rows), list(METHODS))
    lengths = sorted({r.length for r in rows})
    lines = ["# Benchmark results", ""]
    if models:
        described = ", ".join(f"{k.replace('_', '-')} `{v}`" for k, v in models.items() if v)
        lines += [f"Models: {described}.", ""]
    lines += [
        "Each cell: score (mean cost ± std). The score is in percent, averaged over items; "
        "the cost is in USD per item (n/a: a model without a price). Failed runs count as 0.",
        "",
    ]
    if not rows:
        lines.append("No results yet.")
    for length in lengths:
        counts = sorted({c.runs for (ln, _, _), c in table.items() if ln == length})
        n_text = "/".join(str(c) for c in counts)
        lines += [f"## {format_length(length)} tokens (n = {n_text})", ""]
        lines.append("| method | " + " | ".join(tasks) + " |")
        lines.append("|---" * (len(tasks) + 1) + "|")
        failures: list[str] = []
        for method in methods:
            texts = []
            for task in tasks:
                cell = table.get((length, task, method))
                texts.append(cell.text() if cell else "–")
                if cell and cell.failed:
                    failures.append(f"{method} on {task}: {cell.failed} of {cell.runs}")
            lines.append(f"| {method} | " + " | ".join(texts) + " |")
        if failures:
            lines += ["", "Failed runs: " + "; ".join(failures) + "."]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def plot_score_vs_length(rows: Sequence[ResultRow], path: Path) -> Path:
    """Score (percent) against context length: a panel per task, a line per method."""
    return _plot(rows, path, "score", "score (%)")


def plot_cost_vs_length(rows: Sequence[ResultRow], path: Path) -> Path:
    """Mean cost per item (USD) against context length; unpriced points are left out."""
    return _plot(rows, path, "cost", "mean cost per item (USD)")


def _plot(rows: Sequence[ResultRow], path: Path, what: str, ylabel: str) -> Path:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        from ..errors import ConfigError

        raise ConfigError("plots need matplotlib: pip install 'recursa[bench]'") from exc
    table = cells(rows)
    tasks = _ordered((r.task for r in rows), list(TASKS)) or ["(no results)"]
    methods = _ordered((r.method for r in rows), list(METHODS))
    lengths = sorted({r.length for r in rows})
    cols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(tasks):
            ax.set_visible(False)
            continue
        task = tasks[i]
        for method in methods:
            xs: list[int] = []
            ys: list[float] = []
            for length in lengths:
                cell = table.get((length, task, method))
                if cell is None:
                    continue
                value = cell.score if what == "score" else cell.cost_mean
                if value is not None:
                    xs.append(length)
                    ys.append(value)
            if xs:
                k = methods.index(method)
                ax.plot(
                    xs,
                    ys,
                    color=f"C{k % 10}",
                    marker=_MARKERS[k % len(_MARKERS)],
                    markersize=7 - k % 3,
                    label=method,
                )
        ax.set_title(task)
        ax.set_xscale("log")
        if lengths:
            ax.set_xticks(lengths, [format_length(v) for v in lengths])
            ax.minorticks_off()
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(ylabel)
        if what == "score":
            ax.set_ylim(-3, 103)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if what == "cost" and not ax.get_legend_handles_labels()[0]:
            ax.text(0.5, 0.5, "unpriced", ha="center", va="center", transform=ax.transAxes)
    # One legend for all panels; a method keeps its colour and marker in every panel.
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        ordered = [m for m in methods if m in handles]
        fig.legend([handles[m] for m in ordered], ordered, loc="outside right upper")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write_report(out_dir: str | Path, results: str | Path | None = None) -> ReportFiles:
    """Write ``table.md`` and the two plots into ``out_dir`` from its ``results.jsonl``
    (or ``results``)."""
    out = Path(out_dir)
    rows = read_results(Path(results) if results is not None else out / RESULTS_FILE)
    models: dict[str, Any] | None = None
    config = out / CONFIG_FILE
    if config.exists():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            models = {"model": data.get("model"), "sub_model": data.get("sub_model")}
        except (OSError, json.JSONDecodeError, AttributeError):
            models = None
    out.mkdir(parents=True, exist_ok=True)
    table = out / TABLE_FILE
    table.write_text(table_markdown(rows, models=models), encoding="utf-8")
    return ReportFiles(
        table=table,
        score_plot=plot_score_vs_length(rows, out / SCORE_PLOT),
        cost_plot=plot_cost_vs_length(rows, out / COST_PLOT),
    )
