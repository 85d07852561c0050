"""`recursa serve` beyond the basics: response_format as the run's output type, progress
as structured stream events, request fields capped by the server, CORS, the OpenAPI page
and the access log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from recursa import RLM
from recursa.serve import BackgroundServer, make_app
from recursa.testing import ScriptedServer, http_router

KEY = "sk-features"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["city", "n"],
    "additionalProperties": False,
}


def template(backend: ScriptedServer, **options: Any) -> RLM:
    return RLM("openai/root", "openai/sub", base_url=backend.url, sandbox="inprocess", **options)


@pytest.fixture
def backend() -> Iterator[ScriptedServer]:
    turns = ["```repl\nn = llm_query('size ' + str(len(context)))\nprint(n)\n```", "FINAL_VAR(n)"]
    with ScriptedServer(http_router(turns, lambda p: f"it is {p.split()[-1]}")) as server:
        yield server


def test_response_format_json_schema_is_the_runs_output_type() -> None:
    turns = ["```repl\nFINAL({'city': 'Oslo', 'n': len(context)})\n```"]
    with (
        ScriptedServer(http_router(turns)) as backend,
        BackgroundServer(make_app(template(backend), api_key=KEY)) as server,
        openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0) as c,
    ):
        reply = c.chat.completions.create(
            model="recursa",
            messages=[{"role": "user", "content": "where?"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "place", "schema": SCHEMA, "strict": True},
            },
        )
        assert json.loads(reply.choices[0].message.content or "") == {"city": "Oslo", "n": 6}
        first = backend.requests[0]["messages"][1]["content"]
        assert "JSON Schema" in first and '"city"' in first  # the run was told the schema
        with pytest.raises(openai.BadRequestError) as caught:
            c.chat.completions.create(
                model="recursa",
                messages=[{"role": "user", "content": "where?"}],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "bad", "schema": {"type": "nonsense"}},
                },
            )
        assert "not a valid JSON Schema" in str(caught.value)
        assert len(backend.requests) == 1  # the bad one never ran


def test_progress_as_structured_events_for_clients_that_ask(backend: ScriptedServer) -> None:
    with BackgroundServer(make_app(template(backend))) as server:
        body = {
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
            "rlm": {"progress": True},
        }
        with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=30) as r:
            lines = [line for line in r.iter_lines() if line]
        assert not [line for line in lines if line.startswith(": progress")]
        data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        progress = [d["rlm"]["progress"] for d in data if d["choices"] == [] and "rlm" in d]
        assert progress and progress[-1]["calls"] == 3
        assert {p["event"] for p in progress} >= {"node_start", "model_call"}
        assert lines[-1] == "data: [DONE]"
        # The official client reads the same stream: the progress chunks have no choices.
        with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as c:
            chunks = list(
                c.chat.completions.create(
                    model="recursa",
                    messages=[{"role": "user", "content": "hello"}],
                    stream=True,
                    extra_body={"rlm": {"progress": True}},
                )
            )
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == "it is 5"
        extras = [ch.model_extra or {} for ch in chunks if not ch.choices]
        assert any("progress" in e.get("rlm", {}) for e in extras)


def test_request_fields_only_tighten_the_servers_turns_and_depth() -> None:
    turns = ["```repl\nprint('still working')\n```"]  # never answers
    with (
        ScriptedServer(http_router(turns)) as backend,
        BackgroundServer(make_app(template(backend, max_iterations=2, max_depth=0))) as server,
        openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as c,
    ):
        reply = c.chat.completions.create(
            model="recursa",
            messages=[{"role": "user", "content": "q"}],
            extra_body={"rlm": {"max_iterations": 7, "max_depth": 3}},
        )
        rlm = reply.model_extra["rlm"] if reply.model_extra else {}
        assert rlm["iterations"] <= 2 and rlm["stopped"] == "iterations"
        assert reply.choices[0].finish_reason == "length"
        roots = [r for r in backend.requests if len(r["messages"]) > 1]
        assert len(roots) <= 3  # two turns (and at most one last call for an answer)
        assert "no sub-model functions" in roots[0]["messages"][0]["content"]  # still depth 0


def test_cors_is_off_unless_asked(backend: ScriptedServer) -> None:
    origin = "http://page.example"
    preflight = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    with BackgroundServer(make_app(template(backend), api_key=KEY)) as server:
        r = httpx.options(f"{server.url}/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = httpx.get(
            f"{server.url}/models", headers={"origin": origin, "authorization": f"Bearer {KEY}"}
        )
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    app = make_app(template(backend), api_key=KEY, cors_origins=[origin])
    with BackgroundServer(app) as server:
        r = httpx.options(f"{server.url}/chat/completions", headers=preflight)  # no key needed
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == origin
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = httpx.get(f"{server.url}/models", headers={"origin": origin})
        assert r.status_code == 401  # CORS never stands in for the key
        assert r.headers["access-control-allow-origin"] == origin  # the page can read why
        r = httpx.options(
            f"{server.url}/chat/completions", headers={**preflight, "origin": "http://evil.example"}
        )
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_openapi_page(backend: ScriptedServer) -> None:
    with BackgroundServer(make_app(template(backend), api_key=KEY)) as server:
        base = server.url.removesuffix("/v1")
        spec = httpx.get(f"{base}/openapi.json").json()
        assert spec["openapi"].startswith("3.")
        assert {"/v1/chat/completions", "/v1/models", "/health"} <= set(spec["paths"])
        chat = spec["paths"]["/v1/chat/completions"]["post"]
        assert chat["security"] == [{"bearer": []}]
        rlm = spec["components"]["schemas"]["RlmRequest"]["properties"]
        assert {"context", "max_depth", "max_iterations", "budget", "progress"} == set(rlm)
        page = httpx.get(f"{base}/docs")
        assert page.status_code == 200 and "openapi.json" in page.text
        assert page.headers["content-type"].startswith("text/html")


def test_one_access_log_line_per_request(
    backend: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recursa.serve.access")
    with BackgroundServer(make_app(template(backend), api_key=KEY)) as server:
        base = server.url.removesuffix("/v1")
        httpx.get(f"{base}/health")
        httpx.get(f"{server.url}/models?x=1")
        body = {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {KEY}"}
        with httpx.stream(
            "POST", f"{server.url}/chat/completions", json=body, headers=headers, timeout=30
        ) as r:
            r.read()
    lines = [r.getMessage() for r in caplog.records if r.name == "recursa.serve.access"]
    assert len(lines) == 3, lines
    assert '"GET /health" 200' in lines[0]
    assert '"GET /v1/models?x=1" 401' in lines[1]
    assert '"POST /v1/chat/completions" 200' in lines[2]
    assert all(line.startswith("127.0.0.1:") and line.endswith("s") for line in lines)
