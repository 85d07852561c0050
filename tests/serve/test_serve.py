"""`recursa serve`: the OpenAI-compatible server, driven by the official openai client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from recursa import RLM, Budget
from recursa.serve import (
    QUERY_MAX_CHARS,
    App,
    BackgroundServer,
    RunOptions,
    Server,
    conversation,
    make_app,
    rlm_factory,
    tighter,
)
from recursa.testing import HTTPFailure, ScriptedServer, http_router, is_root_turn

SANDBOX = "inprocess"
KEY = "sk-test-123"
ANSWER_TURNS = [
    "```repl\nn = llm_query('size ' + str(len(context)))\nprint(n)\n```",
    "FINAL_VAR(n)",
]


def sub_reply(prompt: str) -> str:
    return f"it is {prompt.split()[-1]} characters"


HTTP: httpx.Client  # one client for the module: making one per request is slow


@pytest.fixture(scope="module", autouse=True)
def _http() -> Iterator[None]:
    global HTTP
    with httpx.Client(timeout=30) as client:
        HTTP = client
        yield


@pytest.fixture
def backend() -> Iterator[ScriptedServer]:
    """The models' server: root turns and sub-calls are scripted."""
    with ScriptedServer(http_router(ANSWER_TURNS, sub_reply)) as server:
        yield server


@pytest.fixture(scope="module")
def plain() -> Iterator[tuple[ScriptedServer, BackgroundServer]]:
    """One backend and server for the tests that never reach a run."""
    backend = ScriptedServer(http_router(ANSWER_TURNS, sub_reply))
    with backend, BackgroundServer(make_app(template(backend))) as server:
        yield backend, server


def template(backend: ScriptedServer, **options: Any) -> RLM:
    return RLM("openai/root", "openai/sub", base_url=backend.url, sandbox=SANDBOX, **options)


@pytest.fixture
def serving() -> Iterator[Callable[..., BackgroundServer]]:
    servers: list[BackgroundServer] = []

    def start(app: App) -> BackgroundServer:
        server = BackgroundServer(app).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def client(server: BackgroundServer, key: str = KEY, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, **kw)


def test_chat_completion_with_the_openai_client(
    backend: ScriptedServer, serving: Callable[..., BackgroundServer], tmp_path: Path
) -> None:
    server = serving(make_app(template(backend), api_key=KEY, trace_dir=tmp_path / "traces"))
    with client(server) as c:
        reply = c.chat.completions.create(
            model="recursa",
            messages=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Here is a report: " + "x" * 500},
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": "How long was the report?"},
            ],
        )
    assert reply.object == "chat.completion" and reply.model == "recursa"
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    # The context is the conversation before the last user message, with role headers.
    expected = "### system\nYou are terse.\n\n### user\nHere is a report: " + "x" * 500
    expected += "\n\n### assistant\nNoted."
    assert choice.message.content == f"it is {len(expected)} characters"
    root_first = backend.requests[0]["messages"]
    assert "Query: How long was the report?" in root_first[1]["content"]
    assert reply.usage is not None
    rlm = reply.model_extra["rlm"] if reply.model_extra else {}
    assert rlm["usage"]["calls"] == 3 == len(backend.requests)
    assert set(rlm["usage"]["by_model"]) == {"openai/root", "openai/sub"}
    assert set(rlm["usage"]["by_depth"]) == {"0", "1"}
    assert reply.usage.prompt_tokens == rlm["usage"]["input_tokens"] > 0
    assert reply.usage.completion_tokens == rlm["usage"]["output_tokens"] > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert rlm["iterations"] == 2 and rlm["depth_reached"] == 1 and rlm["stopped"] is None
    assert "cost_usd" in rlm
    assert Path(rlm["trace"]).parent == tmp_path / "traces" and Path(rlm["trace"]).exists()


