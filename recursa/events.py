"""The trace's events as typed values: one frozen dataclass per event type.

The writer builds one of :data:`TraceEvent` and hands it to
:meth:`recursa.trace.Tracer.emit`; :func:`encode` turns it into the dict that
every sink receives (and that :class:`~recursa.trace.JsonlSink` writes, clipped
by :func:`~recursa.trace.clip_event`). Readers turn a parsed line back into an
event with :func:`parse_event` (or ``RunEnd.from_dict`` and friends), which is
tolerant: unknown fields are ignored, missing ones read as their default (null,
false, zero, empty), so traces of older versions, hand-written ones and
unfinished ones all load. The schema, field by field, is docs/trace.md; a test
checks that these classes, the doc and what a real run writes agree.

Fields a reader may find missing carry ``None`` where the distinction matters
(``t``, ``t0``, ``duration_s``, ``context``, ``version``, the run settings);
strings and counts the writer always sets read as ``""``/``0`` when absent.
A string the writer cut is kept cut; its full length is in ``truncated``
(``{"prompt": 61204}``, written as ``prompt_chars``).
"""

from __future__ import annotations

import builtins
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard, TypeVar, cast

from ._version import __version__
from .budget import Budget, Usage, UsageReport
from .errors import ConfigError
from .result import Citation, Stopped

if TYPE_CHECKING:
    from .context import ContextInfo
    from .models.base import Message, Model

__all__ = [
    "COMMON_FIELDS",
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Cell",
    "ContextShape",
    "EventType",
    "ModelCall",
    "ModelInfo",
    "NodeEnd",
    "NodeStart",
    "RunEnd",
    "RunStart",
    "Subcall",
    "ToolUse",
    "TraceEvent",
    "TracedMessage",
    "encode",
    "is_event",
    "parse_event",
]

SCHEMA_VERSION = 1
EventType = Literal[
    "run_start", "node_start", "model_call", "cell", "subcall", "tool_use", "node_end", "run_end"
]
Purpose = Literal["turn", "sub"]
SubcallKind = Literal["llm", "rlm"]
#: The fields every event has, in the order they are written (``run_id`` follows them on
#: ``run_start`` and ``run_end``).
COMMON_FIELDS = ("v", "type", "t", "node_id", "parent_id", "depth")
_CHARS = "_chars"

E = TypeVar("E", bound="_Event")


# -- values inside events ----------------------------------------------------------


@dataclass(frozen=True)
class ContextShape:
    """The shape of a context, never its text: ``{type, chars, items}``, plus ``skipped``
    (files left out as unreadable) for files, only when some were."""

    type: str
    chars: int
    items: int | None = None
    skipped: int | None = None

    @classmethod
    def of(cls, info: ContextInfo) -> ContextShape:
        d = info.to_dict()
        return cls(type=d["type"], chars=d["chars"], items=d["items"], skipped=info.skipped or None)


@dataclass(frozen=True)
class ModelInfo:
    """What the run knew about a model: ``{context_window, prompt_style}``."""

    context_window: int | None
    prompt_style: str = "full"

    @classmethod
    def of(cls, model: Model) -> ModelInfo:
        return cls(model.context_window, str(getattr(model, "prompt_style", "full")))


@dataclass(frozen=True)
class TracedMessage:
    """One message a turn added; ``content_chars`` is its full length when it was cut.
    ``tool_calls`` / ``tool_call_id`` are set on the messages of a tool-using sub-call
    (OpenAI's function-calling shape)."""

    role: str
    content: str | list[dict[str, Any]]
    content_chars: int | None = None
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    tool_call_id: str | None = None

    @classmethod
    def of(cls, message: Message | Mapping[str, Any]) -> TracedMessage:
        calls = message.get("tool_calls")
        call_id = message.get("tool_call_id")
        return cls(
            str(message["role"]),
            message["content"],
            tool_calls=tuple(calls) if isinstance(calls, list) else None,
            tool_call_id=call_id if isinstance(call_id, str) else None,
        )

    @classmethod
    def all(cls, messages: Sequence[Message]) -> tuple[TracedMessage, ...]:
        return tuple(cls.of(m) for m in messages)


