"""Export a recursa trace to OpenTelemetry spans.

Every node of the recursion tree becomes an ``invoke_agent`` span whose parent
is the span of the node that spawned it; every model request becomes a
``chat`` span and every REPL cell an ``execute_tool`` span, children of their
node's span. A host tool that a tool-using sub-call ran (a ``tool_use`` event) is an
``execute_tool`` span too, a sibling of the ``chat`` spans of that sub-call (the tool
runs between two of its requests), linked to the one that asked for it. Start and
end times come from the trace (``t0``/``t`` and ``duration_s``), so a trace exported
long after the run still shows its real timeline. Attributes follow the
OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.usage.*``) with recursa's own under ``recursa.*``.

Token usage sits on the ``chat`` spans only (``gen_ai.usage.*``), so a backend
that adds up usage over a trace counts each model call once; node spans carry
their subtree totals as ``recursa.usage.*``. Prompts, answers, code and output
are exported only with ``include_content=True``, as the conventions advise.

OpenTelemetry is an optional dependency: ``pip install 'recursa[otel]'``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError, RecursaError
from .events import (
    Cell,
    ModelCall,
    NodeEnd,
    NodeStart,
    RunEnd,
    RunStart,
    Subcall,
    ToolUse,
    TracedMessage,
    parse_event,
)
from .trace import Trace, TraceNode, load

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, Tracer

__all__ = ["ExportSummary", "export_trace", "trace_to_spans"]

INSTALL_HINT = "OpenTelemetry export needs the otel extra: pip install 'recursa[otel]'"
_EXPORT_BATCH = 512
_PROVIDERS = {"gemini": "gcp.gemini", "vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock"}
_ERROR_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
#: How a ToolSet reports a tool that raised: ``name() raised KeyError: ...``.
_TOOL_RAISED = re.compile(r"^[\w.]+\(\) raised ([A-Za-z_][\w.]*):")

Attributes = dict[str, str | bool | int | float | Sequence[str]]


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_trace` sent: how many spans, under which trace id (hex)."""

    spans: int
    trace_id: str


def _require_sdk() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc


def _otlp_exporter(endpoint: str) -> SpanExporter:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"--otlp wants an http(s) URL such as http://localhost:4318, not {endpoint!r}"
        )
    if parts.path in ("", "/"):
        endpoint = urlunsplit(parts._replace(path="/v1/traces"))
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc
    return OTLPSpanExporter(endpoint=endpoint)


def export_trace(
    path: str | Path,
    exporter_or_endpoint: SpanExporter | str,
    *,
    include_content: bool = False,
    service_name: str = "recursa",
) -> ExportSummary:
    """Convert the trace at ``path`` to spans and send them.

    ``exporter_or_endpoint`` is an OpenTelemetry ``SpanExporter`` (kept open:
    it is the caller's), or the URL of an OTLP/HTTP collector such as
    ``http://localhost:4318`` (``/v1/traces`` is added when no path is given;
    ``OTEL_EXPORTER_OTLP_HEADERS`` and friends are honoured). Raises
    :class:`~recursa.errors.ConfigError` when OpenTelemetry is not installed and
    :class:`~recursa.errors.RecursaError` when the exporter refuses spans.
    """
    trace = load(path)
    if isinstance(exporter_or_endpoint, str):
        exporter, owned = _otlp_exporter(exporter_or_endpoint), True
        target = exporter_or_endpoint
    else:
        _require_sdk()
        exporter, owned = exporter_or_endpoint, False
        target = type(exporter).__name__
    try:
        spans = trace_to_spans(trace, include_content=include_content, service_name=service_name)
        from opentelemetry.sdk.trace.export import SpanExportResult

        failed = 0
        for start in range(0, len(spans), _EXPORT_BATCH):
            batch = spans[start : start + _EXPORT_BATCH]
            if exporter.export(batch) is not SpanExportResult.SUCCESS:
                failed += len(batch)
        if failed:
            raise RecursaError(f"{target} refused {failed} of {len(spans)} spans")
    finally:
        if owned:
            exporter.shutdown()
    context = spans[0].context if spans else None
    trace_id = f"{context.trace_id:032x}" if context is not None else ""
    return ExportSummary(len(spans), trace_id)


