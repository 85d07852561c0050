"""A ``recursa bench`` output directory, read for the viewer's grid of runs.

A directory holding ``results.jsonl`` and ``config.json`` is a bench directory: its
traces are under ``traces/`` (``<item>.<method>.jsonl``, written by the ``rlm`` and
``rlm-nosub`` methods) and each line of ``results.jsonl`` is one method's run on one
item. This module reads those lines as plain JSON, so the viewer does not import the
bench (nor its optional dependencies).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["BENCH_CONFIG", "BENCH_RESULTS", "BENCH_TRACES", "is_bench_dir", "read_bench"]

BENCH_RESULTS = "results.jsonl"
BENCH_CONFIG = "config.json"
BENCH_TRACES = "traces"
_MAX_ROWS = 20_000

#: The fields of a results row that the grid shows (the rest stays in the file).
_FIELDS = (
    "task", "length", "item", "index", "method", "model", "score", "cost_usd",
    "input_tokens", "output_tokens", "calls", "seconds", "stopped", "error", "answer",
    "gold", "citation_precision", "citation_recall",
)  # fmt: skip


def is_bench_dir(path: Path) -> bool:
    """Whether ``path`` is the ``--out`` directory of ``recursa bench``."""
    return path.is_dir() and (path / BENCH_RESULTS).is_file() and (path / BENCH_CONFIG).is_file()


def read_bench(path: Path, traces: set[str]) -> dict[str, Any]:
    """The grid's data: the newest row per (item, method), each with ``trace`` set to the
    name of its trace file when ``traces`` (the names on offer) has it, the run's
    config, and how many lines were not rows."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    skipped = 0
    with (path / BENCH_RESULTS).open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1  # a line cut by a crash mid-write
                continue
            if not isinstance(data, dict) or "item" not in data or "method" not in data:
                skipped += 1
                continue
            row = {key: data.get(key) for key in _FIELDS}
            name = Path(str(data.get("trace") or "")).name
            row["trace"] = name if name in traces else None
            rows[(str(row["item"]), str(row["method"]))] = row
    try:
        config = json.loads((path / BENCH_CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        config = {}
    ordered = sorted(
        rows.values(),
        key=lambda r: (str(r["task"]), _int(r["length"]), _int(r["index"]), str(r["item"])),
    )
    return {
        "config": config if isinstance(config, dict) else {},
        "rows": ordered[:_MAX_ROWS],
        "truncated": len(ordered) > _MAX_ROWS,
        "skipped_lines": skipped,
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1
