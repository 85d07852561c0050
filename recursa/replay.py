"""Replay a recorded run offline from its trace: any real run becomes a deterministic test.

::

    root, sub = replay_models("run.jsonl")
    result = RLM(root, sub, max_depth=2).completion(query, context)   # as recorded
    root.recording.verify()          # every recorded call was replayed, nothing diverged

or ``replay_rlm("run.jsonl", sandbox="inprocess")``, which also takes the settings the
trace recorded (depth, iterations, budget, sandbox, limits): a replay must be set up like
the recorded run, since the system prompt depends on them. How requests are matched to
recorded calls, and what strict and lenient matching compare, is in
:mod:`recursa.recording`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .recording import RecordedCall, RecordedSettings, Recording, ReplayMismatch, ReplayModel
from .rlm import RLM

__all__ = [
    "RecordedCall",
    "RecordedSettings",
    "Recording",
    "ReplayMismatch",
    "ReplayModel",
    "replay_models",
    "replay_rlm",
    "rlm_for",
]


def replay_models(
    trace_path: str | Path, *, strict: bool = True
) -> tuple[ReplayModel, ReplayModel]:
    """``(root, sub)`` replay models for the run recorded in ``trace_path``, with its specs."""
    return Recording.load(trace_path, strict=strict).models()


def rlm_for(recording: Recording, **options: Any) -> RLM:
    """An RLM set up as the recorded run (its models and recorded settings), ``options``
    overriding any of them (``sandbox="inprocess"``)."""
    root, sub = recording.models()
    return RLM(root, sub, **{**recording.settings.fields, **options})


def replay_rlm(trace_path: str | Path, *, strict: bool = True, **options: Any) -> RLM:
    """An RLM that replays ``trace_path`` with the recorded settings (see :func:`rlm_for`);
    its ``model.recording`` is the :class:`Recording` to :meth:`~Recording.verify` after."""
    return rlm_for(Recording.load(trace_path, strict=strict), **options)
