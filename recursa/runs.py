"""The log of runs: each trace in the runs directory, summarised cheaply.

A summary reads two lines of a trace: the first (``run_start``: id, time, query,
model) and the last, found by reading backwards from the end (``run_end``: answer,
cost, how it stopped), so listing a thousand runs does not read a thousand traces. A
trace without a readable ``run_end`` (a run still going, or one that was killed) is
:data:`INCOMPLETE`, never an error. Runs are found by path, id or a unique id prefix.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: The status of a trace with no ``run_end``: a run still going, or killed.
INCOMPLETE = "running?/incomplete"
#: How far back from the end one read goes while looking for the last line.
_BLOCK = 64 * 1024
#: ``Settings.trace_path`` names a trace ``YYYYMMDD-HHMMSS-<run id>.jsonl``.
_RUN_FILE = re.compile(r"^\d{8}-\d{6}-(?P<id>[0-9a-f]+)$")


@dataclass(frozen=True)
class RunSummary:
    """One past run, from its trace's first and last events."""

    path: Path
    run_id: str
    started: float | None
    query: str
    model: str
    answer: str | None
    cost_usd: float | None
    status: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "started": self.started, "query": self.query,
            "model": self.model, "answer": self.answer, "cost_usd": self.cost_usd,
            "status": self.status, "error": self.error, "trace": str(self.path),
        }  # fmt: skip


def run_status(end: dict[str, Any] | None) -> str:
    """``answered``, ``stopped:<reason>``, ``failed`` or :data:`INCOMPLETE`."""
    if end is None:
        return INCOMPLETE
    stopped = end.get("stopped")
    if stopped == "error":
        return "failed"
    return f"stopped:{stopped}" if stopped else "answered"


def summarize(path: Path) -> RunSummary:
    """The summary of the trace at ``path``; an unreadable or partial one is incomplete."""
    try:
        start = first_event(path, "run_start")
        end = last_event(path, "run_end")
    except OSError:
        start = end = None
    start = start or {}
    return RunSummary(
        path=path,
        run_id=str(start.get("run_id") or file_run_id(path)),
        started=start.get("t") if isinstance(start.get("t"), (int, float)) else None,
        query=str(start.get("query") or ""),
        model=str(start.get("model") or ""),
        answer=None if end is None else str(end.get("answer") or ""),
        cost_usd=end.get("cost_usd") if end is not None else None,
        status=run_status(end),
        error=None if end is None else end.get("error"),
    )


def trace_files(directory: Path) -> list[Path]:
    """The ``*.jsonl`` files in ``directory``, newest first (by modification time)."""
    dated = []
    for path in directory.glob("*.jsonl"):
        try:
            dated.append((path.stat().st_mtime, path.name, path))
        except OSError:  # removed while listing
            continue
    return [path for *_, path in sorted(dated, reverse=True)]


def list_runs(directory: Path, limit: int | None = None) -> list[RunSummary]:
    """The newest ``limit`` runs in ``directory`` (all with ``None``), newest first."""
    files = trace_files(directory)
    return [summarize(path) for path in files[:limit]]


def file_run_id(path: Path) -> str:
    """The run id in a trace's file name (``...-3f2a9c1b2d4e.jsonl``), else its stem."""
    found = _RUN_FILE.match(path.stem)
    return found.group("id") if found else path.stem


def find_run(ref: str, directory: Path) -> Path:
    """The trace ``ref`` names: a path to a file, else a run id or a unique prefix of
    one among the traces in ``directory``. A usage error says why none is found."""
    if not ref.strip():
        raise ConfigError("give a run id, an id prefix or a trace path")
    given = Path(ref).expanduser()
    if given.is_file():
        return given
    matches = [p for p in trace_files(directory) if file_run_id(p).startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"no run {ref!r} in {directory} (recursa runs lists them)")
    ids = ", ".join(file_run_id(p) for p in matches[:5])
    raise ConfigError(f"{ref!r} matches {len(matches)} runs ({ids}...): give more of the id")


def latest_run(directory: Path) -> Path | None:
    """The newest trace in ``directory``, or ``None`` if there is none."""
    files = trace_files(directory) if directory.is_dir() else []
    return files[0] if files else None


def first_event(path: Path, kind: str) -> dict[str, Any] | None:
    """The trace's first line as an event of type ``kind``, or ``None``."""
    return _event(_first_line(path), kind)


def last_event(path: Path, kind: str) -> dict[str, Any] | None:
    """The trace's last non-empty line as an event of type ``kind``, or ``None``; read
    backwards from the end, so a long trace is not read whole."""
    return _event(_last_line(path), kind)


def _event(line: bytes, kind: str) -> dict[str, Any] | None:
    """The event of type ``kind`` on ``line``, or ``None`` (not JSON, another type)."""
    try:
        event = json.loads(line)
    except ValueError:  # JSON errors and undecodable bytes
        return None
    return event if isinstance(event, dict) and event.get("type") == kind else None


def _first_line(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.readline()


def _last_line(path: Path) -> bytes:
    """The last non-empty line, read backwards from the end a block at a time."""
    with path.open("rb") as fh:
        position = fh.seek(0, os.SEEK_END)
        tail = b""
        while position > 0:
            step = min(_BLOCK, position)
            position -= step
            fh.seek(position)
            tail = fh.read(step) + tail
            body = tail.rstrip()
            cut = body.rfind(b"\n")
            if cut >= 0:
                return body[cut + 1 :]
        return tail.strip()
