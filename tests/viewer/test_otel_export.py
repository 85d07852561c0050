"""OpenTelemetry export: one span per node, model call and cell, with the trace's own times."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from recursa.errors import ConfigError, RecursaError
from recursa.otel import export_trace


@pytest.fixture
def memory_exporter() -> Any:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


def by_kind(spans: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for span in spans:
        out.setdefault(span.attributes["gen_ai.operation.name"], []).append(span)
    return out


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


def test_spans_follow_the_recursion_tree(tmp_path: Path, memory_exporter: Any, traces: Any) -> None:
    builder = traces.build_depth2()
    path = builder.write(tmp_path / "run.jsonl")
    summary = export_trace(path, memory_exporter)
    spans = memory_exporter.get_finished_spans()
    assert summary.spans == len(spans) == 2 + 7 + 5  # nodes + model calls + cells
    assert {s.context.trace_id for s in spans} == {int(summary.trace_id, 16)}
    kinds = by_kind(spans)
    assert sorted(kinds) == ["chat", "execute_tool", "invoke_agent"]

    nodes = {s.attributes["recursa.node_id"]: s for s in kinds["invoke_agent"]}
    root, child = nodes["n0"], nodes["n1"]
    assert root.parent is None
    assert child.parent.span_id == root.context.span_id
    assert child.attributes["recursa.depth"] == 1
    assert child.attributes["recursa.parent_call_id"] == "c2"
    assert root.attributes["recursa.cost_usd"] == pytest.approx(builder.usage_of()["cost_usd"])
    assert root.attributes["recursa.depth_reached"] == 2
    assert root.attributes["recursa.isolation"] == "process: rlimits"
    assert root.attributes["gen_ai.request.model"] == "gpt-5-mini"
    assert root.resource.attributes["service.name"] == "recursa"

    # every model call and cell hangs off the span of the node that issued it
    for span in kinds["chat"] + kinds["execute_tool"]:
        assert span.parent.span_id == nodes[span.attributes["recursa.node_id"]].context.span_id
    chats = {s.attributes["recursa.call_id"]: s for s in kinds["chat"]}
    events = {e.get("call_id"): e for e in builder.events if e["type"] == "model_call"}
    for call_id, span in chats.items():
        event = events[call_id]
        assert span.name == f"chat {event['model'].split('/', 1)[1]}"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.usage.input_tokens"] == event["usage"]["input_tokens"]
        assert span.attributes["gen_ai.usage.output_tokens"] == event["usage"]["output_tokens"]
        assert span.attributes["recursa.cost_usd"] == event["usage"]["cost_usd"]
        assert span.attributes["recursa.depth"] == event["depth"]
        assert span.start_time == ns(event["t0"])
        assert span.end_time == ns(event["t0"] + event["duration_s"])
    assert chats["c4"].attributes["recursa.purpose"] == "sub"  # n1's llm_query, at depth 2
    assert chats["c4"].attributes["recursa.depth"] == 2
    # node spans cover their subtree; usage is only on chat spans, so nothing counts twice
    assert child.start_time >= root.start_time and child.end_time <= root.end_time
    assert "gen_ai.usage.input_tokens" not in root.attributes
    assert root.attributes["recursa.usage.calls"] == 7

    failed = [s for s in kinds["execute_tool"] if s.attributes.get("error.type")]
    assert len(failed) == 1 and failed[0].attributes["error.type"] == "TypeError"
    assert failed[0].status.status_code.name == "ERROR"
    finals = [s for s in kinds["execute_tool"] if s.attributes["recursa.cell.final"]]
    assert {s.attributes["recursa.node_id"] for s in finals} == {"n0", "n1"}
    # no prompts or code unless asked for
    assert not any("gen_ai.input.messages" in s.attributes for s in spans)
    assert not any("gen_ai.tool.call.arguments" in s.attributes for s in spans)


def test_content_is_opt_in_and_exporter_stays_open(
    depth2_trace: Path, memory_exporter: Any
) -> None:
    export_trace(depth2_trace, memory_exporter, include_content=True)
    export_trace(depth2_trace, memory_exporter)  # the caller's exporter was not shut down
    spans = memory_exporter.get_finished_spans()
    assert len(spans) == 28
    with_content = spans[:14]
    turn = next(s for s in with_content if s.attributes.get("recursa.call_id") == "c0")
    assert '"role": "system"' in turn.attributes["gen_ai.input.messages"]
    assert "I'll look at the shape" in turn.attributes["gen_ai.output.messages"]
    sub = next(s for s in with_content if s.attributes.get("recursa.call_id") == "c4")
    assert "Summarise by city" in sub.attributes["gen_ai.input.messages"]
    cell = next(s for s in with_content if s.name == "execute_tool repl")
    assert "print(type(context)" in cell.attributes["gen_ai.tool.call.arguments"]
    root = next(s for s in with_content if s.parent is None)
    assert root.attributes["recursa.answer"] == "{'Rotterdam': 2, 'Hamburg': 1, 'Lyon': 0}"


def test_unfinished_trace_exports_what_happened(
    tmp_path: Path, memory_exporter: Any, traces: Any
) -> None:
    builder = traces.build_depth2()
    builder.events = builder.events[:9]  # the child is still running
    path = builder.write(tmp_path / "live.jsonl", malformed_after=3)
    export_trace(path, memory_exporter)
    spans = memory_exporter.get_finished_spans()
    nodes = {s.attributes["recursa.node_id"]: s for s in by_kind(spans)["invoke_agent"]}
    assert nodes["n0"].attributes["recursa.unfinished"] is True
    assert nodes["n1"].parent.span_id == nodes["n0"].context.span_id
    assert nodes["n0"].end_time >= nodes["n1"].end_time > nodes["n1"].start_time


def test_tool_runs_of_a_sub_call_are_execute_tool_spans(
    tool_trace: Path, memory_exporter: Any
) -> None:
    from recursa.trace import read_events

    events, _ = read_events(tool_trace)
    uses = [e for e in events if e["type"] == "tool_use"]
    assert len(uses) == 2
    export_trace(tool_trace, memory_exporter, include_content=True)
    spans = memory_exporter.get_finished_spans()
    tools = [s for s in spans if s.name == "execute_tool gauge"]
    assert len(tools) == 2
    node = next(s for s in spans if s.attributes["gen_ai.operation.name"] == "invoke_agent")
    chats = [s for s in spans if s.attributes.get("recursa.call_id") == uses[0]["call_id"]]
    chats = [s for s in chats if s.attributes["gen_ai.operation.name"] == "chat"]
    assert len(chats) == 2  # the request that asked for the tools, and the one after
    for span, use in zip(tools, uses, strict=True):
        assert span.parent.span_id == node.context.span_id
        assert span.attributes["gen_ai.tool.name"] == "gauge"
        assert span.attributes["recursa.call_id"] == use["call_id"]
        assert span.attributes["recursa.tool.step"] == 1
        assert span.attributes["gen_ai.tool.call.arguments"] == use["arguments"]
        assert span.attributes["gen_ai.tool.call.result"] == use["result"]
        assert span.attributes["recursa.tool.result_chars"] == len(use["result"])
        assert span.start_time == ns(use["t0"])
        assert span.end_time == ns(use["t0"] + use["duration_s"]) > span.start_time
        # linked to the chat span of the step that asked for it, which ended before it ran
        (link,) = span.links
        assert link.context.span_id == chats[0].context.span_id
        # (a chat span's end is its t0 plus its duration, both rounded: 1 ms of slack)
        slack = 1_000_000
        assert chats[0].end_time <= span.start_time + slack
        assert span.start_time <= span.end_time <= chats[1].start_time + slack
    ok, failed = tools
    assert ok.status.status_code.name == "UNSET" and "error.type" not in ok.attributes
    assert failed.status.status_code.name == "ERROR"
    assert "no gauge in Atlantis" in failed.status.description
    assert failed.attributes["error.type"] == "KeyError"
    assert ok.attributes["gen_ai.tool.call.id"] != failed.attributes["gen_ai.tool.call.id"]


def test_tool_arguments_and_results_are_opt_in_and_cut_lengths_kept(
    tmp_path: Path, tool_trace: Path, memory_exporter: Any
) -> None:
    from recursa.trace import TRUNCATION_MARK

    # a trace written with a long argument cut, as the writer cuts long strings
    lines = tool_trace.read_text(encoding="utf-8").splitlines()
    cut = []
    for line in lines:
        event = json.loads(line)
        if event["type"] == "tool_use" and "Atlantis" in event["arguments"]:
            event["arguments"] = '{"city": "Atl' + TRUNCATION_MARK
            event["arguments_chars"] = 25_000
        cut.append(json.dumps(event))
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(cut) + "\n", encoding="utf-8")
    export_trace(path, memory_exporter)
    tools = [s for s in memory_exporter.get_finished_spans() if s.name == "execute_tool gauge"]
    assert tools[1].attributes["recursa.tool.arguments_chars"] == 25_000
    for span in tools:
        assert "gen_ai.tool.call.arguments" not in span.attributes
        assert "gen_ai.tool.call.result" not in span.attributes


class _Collector(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]]
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Any]:
    pytest.importorskip(
        "opentelemetry.exporter.otlp.proto.http",
        reason="opentelemetry-exporter-otlp-proto-http is not installed",
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.bodies = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_otlp_http_endpoint(depth2_trace: Path, collector: Any) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    port = collector.server_address[1]
    summary = export_trace(depth2_trace, f"http://127.0.0.1:{port}")
    assert summary.spans == 14
    assert [p for p, _ in collector.bodies] == ["/v1/traces"]
    request = ExportTraceServiceRequest()
    request.ParseFromString(collector.bodies[0][1])
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == 14
    names = sorted({s.name for s in spans})
    assert names == [
        "chat gpt-5-mini",
        "chat gpt-5-nano",
        "execute_tool repl",
        "invoke_agent recursa",
    ]
    assert all(s.trace_id.hex() == summary.trace_id for s in spans)


def test_otlp_refusal_is_an_error(depth2_trace: Path, collector: Any) -> None:
    collector.status = 400
    port = collector.server_address[1]
    with pytest.raises(RecursaError, match="refused 14 of 14 spans"):
        export_trace(depth2_trace, f"http://127.0.0.1:{port}/v1/traces")


def test_bad_endpoint_is_a_config_error(depth2_trace: Path) -> None:
    with pytest.raises(ConfigError, match="http"):
        export_trace(depth2_trace, "localhost:4318")


def test_missing_opentelemetry_says_what_to_install(
    depth2_trace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"pip install 'recursa\[otel\]'"):
        export_trace(depth2_trace, "http://127.0.0.1:4318")
    with pytest.raises(ConfigError, match=r"pip install 'recursa\[otel\]'"):
        export_trace(depth2_trace, object())  # type: ignore[arg-type]
