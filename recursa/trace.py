"""Trajectory events, written as JSONL while the run goes.

The events themselves are typed values (:mod:`recursa.events`: one dataclass per
event type); :class:`Tracer` turns each into a dict (:func:`~recursa.events.encode`)
and hands it to its sinks. Each written event is one JSON object per line with
``"v": 1``, ``type``, ``t`` (unix seconds), ``node_id``, ``parent_id`` and
``depth`` (and ``run_id`` on ``run_start``/``run_end``). Events are flushed as they
happen, so an interrupted run leaves a readable trace. Size is linear in what
happened: a turn records only the messages it added, never the whole history;
prompt-like strings longer than ``max_chars`` (they hold context chunks) are cut
with their full length kept beside them (``<field>_chars``); what the models wrote
(``response``, ``answer``) is kept whole; null and false optional fields are left
out. The schema is in docs/trace.md.

Reading: :func:`load` rebuilds the tree of a trace file (its events as dicts),
:func:`read_events` returns the dicts of its lines, :func:`read_typed_events` the
typed events, and :func:`~recursa.events.parse_event` turns one dict into its event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from .events import (
    EVENT_CLASSES,
    EVENT_TYPES,
    SCHEMA_VERSION,
    Cell,
    ContextShape,
    EventType,
    ModelCall,
    ModelInfo,
    NodeEnd,
    NodeStart,
    RunEnd,
    RunStart,
    Subcall,
    ToolUse,
    TracedMessage,
    TraceEvent,
    decode,
    encode,
    is_event,
    parse_event,
)

__all__ = [
    "DEFAULT_MAX_CHARS",
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "FULL_PROMPTS",
    "SCHEMA_VERSION",
    "TRUNCATION_MARK",
    "Cell",
    "ContextShape",
    "Event",
    "EventType",
    "JsonlSink",
    "ModelCall",
    "ModelInfo",
    "NodeEnd",
    "NodeStart",
    "RunEnd",
    "RunStart",
    "Sink",
    "Subcall",
    "ToolUse",
    "Trace",
    "TraceEvent",
    "TraceNode",
    "TracedMessage",
    "Tracer",
    "clip_event",
    "decode",
    "encode",
    "is_event",
    "load",
    "parse_event",
    "read_events",
    "read_typed_events",
]

DEFAULT_MAX_CHARS = 200
#: ``trace_max_chars`` under ``trace_prompts="full"``: no prompt is ever cut.
FULL_PROMPTS = 2**62
TRUNCATION_MARK = "…[truncated]"

#: An event as sinks receive it and readers parse it: a JSON object.
Event = dict[str, Any]
#: What models wrote is never cut (it is small, and replay needs it whole).
UNCLIPPED_FIELDS = frozenset({"response", "answer"})
Sink = Callable[[Event], None]


class DisplaySink(Protocol):
    """A sink that draws a run as it goes (the CLI's progress, a notebook cell's)."""

    def __call__(self, event: Event) -> None: ...

    def close(self, *, failed: bool = False) -> None: ...


@contextmanager
def showing(sink: DisplaySink) -> Iterator[list[Sink]]:
    """``[sink]`` for the run's sinks, closed when the run ends: ``failed`` when it
    raised (an interrupt, an error), so the display says it stopped."""
    try:
        yield [sink]
    except BaseException:
        sink.close(failed=True)
        raise
    sink.close()


#: Inputs that may hold whole context chunks: cut at the sink's ``max_chars``.
PROMPT_FIELDS = frozenset({"prompt", "query", "content"})
#: Any other string (code, printed output) is cut only past this.
LONG_STRING_CAP = 20_000
#: Always written, even when null: the fields every event has.
REQUIRED_FIELDS = frozenset({"v", "type", "t", "node_id", "parent_id", "depth"})
_TIME_FIELDS = frozenset({"t", "t0", "duration_s"})


def _clip(value: str, limit: int) -> tuple[str, int | None]:
    if len(value) > limit:
        return value[:limit] + TRUNCATION_MARK, len(value)
    return value, None


def clip_event(event: Event, max_chars: int) -> Event:
    """The written form of an event: prompt-like strings cut at ``max_chars`` (full length in
    ``<key>_chars``), other long strings at :data:`LONG_STRING_CAP`, what models wrote kept
    whole, times rounded to milliseconds, and null or false optional fields left out."""
    out: Event = {}
    for key, value in event.items():
        if key not in REQUIRED_FIELDS and (value is None or value is False):
            continue
        if key == "messages" and isinstance(value, list):
            value = [clip_event(m, max_chars) if isinstance(m, dict) else m for m in value]
        elif key in _TIME_FIELDS and isinstance(value, float):
            value = round(value, 3)
        elif isinstance(value, str) and key not in UNCLIPPED_FIELDS:
            value, full = _clip(value, max_chars if key in PROMPT_FIELDS else LONG_STRING_CAP)
            if full is not None:
                out[f"{key}_chars"] = full
        out[key] = value
    return out


class JsonlSink:
    """Appends events to a file, one line each, flushed per event."""

    def __init__(self, path: Path, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.path = path
        self.max_chars = max_chars
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = path.open("w", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        if self._fh is None:
            return
        line = json.dumps(clip_event(event, self.max_chars), ensure_ascii=False, default=str)
        self._fh.write(line + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Tracer:
    """Fans events out to sinks (a JSONL file, the progress display, exporters)."""

    def __init__(self, run_id: str, sinks: list[Sink] | None = None) -> None:
        self.run_id = run_id
        self.sinks: list[Sink] = list(sinks or [])
        self._ids: dict[str, int] = {}

    def new_id(self, prefix: str) -> str:
        """Sequential ids per prefix: ``n0, n1, ...`` for nodes, ``c1, c2, ...`` for calls."""
        n = self._ids.get(prefix, 0)
        self._ids[prefix] = n + 1
        return f"{prefix}{n}"

    def emit(self, event: TraceEvent) -> None:
        """Hand ``event`` to every sink, as the dict :func:`~recursa.events.encode` makes."""
        if not self.sinks:
            return  # nothing reads it: skip the encoding (a run without trace or progress)
        data = encode(event)
        for sink in self.sinks:
            sink(data)

    def notify(self, type: str, node_id: str, **fields: Any) -> None:
        """An ephemeral notice (e.g. ``call_start``) for live sinks only; never written."""
        event: Event = {"type": type, "t": time.time(), "node_id": node_id, **fields}
        for sink in self.sinks:
            if getattr(sink, "live", False):
                sink(event)

    def close(self) -> None:
        for sink in self.sinks:
            if getattr(sink, "live", False):
                continue  # live sinks belong to the caller, who closes them
            close = getattr(sink, "close", None)
            if close is not None:
                close()


# -- reading -------------------------------------------------------------------


@dataclass
class TraceNode:
    """One node of the recursion tree, with the events that belong to it."""

    node_id: str
    parent_id: str | None
    depth: int
    start: Event | None = None
    end: Event | None = None
    events: list[Event] = field(default_factory=list)
    children: list[TraceNode] = field(default_factory=list)

    def walk(self) -> Iterator[TraceNode]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Trace:
    """A loaded trace: the tree, the run's first and last events, and skipped lines."""

    root: TraceNode | None
    nodes: dict[str, TraceNode]
    run_start: Event | None
    run_end: Event | None
    events: list[Event]
    warnings: list[str]


