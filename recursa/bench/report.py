"""Tables, a CSV and plots from a ``results.jsonl``.

``table.md`` has, per context length, a summary in the shape of the RLM paper's
Table 1 (a row per method, a column per task, each cell the mean score in percent
with its 95% confidence interval and the mean cost per item, or the mean tokens
when a model is unpriced) and a detail table with a row per task x method x model:
n, score and interval, mean cost, input and output tokens, calls and seconds, the
runs that stopped early (on iterations or budget) or failed, and the citation
precision and recall where the task has gold locations. Intervals are Wilson for
0/1 scores and a seeded bootstrap for continuous ones (:mod:`recursa.bench.stats`).

``results.csv`` is the newest row of each (item, method), one flat column per field.
``score_vs_length.png`` is Figure 1's shape (score against context length, log
scale, a line with error bars per method, a panel per task) and
``cost_vs_length.png`` the same for the mean cost, or the mean tokens when a model
is unpriced.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .methods import METHODS
from .runner import CONFIG_FILE, RESULTS_FILE, ResultRow, read_results
from .stats import bootstrap, interval
from .tasks import TASKS
from .tokens import format_length

__all__ = [
    "COST_PLOT",
    "CSV_FILE",
    "SCORE_PLOT",
    "TABLE_FILE",
    "Cell",
    "ReportFiles",
    "cells",
    "figure",
    "plot_cost_vs_length",
    "plot_score_vs_length",
    "plot_title",
    "read_config",
    "table_markdown",
    "write_csv",
    "write_report",
]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
TABLE_FILE = "table.md"
CSV_FILE = "results.csv"
SCORE_PLOT = "score_vs_length.png"
COST_PLOT = "cost_vs_length.png"
#: Lines of one plot panel are spread this far apart (a factor on the log x axis).
_X_SPREAD = 0.045

CellKey = tuple[int, str, str, str]  # (length, task, method, model)


@dataclass(frozen=True)
class ReportFiles:
    table: Path
    csv: Path
    score_plot: Path
    cost_plot: Path


@dataclass(frozen=True)
class Cell:
    """The runs of one method with one model on one task at one length."""

    runs: int
    failed: int
    score: float  # percent, mean over runs (a failed run counts 0)
    ci_low: float  # percent: the 95% interval of the mean score
    ci_high: float
    ci_method: str  # "wilson" or "bootstrap"
    cost_mean: float | None  # USD per run; None when some run was unpriced
    input_tokens: float  # means per run
    output_tokens: float
    calls: float
    seconds: float
    stopped: dict[str, int]  # why runs ended early ("iterations", "budget") -> count
    citation_precision: float | None  # mean over the runs that have one, 0-1
    citation_recall: float | None

    @property
    def tokens(self) -> float:
        return self.input_tokens + self.output_tokens

    def text(self) -> str:
        """The summary cell: ``75.0 [30.1–95.4] $0.20``, or the tokens when unpriced."""
        spend = f"{_tokens(self.tokens)} tok" if self.cost_mean is None else _usd(self.cost_mean)
        return f"{self.score:.1f} [{self.ci_low:.1f}–{self.ci_high:.1f}] {spend}"

    def stopped_text(self) -> str:
        return ", ".join(f"{why} {n}/{self.runs}" for why, n in sorted(self.stopped.items()))


def _usd(value: float) -> str:
    places = 2 if value >= 0.1 else 3 if value >= 0.01 else 4
    return f"${value:.{places}f}"


def _tokens(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _mean_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _cell(runs: Sequence[ResultRow]) -> Cell:
    scores = [float(r.score) for r in runs]
    ci = interval(scores)
    costs = [r.cost_usd for r in runs]
    priced = [c for c in costs if c is not None]
    return Cell(
        runs=len(runs),
        failed=sum(r.error is not None for r in runs),
        score=100 * statistics.fmean(scores),
        ci_low=100 * ci.low,
        ci_high=100 * ci.high,
        ci_method=ci.method,
        cost_mean=statistics.fmean(priced) if len(priced) == len(costs) else None,
        input_tokens=statistics.fmean(r.input_tokens for r in runs),
        output_tokens=statistics.fmean(r.output_tokens for r in runs),
        calls=statistics.fmean(r.calls for r in runs),
        seconds=statistics.fmean(r.seconds for r in runs),
        stopped=dict(Counter(r.stopped for r in runs if r.stopped)),
        citation_precision=_mean_or_none(r.citation_precision for r in runs),
        citation_recall=_mean_or_none(r.citation_recall for r in runs),
    )


def cells(rows: Iterable[ResultRow]) -> dict[CellKey, Cell]:
    """``(length, task, method, model) -> Cell``."""
    groups: dict[CellKey, list[ResultRow]] = {}
    for row in rows:
        groups.setdefault((row.length, row.task, row.method, row.model), []).append(row)
    return {key: _cell(runs) for key, runs in groups.items()}


def _ordered(names: Iterable[str], canonical: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(names))
    return [n for n in canonical if n in present] + [n for n in present if n not in canonical]


@dataclass(frozen=True)
class _Lines:
    """The lines of a plot or a summary table: (method, model) pairs, labelled by the
    method alone when the directory holds one model."""

    pairs: list[tuple[str, str]]

    @classmethod
    def of(cls, rows: Sequence[ResultRow]) -> _Lines:
        methods = _ordered((r.method for r in rows), list(METHODS))
        models = list(dict.fromkeys(r.model for r in rows))
        present = {(r.method, r.model) for r in rows}
        return cls([(m, mo) for m in methods for mo in models if (m, mo) in present])

    def label(self, method: str, model: str) -> str:
        many = len({mo for _, mo in self.pairs}) > 1
        return f"{method} ({model or '?'})" if many else method


def _n_text(table: dict[CellKey, Cell], length: int | None = None) -> str:
    counts = sorted({c.runs for k, c in table.items() if length is None or k[0] == length})
    return "/".join(str(c) for c in counts)


def _fmt(value: float | None, places: int = 1, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:.{places}f}"


def table_markdown(
    rows: Sequence[ResultRow],
    *,
    models: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> str:
    """Markdown: per context length a Table-1-shaped summary and a detail table."""
    table = cells(rows)
    tasks = _ordered((r.task for r in rows), list(TASKS))
    lines_of = _Lines.of(rows)
    lengths = sorted({r.length for r in rows})
    config = config or {}
    models = models or {k: config.get(k) for k in ("model", "sub_model")}
    out = ["# Benchmark results", ""]
    described = ", ".join(f"{k.replace('_', '-')} `{v}`" for k, v in models.items() if v)
    if described:
        out += [f"Models: {described}.", ""]
    if about := _about(config):
        out += [about, ""]
    out += [
        "Summary cells: mean score in percent [95% confidence interval] and the mean cost "
        "per item in USD, or the mean tokens (input + output) per item when a model has no "
        "price. Failed runs count as 0. The interval is Wilson's for tasks scored 0 or 1 "
        "and a percentile bootstrap of the mean (2,000 resamples, seed 0) for continuous "
        "scores (oolong, oolong-pairs).",
        "",
    ]
    if not rows:
        out.append("No results yet.")
    has_citations = any(c.citation_recall is not None for c in table.values())
    for length in lengths:
        out += [f"## {format_length(length)} tokens (n = {_n_text(table, length)})", ""]
        out.append("| method | " + " | ".join(tasks) + " |")
        out.append("|---" * (len(tasks) + 1) + "|")
        failures: list[str] = []
        for method, model in lines_of.pairs:
            texts = []
            for task in tasks:
                cell = table.get((length, task, method, model))
                texts.append(cell.text() if cell else "–")
                if cell and cell.failed:
                    failures.append(f"{method} on {task}: {cell.failed} of {cell.runs}")
            if any(t != "–" for t in texts):
                out.append(f"| {lines_of.label(method, model)} | " + " | ".join(texts) + " |")
        if failures:
            out += ["", "Failed runs: " + "; ".join(failures) + "."]
        out += ["", *_detail(table, length, tasks, lines_of, has_citations), ""]
    return "\n".join(out).rstrip() + "\n"


def _about(config: dict[str, Any]) -> str:
    """One line on how the run was made, from config.json."""
    env = config.get("environment")
    config = {**config, **env} if isinstance(env, dict) else config
    parts = []
    if config.get("recursa_version"):
        commit = config.get("git_commit")
        parts.append(
            f"recursa {config['recursa_version']}" + (f" ({commit[:12]})" if commit else "")
        )
    if config.get("python"):
        parts.append(f"Python {config['python']}")
    if config.get("date"):
        parts.append(f"run {config['date']}")
    tasks = config.get("tasks")
    if isinstance(tasks, dict):
        for name, record in tasks.items():
            if isinstance(record, dict) and record.get("haystack"):
                parts.append(f"{name} haystack: {record['haystack']}")
    return "; ".join(parts) + "." if parts else ""


def _detail(
    table: dict[CellKey, Cell],
    length: int,
    tasks: Sequence[str],
    lines_of: _Lines,
    has_citations: bool,
) -> list[str]:
    head = ["task", "method", "model", "n", "score %", "95% CI", "cost $", "in tok",
            "out tok", "calls", "s", "stopped", "failed"]  # fmt: skip
    if has_citations:
        head += ["cite P %", "cite R %"]
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for task in tasks:
        for method, model in lines_of.pairs:
            cell = table.get((length, task, method, model))
            if cell is None:
                continue
            values = [
                task, method, f"`{model}`" if model else "–", str(cell.runs),
                f"{cell.score:.1f}", f"{cell.ci_low:.1f}–{cell.ci_high:.1f} ({cell.ci_method})",
                "n/a" if cell.cost_mean is None else _usd(cell.cost_mean),
                _tokens(cell.input_tokens), _tokens(cell.output_tokens), f"{cell.calls:.1f}",
                f"{cell.seconds:.1f}", cell.stopped_text() or "–",
                f"{cell.failed}/{cell.runs}" if cell.failed else "–",
            ]  # fmt: skip
            if has_citations:
                values += [
                    _fmt(cell.citation_precision, scale=100),
                    _fmt(cell.citation_recall, scale=100),
                ]
            out.append("| " + " | ".join(values) + " |")
    return out


# -- CSV ---------------------------------------------------------------------------------


def write_csv(rows: Sequence[ResultRow], path: Path) -> Path:
    """``rows`` as a CSV, one column per :class:`ResultRow` field (empty for ``None``)."""
    fields = [f.name for f in dataclasses.fields(ResultRow)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r.task, r.length, r.index, r.item, r.method)):
            writer.writerow(row.to_dict())
    return path


# -- plots -------------------------------------------------------------------------------


def plot_score_vs_length(
    rows: Sequence[ResultRow], path: Path, *, title: str | None = None
) -> Path:
    """Score (percent, 95% interval as error bars) against context length: a panel per
    task, a line per method."""
    return _plot(rows, path, "score", title)


def plot_cost_vs_length(rows: Sequence[ResultRow], path: Path, *, title: str | None = None) -> Path:
    """Mean cost per item (USD) against context length, or the mean tokens per item when
    some run was unpriced; error bars are bootstrap intervals of the mean."""
    return _plot(rows, path, "cost", title)


def _spend(runs: Sequence[ResultRow], priced: bool) -> list[float]:
    if priced:
        return [float(r.cost_usd or 0.0) for r in runs]
    return [float(r.input_tokens + r.output_tokens) for r in runs]


def _plot(
    rows: Sequence[ResultRow], path: Path, what: Literal["score", "cost"], title: str | None
) -> Path:
    fig = figure(rows, what, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def figure(rows: Sequence[ResultRow], what: Literal["score", "cost"], title: str | None) -> Any:
    """The matplotlib ``Figure`` of a plot: ``what`` is ``"score"`` or ``"cost"``."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        from ..errors import ConfigError

        raise ConfigError("plots need matplotlib: pip install 'recursa[bench]'") from exc
    table = cells(rows)
    groups: dict[CellKey, list[ResultRow]] = {}
    for row in rows:
        groups.setdefault((row.length, row.task, row.method, row.model), []).append(row)
    priced = all(c.cost_mean is not None for c in table.values())
    tasks = _ordered((r.task for r in rows), list(TASKS)) or ["(no results)"]
    lines_of = _Lines.of(rows)
    lengths = sorted({r.length for r in rows})
    cols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    fig = Figure(figsize=(4.8 * cols + 1.6, 3.8 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    if what == "score":
        ylabel = "score (%)"
    else:
        ylabel = "mean cost per item (USD)" if priced else "mean tokens per item (unpriced)"
    centre = (len(lines_of.pairs) - 1) / 2
    for i, ax in enumerate(axes.flat):
        if i >= len(tasks):
            ax.set_visible(False)
            continue
        task = tasks[i]
        for k, (method, model) in enumerate(lines_of.pairs):
            xs: list[float] = []
            ys: list[float] = []
            lows: list[float] = []
            highs: list[float] = []
            for length in lengths:
                cell = table.get((length, task, method, model))
                if cell is None:
                    continue
                if what == "score":
                    y, lo, hi = cell.score, cell.ci_low, cell.ci_high
                else:
                    values = _spend(groups[(length, task, method, model)], priced)
                    y = statistics.fmean(values)
                    lo, hi = bootstrap(values)
                # Spread the lines sideways so that equal points do not hide each other.
                xs.append(length * (1 + _X_SPREAD) ** (k - centre))
                ys.append(y)
                lows.append(max(0.0, y - lo))
                highs.append(max(0.0, hi - y))
            if xs:
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[lows, highs],
                    color=f"C{k % 10}",
                    marker=_MARKERS[k % len(_MARKERS)],
                    markersize=7 - k % 3,
                    linestyle=("-", "--", "-.", ":")[k % 4],
                    capsize=3,
                    label=lines_of.label(method, model),
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
    if title:
        fig.suptitle(title)
    # One legend for all panels; a method keeps its colour and marker in every panel.
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper")
    return fig


def plot_title(rows: Sequence[ResultRow], config: dict[str, Any]) -> str:
    """``model openai/gpt-5, sub-model openai/gpt-5-mini · n = 20 · 2026-01-01``."""
    models = {k: config.get(k) for k in ("model", "sub_model")}
    if not models["model"]:
        models["model"] = ", ".join(dict.fromkeys(r.model for r in rows if r.model)) or None
    named = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in models.items() if v)
    env = config.get("environment")
    when = env.get("date") if isinstance(env, dict) else config.get("date")
    date = str(when or dt.datetime.now(dt.UTC).isoformat())[:10]
    n_text = _n_text(cells(rows)) or "0"
    return " · ".join(p for p in (named, f"n = {n_text} per point", date) if p)


# -- all of it ---------------------------------------------------------------------------


def read_config(out_dir: Path) -> dict[str, Any]:
    """``config.json`` of a bench directory, or ``{}``."""
    try:
        data = json.loads((out_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_report(out_dir: str | Path, results: str | Path | None = None) -> ReportFiles:
    """Write ``table.md``, ``results.csv`` and the two plots into ``out_dir`` from its
    ``results.jsonl`` (or ``results``)."""
    out = Path(out_dir)
    rows = read_results(Path(results) if results is not None else out / RESULTS_FILE)
    config = read_config(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / TABLE_FILE
    table.write_text(table_markdown(rows, config=config), encoding="utf-8")
    title = plot_title(rows, config)
    return ReportFiles(
        table=table,
        csv=write_csv(rows, out / CSV_FILE),
        score_plot=plot_score_vs_length(rows, out / SCORE_PLOT, title=title),
        cost_plot=plot_cost_vs_length(rows, out / COST_PLOT, title=title),
    )