# -- the events --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Event:
    """The fields every event has. ``t`` is stamped when the event is made."""

    type: ClassVar[EventType]

    node_id: str
    parent_id: str | None
    depth: int
    t: float | None = field(default_factory=time.time)
    v: int = SCHEMA_VERSION
    #: Fields the writer cut, with their full length (read from ``<field>_chars``).
    truncated: Mapping[str, int] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The dict sinks receive: see :func:`encode`."""
        return encode(cast(TraceEvent, self))

    @classmethod
    def from_dict(cls: builtins.type[E], data: object) -> E | None:
        """This event read from a parsed line; ``None`` if ``data`` is not one of this type."""
        event: object = parse_event(data)
        return event if isinstance(event, cls) else None


@dataclass(frozen=True, kw_only=True)
class RunStart(_Event):
    """Once, first: what the run was asked and how it was set up."""

    type: ClassVar[Literal["run_start"]] = "run_start"

    run_id: str
    query: str
    model: str
    sub_model: str
    max_depth: int
    max_iterations: int
    budget: Budget | None
    sandbox: str
    cell_timeout: float | None
    max_output_chars: int | None
    max_concurrency: int | None
    request_timeout: float | None
    compact_after_chars: int | None
    context: ContextShape | None
    models: Mapping[str, ModelInfo]
    max_errors: int | None = None
    model_settings: Mapping[str, Any] | None = None
    sub_model_settings: Mapping[str, Any] | None = None
    version: str | None = __version__
    require_citations: bool = False
    trace_prompts: str | None = None


@dataclass(frozen=True, kw_only=True)
class NodeStart(_Event):
    """A node (the root or a child RLM) begins."""

    type: ClassVar[Literal["node_start"]] = "node_start"

    query: str
    context: ContextShape | None
    model: str
    parent_call_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelCall(_Event):
    """The billing record of one model request, made when it ends. ``depth`` is the
    depth it is charged at; ``messages`` and ``response`` are on turns only."""

    type: ClassVar[Literal["model_call"]] = "model_call"

    call_id: str
    purpose: Purpose
    iteration: int | None
    model: str
    t0: float | None
    duration_s: float | None
    usage: Usage
    cached: bool = False
    error: str | None = None
    messages: tuple[TracedMessage, ...] | None = None
    response: str | None = None


@dataclass(frozen=True, kw_only=True)
class Cell(_Event):
    """One code block of a turn's reply, executed."""

    type: ClassVar[Literal["cell"]] = "cell"

    iteration: int
    index: int
    code: str
    output: str
    error: str | None = None
    t0: float | None
    duration_s: float | None
    final: bool = False
    timed_out: bool = False
    restarted: bool = False


@dataclass(frozen=True, kw_only=True)
class Subcall(_Event):
    """A call made from a node's code (``llm_query``/``rlm_query`` and their batches),
    made when it returns. ``images`` is on ``kind="llm"`` only, ``child_node_id`` on
    ``kind="rlm"`` only."""

    type: ClassVar[Literal["subcall"]] = "subcall"

    call_id: str
    kind: SubcallKind
    iteration: int
    batch_id: str | None = None
    index: int | None = None
    prompt: str
    answer: str | None
    model: str
    t0: float | None
    duration_s: float | None
    error: str | None = None
    images: int | None = None
    child_node_id: str | None = None
    tools: tuple[str, ...] | None = None
    tool_steps: int | None = None
    messages: tuple[TracedMessage, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class ToolUse(_Event):
    """A host tool a tool-using sub-call ran (``llm_query(..., tools=[...])``): ``call_id``
    is the sub-call's, ``step`` the model request that asked for it, ``result`` the JSON
    text the sub-model read back (``{"result": ...}`` or ``{"error": ...}``), ``arguments``
    the JSON text of what it asked with."""

    type: ClassVar[Literal["tool_use"]] = "tool_use"

    call_id: str
    step: int
    tool: str
    arguments: str
    result: str
    error: str | None = None
    t0: float | None
    duration_s: float | None


@dataclass(frozen=True, kw_only=True)
class NodeEnd(_Event):
    """A node finished; ``usage`` covers its whole subtree."""

    type: ClassVar[Literal["node_end"]] = "node_end"

    answer: str
    iterations: int
    stopped: Stopped | None
    usage: Usage
    duration_s: float | None
    error: str | None = None
    citations: tuple[Citation, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class RunEnd(_Event):
    """Once, last: the run's answer and totals."""

    type: ClassVar[Literal["run_end"]] = "run_end"

    run_id: str
    answer: str
    usage: UsageReport
    cost_usd: float | None
    iterations: int
    depth_reached: int
    stopped: Stopped | None
    error: str | None = None
    duration_s: float | None
    isolation: str
    citations: tuple[Citation, ...] | None = None


TraceEvent = RunStart | NodeStart | ModelCall | Cell | Subcall | ToolUse | NodeEnd | RunEnd
EVENT_CLASSES: Mapping[str, type[TraceEvent]] = {
    cls.type: cls
    for cls in (RunStart, NodeStart, ModelCall, Cell, Subcall, ToolUse, NodeEnd, RunEnd)
}
EVENT_TYPES: frozenset[str] = frozenset(EVENT_CLASSES)
_SKIP = frozenset({"node_id", "parent_id", "depth", "t", "v", "truncated"})
_OWN_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if f.name not in _SKIP) for cls in EVENT_CLASSES.values()
}