# -- conversion ------------------------------------------------------------------


def trace_to_spans(
    trace: Trace, *, include_content: bool = False, service_name: str = "recursa"
) -> list[ReadableSpan]:
    """The finished spans of a loaded trace, parents before children."""
    _require_sdk()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    collected: list[ReadableSpan] = []

    class _Collect(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            collected.append(span)

    run_start = RunStart.from_dict(trace.run_start)
    version = (run_start.version if run_start else None) or ""
    resource_attrs: dict[str, str] = {"service.name": service_name}
    if version:
        resource_attrs["service.version"] = version
    provider = TracerProvider(resource=Resource.create(resource_attrs), shutdown_on_exit=False)
    provider.add_span_processor(_Collect())
    tracer = provider.get_tracer("recursa", version or None)
    converter = _Converter(trace, tracer, include_content)
    roots = [trace.root] if trace.root is not None else []
    roots += [
        n for n in trace.nodes.values() if n.parent_id not in trace.nodes and n is not trace.root
    ]
    for root in roots:
        if root.start is not None or root.events or root.end is not None:
            converter.node(root, None)
    provider.shutdown()
    return sorted(collected, key=lambda s: s.start_time or 0)


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def _split_model(model: str | None) -> tuple[str | None, str | None]:
    if not model:
        return None, None
    provider, sep, name = model.partition("/")
    if not sep:
        return None, model
    return _PROVIDERS.get(provider, provider), name


def _error_type(message: str) -> str:
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    match = _ERROR_TYPE.match(lines[-1]) if lines else None
    return match.group(1) if match else "error"


def _clean(attrs: Mapping[str, Any]) -> Attributes:
    out: Attributes = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            out[key] = json.dumps(value, ensure_ascii=False, default=str)
    return out


def _messages(messages: Sequence[TracedMessage]) -> str:
    out = [{"role": m.role, "parts": [{"type": "text", "content": m.content}]} for m in messages]
    return json.dumps(out, ensure_ascii=False, default=str)


def _answer(text: str | None) -> str | None:
    if text is None:
        return None
    message = {"role": "assistant", "parts": [{"type": "text", "content": text}]}
    return json.dumps([message], ensure_ascii=False)


def _times(event: ModelCall | Cell | ToolUse) -> tuple[float, float] | None:
    end, start, duration = event.t, event.t0, event.duration_s
    if start is None and end is not None:
        start = end - (duration or 0.0)
    if start is None:
        return None
    if duration is not None:
        end = start + duration
    if end is None or end < start:
        end = start
    return start, end


@dataclass
class _Node:
    """A node's events, parsed."""

    start: NodeStart | None
    end: NodeEnd | None
    events: list[ModelCall | Cell | Subcall | ToolUse]

    @classmethod
    def of(cls, node: TraceNode) -> _Node:
        events: list[ModelCall | Cell | Subcall | ToolUse] = []
        for raw in node.events:
            event = parse_event(raw)
            if isinstance(event, ModelCall | Cell | Subcall | ToolUse):
                events.append(event)
        return cls(NodeStart.from_dict(node.start), NodeEnd.from_dict(node.end), events)

    def times(self) -> list[float]:
        """Every time its events were written."""
        found = [e.t for e in self.events]
        found += [e.t for e in (self.start, self.end) if e is not None]
        return [t for t in found if t is not None]


class _Converter:
    def __init__(self, trace: Trace, tracer: Tracer, include_content: bool) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        self.trace = trace
        self.tracer = tracer
        self.content = include_content
        self.otel_trace = otel_trace
        self.empty_context = otel_context.Context()
        self.run_start = RunStart.from_dict(trace.run_start)
        self.run_end = RunEnd.from_dict(trace.run_end)
        self.run_id = (self.run_start.run_id if self.run_start else None) or None
        self.nodes = {node_id: _Node.of(node) for node_id, node in trace.nodes.items()}
        self.subcalls: dict[str, Subcall] = {
            e.call_id: e
            for n in self.nodes.values()
            for e in n.events
            if isinstance(e, Subcall) and e.call_id
        }
        #: The ``chat`` spans of each sub-call so far, one per step, for tool-run links.
        self.sub_steps: dict[str, list[SpanContext]] = {}
        self.tool_runs: dict[tuple[str, int], int] = {}

    def _subtree_end(self, node: TraceNode) -> float | None:
        ends = [t for n in node.walk() for t in self.nodes[n.node_id].times()]
        return max(ends) if ends else None

    def start_key(self, node: TraceNode) -> float:
        start = self.nodes[node.node_id].start
        return start.t if start is not None and start.t is not None else float("inf")

    def _status(self, span: Span, error: str | None) -> None:
        if error:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, error[:1000]))
            span.set_attribute("error.type", _error_type(error))

    def node(self, node: TraceNode, parent: Span | None) -> None:
        parsed = self.nodes[node.node_id]
        start, end = parsed.start, parsed.end
        t_start = start.t if start is not None else None
        if t_start is None:
            times = [t for e in parsed.events if (t := e.t0 or e.t) is not None]
            t_start = min(times) if times else None
        if t_start is None:
            return
        t_end = (end.t if end is not None else None) or self._subtree_end(node) or t_start
        model = (start.model if start is not None else None) or None
        provider, model_name = _split_model(model)
        usage = end.usage if end is not None else None
        is_root = node is self.trace.root
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "recursa",
            "gen_ai.agent.id": node.node_id,
            "gen_ai.conversation.id": self.run_id,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model_name,
            "recursa.run_id": self.run_id,
            "recursa.node_id": node.node_id,
            "recursa.parent_node_id": node.parent_id,
            "recursa.parent_call_id": start.parent_call_id if start is not None else None,
            "recursa.depth": node.depth,
            "recursa.model": model,
            "recursa.iterations": end.iterations if end is not None else None,
            "recursa.stopped": end.stopped if end is not None else None,
            "recursa.unfinished": node.end is None or None,
        }
        if usage is not None:
            attrs |= {
                "recursa.cost_usd": usage.cost_usd,
                "recursa.usage.input_tokens": usage.input_tokens,
                "recursa.usage.output_tokens": usage.output_tokens,
                "recursa.usage.cached_tokens": usage.cached_tokens,
                "recursa.usage.calls": usage.calls,
            }
        context = start.context if start is not None else None
        if context is not None:
            attrs["recursa.context.type"] = context.type
            attrs["recursa.context.chars"] = context.chars
            attrs["recursa.context.items"] = context.items
        if is_root:
            run_start, run_end = self.run_start, self.run_end
            if run_start is not None:
                attrs["recursa.max_depth"] = run_start.max_depth
                attrs["recursa.max_iterations"] = run_start.max_iterations
                attrs["recursa.sandbox"] = run_start.sandbox or None
                attrs["recursa.sub_model"] = run_start.sub_model or None
            if run_end is not None:
                attrs["recursa.isolation"] = run_end.isolation or None
                attrs["recursa.depth_reached"] = run_end.depth_reached
                if run_end.cost_usd is not None:
                    attrs["recursa.cost_usd"] = run_end.cost_usd
        if self.content:
            attrs["recursa.query"] = start.query if start is not None else None
            attrs["recursa.answer"] = end.answer if end is not None else None
        parent_ctx = (
            self.otel_trace.set_span_in_context(parent)
            if parent is not None
            else self.empty_context
        )
        span = self.tracer.start_span(
            "invoke_agent recursa",
            context=parent_ctx,
            kind=self.otel_trace.SpanKind.INTERNAL,
            attributes=_clean(attrs),
            start_time=_ns(t_start),
        )
        self._status(span, end.error if end is not None else None)
        for event in parsed.events:
            if isinstance(event, ModelCall):
                self.model_call(event, node, span)
            elif isinstance(event, Cell):
                self.cell(event, node, span)
            elif isinstance(event, ToolUse):
                self.tool_use(event, node, span)
        for child in sorted(node.children, key=self.start_key):
            self.node(child, span)
        span.end(end_time=_ns(max(t_end, t_start)))

    def model_call(self, event: ModelCall, node: TraceNode, parent: Span) -> None:
        times = _times(event)
        if times is None:
            return
        model = event.model or None
        provider, model_name = _split_model(model)
        usage = event.usage
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model_name,
            "gen_ai.conversation.id": self.run_id,
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens or None,
            "recursa.cost_usd": usage.cost_usd,
            "recursa.depth": event.depth,
            "recursa.node_id": node.node_id,
            "recursa.call_id": event.call_id or None,
            "recursa.purpose": event.purpose or None,
            "recursa.iteration": event.iteration,
            "recursa.model": model,
            "recursa.cached": event.cached or None,
        }
        if self.content:
            if event.purpose == "sub":
                sub = self.subcalls.get(event.call_id)
                if sub is not None:
                    prompt = [TracedMessage("user", sub.prompt)]
                    attrs["gen_ai.input.messages"] = _messages(prompt)
                    attrs["gen_ai.output.messages"] = _answer(sub.answer)
            else:
                if event.messages is not None:
                    attrs["gen_ai.input.messages"] = _messages(event.messages)
                attrs["gen_ai.output.messages"] = _answer(event.response)
        span = self.tracer.start_span(
            f"chat {model_name or 'model'}",
            context=self.otel_trace.set_span_in_context(parent),
            kind=self.otel_trace.SpanKind.CLIENT,
            attributes=_clean(attrs),
            start_time=_ns(times[0]),
        )
        self._status(span, event.error)
        span.end(end_time=_ns(times[1]))
        if event.purpose == "sub" and event.call_id:
            self.sub_steps.setdefault(event.call_id, []).append(span.get_span_context())

    def cell(self, event: Cell, node: TraceNode, parent: Span) -> None:
        times = _times(event)
        if times is None:
            return
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "repl",
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": f"{node.node_id}.{event.iteration}.{event.index}",
            "recursa.depth": node.depth,
            "recursa.node_id": node.node_id,
            "recursa.iteration": event.iteration,
            "recursa.cell.index": event.index,
            "recursa.cell.final": event.final,
            "recursa.cell.timed_out": event.timed_out or None,
            "recursa.cell.restarted": event.restarted or None,
        }
        if self.content:
            attrs["gen_ai.tool.call.arguments"] = event.code
            attrs["gen_ai.tool.call.result"] = event.output
        span = self.tracer.start_span(
            "execute_tool repl",
            context=self.otel_trace.set_span_in_context(parent),
            kind=self.otel_trace.SpanKind.INTERNAL,
            attributes=_clean(attrs),
            start_time=_ns(times[0]),
        )
        timed_out = "TimeoutError: the cell timed out" if event.timed_out else None
        self._status(span, event.error or timed_out)
        span.end(end_time=_ns(times[1]))

    def tool_use(self, event: ToolUse, node: TraceNode, parent: Span) -> None:
        """A tool run hangs off the node, beside its sub-call's ``chat`` spans (it runs
        between two of them), and links to the one of its ``step`` that asked for it."""
        times = _times(event)
        if times is None:
            return
        key = (event.call_id, event.step)
        nth = self.tool_runs[key] = self.tool_runs.get(key, 0) + 1
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": event.tool,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": f"{event.call_id}.{event.step}.{nth - 1}",
            "recursa.depth": node.depth,
            "recursa.node_id": node.node_id,
            "recursa.call_id": event.call_id or None,
            "recursa.tool.step": event.step,
            # full lengths, also when the trace file cut the text
            "recursa.tool.arguments_chars": event.truncated.get("arguments", len(event.arguments)),
            "recursa.tool.result_chars": event.truncated.get("result", len(event.result)),
        }
        if self.content:
            attrs["gen_ai.tool.call.arguments"] = event.arguments
            attrs["gen_ai.tool.call.result"] = event.result
        steps = self.sub_steps.get(event.call_id, [])
        asked_by = steps[event.step - 1] if 0 < event.step <= len(steps) else None
        span = self.tracer.start_span(
            f"execute_tool {event.tool or 'tool'}",
            context=self.otel_trace.set_span_in_context(parent),
            kind=self.otel_trace.SpanKind.INTERNAL,
            attributes=_clean(attrs),
            links=[self.otel_trace.Link(asked_by)] if asked_by is not None else None,
            start_time=_ns(times[0]),
        )
        self._status(span, event.error)
        raised = _TOOL_RAISED.match(event.error or "")
        if raised:
            span.set_attribute("error.type", raised.group(1))
        span.end(end_time=_ns(times[1]))
