"""What to type to continue a stopped ``recursa run``: the same command, with ``--resume``.

The engine tells live sinks where the run's trace goes (the ``trace_file`` notice);
:class:`TraceWatch` remembers it, and :func:`resume_hint` turns it and the command line
into the line the CLI prints when a run is interrupted (a context read from a pipe must
be piped in again: the line says so). The suggested command writes its own trace beside
the stopped one: resuming must never overwrite the trace it replays (a second
interruption would lose what the first run had recorded).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from .trace import Event

#: Options of the stopped command that the resumed one must not repeat.
_REPLACED = ("--resume", "--replay", "--trace")


class TraceWatch:
    """A live sink that notes whether the run started and where its trace is written."""

    live = True

    def __init__(self) -> None:
        self.started = False
        self.trace: str | None = None

    def __call__(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "run_start":
            self.started = True
        elif kind == "trace_file":
            self.trace = str(event["path"])


def run_arguments(argv: Sequence[str]) -> list[str] | None:
    """The arguments after ``run`` in a ``recursa`` command line (``sys.argv``), or
    ``None`` where it holds no ``run`` (recursa called from Python)."""
    args = list(argv[1:])
    return args[args.index("run") + 1 :] if "run" in args else None


def resume_command(args: Sequence[str], trace: str) -> str:
    """``recursa run ARGS --trace NEW --resume TRACE``: ``args`` without their own
    ``--resume``/``--replay``/``--trace``; NEW is ``TRACE``'s sibling ``*.resumed.jsonl``.

    An optional-value ``--trace`` takes the next argument unless it is an option, as
    click parses it."""
    kept: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name = arg.split("=", 1)[0]
        if name not in _REPLACED:
            kept.append(arg)
        elif "=" not in arg and rest and (name != "--trace" or not _is_option(rest[0])):
            rest.pop(0)  # its value
    path = Path(trace)
    resumed = path.with_name(f"{path.stem}.resumed{path.suffix or '.jsonl'}")
    return shlex.join(["recursa", "run", *kept, "--trace", str(resumed), "--resume", trace])


def _is_option(arg: str) -> bool:
    return arg.startswith("-") and arg != "-"


def resume_hint(watch: TraceWatch, argv: Sequence[str], *, piped: bool = False) -> str | None:
    """The line to print after an interrupted run, or ``None`` if it never started.

    ``piped``: the context came from standard input, which the printed command cannot
    read again by itself; the line says to pipe the same input into it (``...`` stands
    for whatever produced it, which this process cannot know)."""
    if not watch.started:
        return None
    if watch.trace is None:
        return "recursa: this run kept no trace, so it cannot be resumed (run it with --trace)"
    args = run_arguments(argv)
    if args is None:
        return f"recursa: resume it with --resume {shlex.quote(watch.trace)}"
    command = resume_command(args, watch.trace)
    if piped:
        return f"recursa: continue it by piping the same input again: ... | {command}"
    return f"recursa: continue it with: {command}"