# -- writing -----------------------------------------------------------------------


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
        "calls": usage.calls,
        "cost_usd": usage.cost_usd,
    }


def _report(report: UsageReport) -> dict[str, Any]:
    out = _usage(report)
    out["by_model"] = {k: _usage(v) for k, v in report.by_model.items()}
    out["by_depth"] = {str(k): _usage(v) for k, v in report.by_depth.items()}
    return out


def _message(m: TracedMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if m.content_chars is not None:
        out["content_chars"] = m.content_chars
    out["content"] = m.content
    if m.tool_calls is not None:
        out["tool_calls"] = list(m.tool_calls)
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _plain(name: str, value: Any, event: _Event) -> Any:
    if isinstance(value, Usage):
        # run_end's totals carry their breakdowns; everywhere else usage is the five counts
        if isinstance(event, RunEnd) and isinstance(value, UsageReport):
            return _report(value)
        return _usage(value)
    if isinstance(value, Budget):
        return {"usd": value.usd, "tokens": value.tokens, "seconds": value.seconds,
                "calls": value.calls}  # fmt: skip
    if isinstance(value, ContextShape):
        shape = {"type": value.type, "chars": value.chars, "items": value.items}
        return shape if value.skipped is None else {**shape, "skipped": value.skipped}
    if name == "models" and isinstance(value, Mapping):
        return {
            spec: {"context_window": m.context_window, "prompt_style": m.prompt_style}
            for spec, m in value.items()
        }
    if name == "messages" and isinstance(value, tuple):
        return [_message(m) for m in value]
    if name == "citations" and isinstance(value, tuple):
        return [c.to_dict() for c in value]
    if name == "tools" and isinstance(value, tuple):
        return list(value)
    return value


def encode(event: TraceEvent) -> dict[str, Any]:
    """The dict form of ``event``, as sinks receive it: the fields every event has
    (``v, type, t, node_id, parent_id, depth``), then the event's own in the order of
    its class, nested values as plain dicts and lists. Null and false fields are kept
    here (a file sink leaves them out: see :func:`~recursa.trace.clip_event`)."""
    out: dict[str, Any] = {
        "v": event.v,
        "type": event.type,
        "t": event.t,
        "node_id": event.node_id,
        "parent_id": event.parent_id,
        "depth": event.depth,
    }
    truncated = event.truncated
    for name in _OWN_FIELDS[type(event)]:
        full = truncated.get(name)
        if full is not None:
            out[name + _CHARS] = full
        out[name] = _plain(name, getattr(event, name), event)
    return out


# -- reading -----------------------------------------------------------------------


def is_event(data: object) -> bool:
    """Whether a parsed line is a trace event: an object with a known ``type``. Anything
    else is a malformed line; an event missing fields is still an event."""
    return isinstance(data, dict) and data.get("type") in EVENT_TYPES


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


class _Reader:
    """Typed, tolerant access to one parsed line: a value of the wrong type reads as
    missing, and missing reads as the default."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key)
        return value if isinstance(value, str) else default

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        return value if isinstance(value, str) else None

    def integer(self, key: str, default: int = 0) -> int:
        value = self.data.get(key)
        return value if _is_int(value) else default

    def opt_integer(self, key: str) -> int | None:
        value = self.data.get(key)
        return value if _is_int(value) else None

    def opt_number(self, key: str) -> float | None:
        value = self.data.get(key)
        return float(value) if _is_number(value) else None

    def flag(self, key: str) -> bool:
        # Missing, null and false are false; older traces wrote a cell's answer in ``final``.
        value = self.data.get(key)
        return value is not None and value is not False

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self.data.get(key)
        return value if isinstance(value, dict) else None

    def usage(self, key: str = "usage") -> Usage:
        return _read_usage(self.mapping(key) or {})

    def report(self, key: str = "usage") -> UsageReport:
        data = self.mapping(key) or {}
        base = _read_usage(data)
        by_model = {
            str(k): _read_usage(v)
            for k, v in (_Reader(data).mapping("by_model") or {}).items()
            if isinstance(v, dict)
        }
        by_depth: dict[int, Usage] = {}
        for k, v in (_Reader(data).mapping("by_depth") or {}).items():
            if isinstance(v, dict) and str(k).lstrip("-").isdigit():
                by_depth[int(k)] = _read_usage(v)
        return UsageReport(
            base.input_tokens, base.output_tokens, base.cached_tokens, base.calls,
            base.cost_usd, by_model=by_model, by_depth=by_depth,
        )  # fmt: skip

    def context(self, key: str = "context") -> ContextShape | None:
        data = self.mapping(key)
        if data is None:
            return None
        r = _Reader(data)
        return ContextShape(
            r.text("type"), r.integer("chars"), r.opt_integer("items"), r.opt_integer("skipped")
        )

    def budget(self, key: str = "budget") -> Budget | None:
        data = self.mapping(key)
        if data is None:
            return None
        limits = {
            k: data[k] for k in ("usd", "tokens", "seconds", "calls") if _is_number(data.get(k))
        }
        try:
            return Budget(**limits)
        except ConfigError:  # a limit no run could have had (zero or negative)
            return None

    def models(self, key: str = "models") -> Mapping[str, ModelInfo]:
        out: dict[str, ModelInfo] = {}
        for spec, info in (self.mapping(key) or {}).items():
            if isinstance(info, dict):
                r = _Reader(info)
                out[str(spec)] = ModelInfo(
                    r.opt_integer("context_window"), r.text("prompt_style", "full")
                )
        return out

    def citations(self, key: str = "citations") -> tuple[Citation, ...] | None:
        value = self.data.get(key)
        if not isinstance(value, list):
            return None
        return tuple(c for c in map(Citation.from_dict, value) if c is not None)

    def messages(self, key: str = "messages") -> tuple[TracedMessage, ...] | None:
        value = self.data.get(key)
        if not isinstance(value, list):
            return None
        out = []
        for m in value:
            if isinstance(m, dict):
                content = m.get("content")
                if not isinstance(content, str | list):
                    content = ""
                r = _Reader(m)
                calls = m.get("tool_calls")
                out.append(
                    TracedMessage(
                        r.text("role"), content, r.opt_integer("content_chars"),
                        tool_calls=tuple(c for c in calls if isinstance(c, dict))
                        if isinstance(calls, list) else None,
                        tool_call_id=r.opt_text("tool_call_id"),
                    )
                )  # fmt: skip
        return tuple(out)

    def names(self, key: str) -> tuple[str, ...] | None:
        value = self.data.get(key)
        if not isinstance(value, list):
            return None
        return tuple(v for v in value if isinstance(v, str))


def _read_usage(data: Mapping[str, Any]) -> Usage:
    r = _Reader(data)
    return Usage(
        r.integer("input_tokens"),
        r.integer("output_tokens"),
        r.integer("cached_tokens"),
        r.integer("calls"),
        r.opt_number("cost_usd"),
    )


def _run_start(r: _Reader, common: dict[str, Any]) -> RunStart:
    return RunStart(
        **common,
        run_id=r.text("run_id"),
        query=r.text("query"),
        model=r.text("model"),
        sub_model=r.text("sub_model"),
        max_depth=r.integer("max_depth"),
        max_iterations=r.integer("max_iterations"),
        budget=r.budget(),
        sandbox=r.text("sandbox"),
        cell_timeout=r.opt_number("cell_timeout"),
        max_output_chars=r.opt_integer("max_output_chars"),
        max_concurrency=r.opt_integer("max_concurrency"),
        request_timeout=r.opt_number("request_timeout"),
        compact_after_chars=r.opt_integer("compact_after_chars"),
        context=r.context(),
        models=r.models(),
        max_errors=r.opt_integer("max_errors"),
        require_citations=r.flag("require_citations"),
        trace_prompts=r.opt_text("trace_prompts"),
        model_settings=r.mapping("model_settings"),
        sub_model_settings=r.mapping("sub_model_settings"),
        version=r.opt_text("version"),
    )


def _node_start(r: _Reader, common: dict[str, Any]) -> NodeStart:
    return NodeStart(
        **common,
        query=r.text("query"),
        context=r.context(),
        model=r.text("model"),
        parent_call_id=r.opt_text("parent_call_id"),
    )


def _model_call(r: _Reader, common: dict[str, Any]) -> ModelCall:
    return ModelCall(
        **common,
        call_id=r.text("call_id"),
        purpose=cast(Purpose, r.text("purpose")),  # as written, even a value unknown here
        iteration=r.opt_integer("iteration"),
        model=r.text("model"),
        t0=r.opt_number("t0"),
        duration_s=r.opt_number("duration_s"),
        usage=r.usage(),
        cached=r.flag("cached"),
        error=r.opt_text("error"),
        messages=r.messages(),
        response=r.opt_text("response"),
    )


def _cell(r: _Reader, common: dict[str, Any]) -> Cell:
    return Cell(
        **common,
        iteration=r.integer("iteration"),
        index=r.integer("index"),
        code=r.text("code"),
        output=r.text("output"),
        error=r.opt_text("error"),
        t0=r.opt_number("t0"),
        duration_s=r.opt_number("duration_s"),
        final=r.flag("final"),
        timed_out=r.flag("timed_out"),
        restarted=r.flag("restarted"),
    )


def _subcall(r: _Reader, common: dict[str, Any]) -> Subcall:
    return Subcall(
        **common,
        call_id=r.text("call_id"),
        kind=cast(SubcallKind, r.text("kind")),
        iteration=r.integer("iteration"),
        batch_id=r.opt_text("batch_id"),
        index=r.opt_integer("index"),
        prompt=r.text("prompt"),
        answer=r.opt_text("answer"),
        model=r.text("model"),
        t0=r.opt_number("t0"),
        duration_s=r.opt_number("duration_s"),
        error=r.opt_text("error"),
        images=r.opt_integer("images"),
        child_node_id=r.opt_text("child_node_id"),
        tools=r.names("tools"),
        tool_steps=r.opt_integer("tool_steps"),
        messages=r.messages(),
    )


def _tool_use(r: _Reader, common: dict[str, Any]) -> ToolUse:
    return ToolUse(
        **common,
        call_id=r.text("call_id"),
        step=r.integer("step"),
        tool=r.text("tool"),
        arguments=r.text("arguments"),
        result=r.text("result"),
        error=r.opt_text("error"),
        t0=r.opt_number("t0"),
        duration_s=r.opt_number("duration_s"),
    )


def _node_end(r: _Reader, common: dict[str, Any]) -> NodeEnd:
    return NodeEnd(
        **common,
        answer=r.text("answer"),
        iterations=r.integer("iterations"),
        stopped=cast(Stopped | None, r.opt_text("stopped")),
        usage=r.usage(),
        duration_s=r.opt_number("duration_s"),
        error=r.opt_text("error"),
        citations=r.citations(),
    )


def _run_end(r: _Reader, common: dict[str, Any]) -> RunEnd:
    return RunEnd(
        **common,
        run_id=r.text("run_id"),
        answer=r.text("answer"),
        usage=r.report(),
        cost_usd=r.opt_number("cost_usd"),
        iterations=r.integer("iterations"),
        depth_reached=r.integer("depth_reached"),
        stopped=cast(Stopped | None, r.opt_text("stopped")),
        error=r.opt_text("error"),
        duration_s=r.opt_number("duration_s"),
        isolation=r.text("isolation"),
        citations=r.citations(),
    )


_READERS: Mapping[str, Callable[[_Reader, dict[str, Any]], TraceEvent]] = {
    "run_start": _run_start,
    "node_start": _node_start,
    "model_call": _model_call,
    "cell": _cell,
    "subcall": _subcall,
    "tool_use": _tool_use,
    "node_end": _node_end,
    "run_end": _run_end,
}


def parse_event(data: object) -> TraceEvent | None:
    """The event a parsed trace line holds, or ``None`` when it is not one (not an object,
    or an unknown ``type``). Tolerant of everything else: unknown fields are ignored,
    missing or mistyped ones read as their default, ``<field>_chars`` siblings of cut
    strings go to ``truncated``."""
    if not is_event(data):
        return None
    assert isinstance(data, dict)
    kind = data["type"]
    r = _Reader(data)
    truncated = {
        name: full
        for name in _OWN_FIELDS[EVENT_CLASSES[kind]]
        if _is_int(full := data.get(name + _CHARS)) and isinstance(data.get(name), str)
    }
    node_id = data.get("node_id")
    common: dict[str, Any] = {
        "node_id": node_id if isinstance(node_id, str) else "",
        "parent_id": r.opt_text("parent_id"),
        "depth": r.integer("depth"),
        "t": r.opt_number("t"),
        "v": r.integer("v", SCHEMA_VERSION),
        "truncated": truncated,
    }
    return _READERS[kind](r, common)


#: ``parse_event``'s other name, the inverse of :func:`encode`.
decode = parse_event