def read_events(path: str | Path) -> tuple[list[Event], list[str]]:
    """Parse a JSONL trace; malformed lines are skipped and reported, not fatal."""
    events: list[Event] = []
    warnings: list[str] = []
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                warnings.append(f"line {lineno}: not JSON ({exc.msg})")
                continue
            if not is_event(event):
                warnings.append(f"line {lineno}: not a recursa trace event")
                continue
            events.append(event)
    return events, warnings


def read_typed_events(path: str | Path) -> tuple[list[TraceEvent], list[str]]:
    """:func:`read_events`, each event parsed into its dataclass (see
    :func:`~recursa.events.parse_event`)."""
    events, warnings = read_events(path)
    typed = [e for e in map(parse_event, events) if e is not None]
    return typed, warnings


def load(path: str | Path) -> Trace:
    """Rebuild the recursion tree of a (possibly unfinished) trace file."""
    events, warnings = read_events(path)
    nodes: dict[str, TraceNode] = {}
    run_start = run_end = None
    for event in events:
        node_id = str(event.get("node_id"))
        node = nodes.get(node_id)
        if node is None:
            node = nodes[node_id] = TraceNode(
                node_id, event.get("parent_id"), int(event.get("depth", 0))
            )
        kind = event["type"]
        if kind == "run_start":
            run_start = event
        elif kind == "run_end":
            run_end = event
        elif kind == "node_start":
            node.start = event
            node.parent_id = event.get("parent_id")
            node.depth = int(event.get("depth", 0))
        elif kind == "node_end":
            node.end = event
        else:
            node.events.append(event)
    root = None
    for node in nodes.values():
        parent = nodes.get(node.parent_id) if node.parent_id else None
        if parent is not None:
            parent.children.append(node)
        elif root is None or node.depth < root.depth:
            root = node
    return Trace(root, nodes, run_start, run_end, events, warnings)