def test_streaming_with_the_openai_client(
    backend: ScriptedServer, serving: Callable[..., BackgroundServer]
) -> None:
    server = serving(make_app(template(backend), api_key=KEY))
    with client(server) as c:
        stream = c.chat.completions.create(
            model="recursa",
            messages=[{"role": "user", "content": "hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "it is 11 characters"  # one message: it is its own context
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    rlm = finals[0].model_extra["rlm"] if finals[0].model_extra else {}
    assert rlm["usage"]["calls"] == 3
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == rlm["usage"]["input_tokens"]
    assert len({ch.id for ch in chunks}) == 1


def test_raw_stream_has_progress_and_done(
    backend: ScriptedServer, serving: Callable[..., BackgroundServer]
) -> None:
    server = serving(make_app(template(backend)))
    body = {"model": "recursa", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with HTTP.stream("POST", f"{server.url}/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    progress = [
        json.loads(line.split(" ", 2)[2]) for line in lines if line.startswith(": progress")
    ]
    assert progress and progress[-1]["calls"] == 3
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert data[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert data[-1]["choices"][0]["finish_reason"] == "stop" and "rlm" in data[-1]


async def test_async_client_against_a_server_on_the_same_loop(backend: ScriptedServer) -> None:
    app = make_app(template(backend), api_key=KEY)
    async with (
        Server(app, port=0) as server,
        openai.AsyncOpenAI(base_url=server.url, api_key=KEY, max_retries=0) as c,
    ):
        models = await c.models.list()
        assert [m.id for m in models.data] == ["recursa"]
        reply = await c.chat.completions.create(
            model="recursa", messages=[{"role": "user", "content": "abc"}]
        )
        assert reply.choices[0].message.content == "it is 3 characters"
        stream = await c.chat.completions.create(
            model="recursa", messages=[{"role": "user", "content": "abcd"}], stream=True
        )
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
        assert text == "it is 4 characters"


def test_bearer_token_is_required(
    backend: ScriptedServer, serving: Callable[..., BackgroundServer]
) -> None:
    server = serving(make_app(template(backend), api_key=KEY))
    with client(server, key="wrong") as c, pytest.raises(openai.AuthenticationError) as caught:
        c.chat.completions.create(model="recursa", messages=[{"role": "user", "content": "q"}])
    assert caught.value.status_code == 401
    r = HTTP.get(f"{server.url}/models")  # no Authorization header at all
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert backend.requests == []  # nothing ran
    assert HTTP.get(f"{server.url.removesuffix('/v1')}/health").status_code == 200  # no key


def test_the_rlm_extension_field(
    serving: Callable[..., BackgroundServer],
) -> None:
    turns = ["```repl\nFINAL(f'{type(context).__name__}:{len(context)}')\n```"]
    with ScriptedServer(http_router(turns)) as backend:
        # a USD budget needs priced models (an unpriced one cannot switch the limit off)
        priced = {"openai/root": (0.0, 0.0), "openai/sub": (0.0, 0.0)}
        server = serving(make_app(template(backend, budget=Budget(calls=50), prices=priced)))
        with client(server) as c:
            reply = c.chat.completions.create(
                model="recursa",
                messages=[{"role": "user", "content": "how many documents?"}],
                extra_body={
                    "rlm": {
                        "context": ["doc one", "doc two", "doc three"],
                        "max_depth": 0,
                        "max_iterations": 3,
                        "budget": {"calls": 5, "usd": 1.5},
                    }
                },
            )
        assert reply.choices[0].message.content == "list:3"
        system = backend.requests[0]["messages"][0]["content"]
        assert "no sub-model functions" in system  # max_depth=0 reached the run
        assert "Query: how many documents?" in backend.requests[0]["messages"][1]["content"]


def test_budget_from_a_request_only_tightens_the_servers() -> None:
    server = Budget(usd=1.0, calls=10)
    assert tighter(server, None) == server
    assert tighter(None, Budget(calls=3)) == Budget(calls=3)
    assert tighter(server, Budget(usd=5.0, calls=3, seconds=9)) == Budget(
        usd=1.0, calls=3, seconds=9
    )


def test_runs_stop_on_the_requested_budget(
    backend: ScriptedServer, serving: Callable[..., BackgroundServer]
) -> None:
    server = serving(make_app(template(backend)))
    with client(server) as c:
        reply = c.chat.completions.create(
            model="recursa",
            messages=[{"role": "user", "content": "q"}],
            extra_body={"rlm": {"budget": {"calls": 2}}},
        )
    assert reply.choices[0].finish_reason == "length"  # stopped early
    assert reply.model_extra is not None and reply.model_extra["rlm"]["stopped"] == "budget"
    assert reply.model_extra["rlm"]["usage"]["calls"] == 2


def _blocking_backend() -> tuple[ScriptedServer, threading.Event, threading.Event]:
    """A backend whose root turns wait for ``release``; ``entered`` is set by the first."""
    entered, release = threading.Event(), threading.Event()

    def reply(body: dict[str, Any]) -> str:
        if is_root_turn(body["messages"]):
            entered.set()
            release.wait(20)
        return "FINAL(done)"

    return ScriptedServer(reply), entered, release


def _post(url: str, **kw: Any) -> httpx.Response:
    body = {"model": "recursa", "messages": [{"role": "user", "content": "q"}], **kw}
    return HTTP.post(f"{url}/chat/completions", json=body, timeout=30)


def test_concurrency_limit_answers_429_when_the_queue_is_full(
    serving: Callable[..., BackgroundServer],
) -> None:
    backend, entered, release = _blocking_backend()
    with backend, ThreadPoolExecutor(4) as pool:
        app = make_app(template(backend), max_concurrent_runs=1, max_queued=1)
        server = serving(app)
        first = pool.submit(_post, server.url)
        assert entered.wait(10)
        second = pool.submit(_post, server.url)  # waits for the slot
        deadline = time.monotonic() + 10
        while app.queued < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (app.running, app.queued) == (1, 1)
        third = _post(server.url)
        assert third.status_code == 429
        assert third.headers["retry-after"] == "1"
        assert third.json()["error"]["code"] == "rate_limit_exceeded"
        assert third.json()["error"]["type"] == "rate_limit_error"
        streamed = _post(server.url, stream=True)  # refused before any stream starts
        assert streamed.status_code == 429
        assert streamed.headers["content-type"] == "application/json"
        release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
        assert first.result().json()["choices"][0]["message"]["content"] == "done"
        assert (app.running, app.queued) == (0, 0)
        assert len(backend.requests) == 2


def test_a_queued_stream_is_told_and_then_served(
    serving: Callable[..., BackgroundServer],
) -> None:
    backend, entered, release = _blocking_backend()
    with backend, ThreadPoolExecutor(2) as pool:
        app = make_app(
            template(backend), max_concurrent_runs=1, max_queued=4, keepalive_seconds=0.05
        )
        server = serving(app)
        first = pool.submit(_post, server.url)
        assert entered.wait(10)
        body = {"model": "recursa", "stream": True, "messages": [{"role": "user", "content": "q"}]}
        with HTTP.stream("POST", f"{server.url}/chat/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            assert json.loads(next(lines)[6:])["choices"][0]["delta"]["role"] == "assistant"
            rest = []
            for line in filter(None, lines):
                rest.append(line)
                if rest.count(": queued") == 3:  # told at once, then while it waits
                    release.set()
        assert rest[:3] == [": queued"] * 3 and rest[-1] == "data: [DONE]"
        assert first.result().status_code == 200


def test_a_client_that_goes_away_cancels_its_run(
    serving: Callable[..., BackgroundServer],
) -> None:
    backend, entered, release = _blocking_backend()
    with backend:
        app = make_app(template(backend), max_concurrent_runs=1, max_queued=0)
        server = serving(app)
        with pytest.raises(httpx.ReadTimeout):
            _post_timeout = HTTP.post(
                f"{server.url}/chat/completions",
                json={"messages": [{"role": "user", "content": "q"}]},
                timeout=0.5,
            )
        assert entered.is_set()
        deadline = time.monotonic() + 10
        while app.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.running == 0  # the run was cancelled: its slot is free again
        release.set()


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (b"{not json", None, "could not parse the JSON body"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b"{}", "messages", "'messages' is required"),
        (b'{"messages": []}', "messages", "'messages' is required"),
        (b'{"messages": ["hi"]}', "messages[0]", "must be an object with a 'role'"),
        (b'{"messages": [{"role": "system", "content": "x"}]}', "messages", "no user message"),
        (b'{"messages": [{"role": "user", "content": "  "}]}', "messages[0]", "is empty"),
        (b'{"messages": [{"role": "user", "content": "q"}], "n": 2}', "n", "only n=1"),
        (
            b'{"messages": [{"role": "user", "content": "q"}], "rlm": {"depth": 1}}',
            "rlm",
            "unknown field 'depth'",
        ),
        (
            b'{"messages": [{"role": "user", "content": "q"}], "rlm": {"max_depth": -1}}',
            "rlm.max_depth",
            ">= 0",
        ),
        (
            b'{"messages": [{"role": "user", "content": "q"}], "rlm": {"max_iterations": true}}',
            "rlm.max_iterations",
            ">= 1",
        ),
        (
            b'{"messages": [{"role": "user", "content": "q"}], "rlm": {"budget": {"usd": 0}}}',
            "rlm.budget.usd",
            "positive",
        ),
        (
            b'{"messages": [{"role": "user", "content": "q"}], "rlm": {"budget": {"dollars": 1}}}',
            "rlm.budget",
            "unknown field",
        ),
        (
            b'{"messages": [{"role": "user", "content": "q"}], "rlm": {"context": 5}}',
            "rlm.context",
            "must be a string",
        ),
        (
            b'{"messages": [{"role": "user", "content": "q"}], "rlm": {"context": "  "}}',
            "rlm.context",
            "empty",
        ),
    ],
)
def test_bad_requests_are_400(
    plain: tuple[ScriptedServer, BackgroundServer], body: bytes, param: str | None, message: str
) -> None:
    backend, server = plain
    r = HTTP.post(
        f"{server.url}/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert message in error["message"]
    assert backend.requests == []


def test_routes_models_and_methods(
    backend: ScriptedServer, serving: Callable[..., BackgroundServer]
) -> None:
    app = make_app(template(backend), allow_models=["openai/other"])
    server = serving(app)
    with client(server) as c:
        assert [m.id for m in c.models.list().data] == ["recursa", "openai/other"]
        assert c.models.retrieve("openai/other").id == "openai/other"
        with pytest.raises(openai.NotFoundError):
            c.models.retrieve("openai/unknown")
        with pytest.raises(openai.NotFoundError) as caught:
            c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        assert "does not exist" in str(caught.value)
        # An allowed spec becomes the root model of the run.
        reply = c.chat.completions.create(
            model="openai/other", messages=[{"role": "user", "content": "abc"}]
        )
        assert reply.model == "openai/other"
        assert reply.model_extra is not None
        assert set(reply.model_extra["rlm"]["usage"]["by_model"]) == {"openai/other", "openai/sub"}
    assert backend.requests[0]["model"] == "other"
    r = HTTP.get(f"{server.url}/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = HTTP.get(f"{server.url}/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_a_failed_run_is_a_500_with_its_message(
    serving: Callable[..., BackgroundServer],
) -> None:
    def reply(body: dict[str, Any]) -> str:
        raise HTTPFailure(401, "Incorrect API key provided")

    with ScriptedServer(reply) as backend:
        server = serving(make_app(template(backend)))
        r = _post(server.url)
        assert r.status_code == 500
        error = r.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "run_failed"
        assert "authentication failed (401)" in error["message"]
        with client(server) as c:
            stream = c.chat.completions.create(
                model="recursa", messages=[{"role": "user", "content": "q"}], stream=True
            )
            with pytest.raises(openai.APIError, match="authentication failed"):
                list(stream)


def test_large_bodies_are_413(
    backend: ScriptedServer, serving: Callable[..., BackgroundServer]
) -> None:
    server = serving(make_app(template(backend), max_body_bytes=1000))
    r = _post(server.url, rlm={"context": "x" * 2000})
    assert r.status_code == 413


def test_keep_alive_connection_serves_several_requests(
    backend: ScriptedServer, serving: Callable[..., BackgroundServer]
) -> None:
    server = serving(make_app(template(backend)))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(3):
            r = http.post(
                "/chat/completions", json={"messages": [{"role": "user", "content": "ab"}]}
            )
            assert r.json()["choices"][0]["message"]["content"] == "it is 2 characters"


def test_conversation_to_query_and_context() -> None:
    assert conversation([{"role": "user", "content": "only"}]) == ("only", "only")
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]
    query, context = conversation(
        [{"role": "system", "content": "sys"}, {"role": "user", "content": parts}]
    )
    assert (query, context) == ("look", "### system\nsys")
    long = "w" * (QUERY_MAX_CHARS + 100)
    query, context = conversation(
        [{"role": "user", "content": "earlier"}, {"role": "user", "content": long}]
    )
    assert query.startswith("w" * QUERY_MAX_CHARS) and "in full at the end of `context`" in query
    assert context.endswith("### user (the query, in full)\n" + long)
    query, context = conversation([{"role": "user", "content": long}])
    assert context == long and "it is the whole of `context`" in query


async def test_app_handles_requests_without_a_socket(backend: ScriptedServer) -> None:
    app = make_app(template(backend), api_key=KEY)
    auth = {"authorization": f"Bearer {KEY}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        r = await http.get("/v1/models", headers=auth)
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "recursa"
        body = {"messages": [{"role": "user", "content": "abcde"}]}
        r = await http.post("/v1/chat/completions", headers=auth, json=body)
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "it is 5 characters"
        assert (await http.get("/v1/models")).status_code == 401


def test_factory_applies_request_options(backend: ScriptedServer, tmp_path: Path) -> None:
    base = template(
        backend,
        budget=Budget(usd=2.0),
        trace=tmp_path / "fixed.jsonl",
        max_depth=5,
        max_iterations=9,
    )
    make = rlm_factory(base)
    rlm = make(RunOptions(max_depth=3, max_iterations=4, budget=Budget(usd=9.0, calls=7)))
    assert (rlm.max_depth, rlm.max_iterations) == (3, 4)
    assert rlm.budget == Budget(usd=2.0, calls=7)
    assert rlm.trace is None  # one fixed file would be overwritten by concurrent runs
    assert (base.max_depth, base.budget) == (5, Budget(usd=2.0))  # the template is untouched
    # A request can only tighten the server's limits: depth and turns are capped.
    capped = make(RunOptions(max_depth=7, max_iterations=99))
    assert (capped.max_depth, capped.max_iterations) == (5, 9)
    other = make(RunOptions(model="openai/x"))
    assert other.model.spec == "openai/x" and other.sub_model.spec == "openai/sub"
    shared = rlm_factory(RLM("openai/a", base_url=backend.url))(RunOptions(model="openai/b"))
    assert shared.model is shared.sub_model  # a sub-model that defaulted to the root follows it


def test_the_server_stops_cleanly_with_runs_in_flight(
    serving: Callable[..., BackgroundServer],
) -> None:
    backend, entered, release = _blocking_backend()
    with backend, ThreadPoolExecutor(1) as pool:
        bg = BackgroundServer(make_app(template(backend))).__enter__()
        pending = pool.submit(_post, bg.url)
        assert entered.wait(10)
        started = time.monotonic()
        bg.close()  # cancels the run, answers it, and closes the connection
        assert time.monotonic() - started < 5
        reply = pending.result()
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "server_shutting_down"
        release.set()


def test_app_rejects_bad_settings(backend: ScriptedServer) -> None:
    from recursa.errors import ConfigError

    with pytest.raises(ConfigError):
        make_app(template(backend), max_concurrent_runs=0)
    with pytest.raises(ConfigError):
        make_app(template(backend), api_key="")


def test_openai_errors_are_shaped_like_openai(
    plain: tuple[ScriptedServer, BackgroundServer],
) -> None:
    _, server = plain
    r = HTTP.delete(f"{server.url}/models")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
