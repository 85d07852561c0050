"""`recursa serve` streams the root model's text as it is written (``reasoning_content``)
and the answer (``content``) only after the run validated it: the official ``openai``
client and raw SSE, against a scripted OpenAI-compatible backend over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from recursa import RLM
from recursa.serve import BackgroundServer, make_app
from recursa.testing import Received, Reply, ScriptedServer, http_router, is_root_turn

TURNS = [
    "First I measure it.\n```repl\nn = llm_query('size ' + str(len(context)))\nprint(n)\n```",
    "That is the size.\n```repl\nFINAL_VAR(n)\n```",
]
ANSWER = "it is 11 characters"  # the one user message is its own context
HELLO: list[Any] = [{"role": "user", "content": "hello there"}]


def sub_reply(prompt: str) -> str:
    return f"it is {prompt.split()[-1]} characters"


def serving(backend: ScriptedServer) -> BackgroundServer:
    rlm = RLM("openai/root", "openai/sub", base_url=backend.url, sandbox="inprocess")
    return BackgroundServer(make_app(rlm))


def reasoning(chunk: Any) -> str:
    extra = chunk.choices[0].delta.model_extra if chunk.choices else None
    return str((extra or {}).get("reasoning_content") or "")


@pytest.fixture
def backend() -> Iterator[ScriptedServer]:
    with ScriptedServer(http_router(TURNS, sub_reply)) as server:
        yield server


def test_the_openai_client_sees_the_root_model_write_then_the_answer(
    backend: ScriptedServer,
) -> None:
    with (
        serving(backend) as server,
        openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client,
    ):
        chunks = list(client.chat.completions.create(model="recursa", messages=HELLO, stream=True))
    thought = [i for i, ch in enumerate(chunks) if reasoning(ch)]
    said = [i for i, ch in enumerate(chunks) if ch.choices and ch.choices[0].delta.content]
    assert "".join(reasoning(chunks[i]) for i in thought) == "".join(TURNS)
    assert len(thought) > len(TURNS)  # in pieces, as the backend streamed them
    assert "".join(chunks[i].choices[0].delta.content or "" for i in said) == ANSWER
    assert said and min(said) > max(thought)
    roots = [r for r in backend.requests if is_root_turn(r["messages"])]
    subs = [r for r in backend.requests if not is_root_turn(r["messages"])]
    assert len(roots) == 2 and all(r["stream"] is True for r in roots)
    assert subs and all("stream" not in r for r in subs)  # sub-calls come whole


def test_a_request_that_does_not_stream_asks_the_backend_for_no_stream(
    backend: ScriptedServer,
) -> None:
    with (
        serving(backend) as server,
        openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client,
    ):
        reply = client.chat.completions.create(model="recursa", messages=HELLO)
    assert reply.choices[0].message.content == ANSWER
    assert not (reply.choices[0].message.model_extra or {}).get("reasoning_content")
    assert all("stream" not in r for r in backend.requests)


def test_the_first_turn_arrives_while_the_run_is_still_going() -> None:
    """Each backend reply takes a while, so the run's third request (the second root
    turn) cannot have been made when the first turn's text reaches the client."""
    made_when_seen: list[int] = []
    with (
        ScriptedServer(http_router(TURNS, sub_reply), latency=0.5) as backend,
        serving(backend) as server,
    ):
        body = {"model": "recursa", "stream": True, "messages": HELLO}
        with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=60) as r:
            events = []
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                events.append(event)
                delta = event["choices"][0]["delta"] if event["choices"] else {}
                if delta.get("reasoning_content") and not made_when_seen:
                    made_when_seen.append(len(backend.requests))
        total = len(backend.requests)
    assert total == 3 and made_when_seen and made_when_seen[0] < total
    content = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    assert ANSWER in content


def test_a_turn_that_broke_off_is_marked_before_it_starts_over() -> None:
    first_turn: list[int] = []

    def reply(request: Received) -> str | Reply:
        text = http_router(TURNS, sub_reply)(request)
        if is_root_turn(request["messages"]) and not first_turn:
            first_turn.append(1)
            return Reply(text, cut_after=3)
        return text

    with ScriptedServer(reply) as backend, serving(backend) as server:
        body = {"model": "recursa", "stream": True, "messages": HELLO}
        with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=60) as r:
            events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: {")]
    marks = [i for i, e in enumerate(events) if (e.get("rlm") or {}).get("reasoning_restart")]
    pieces = [
        (i, e["choices"][0]["delta"].get("reasoning_content") or "")
        for i, e in enumerate(events)
        if e["choices"]
    ]
    assert len(marks) == 1
    before = "".join(p for i, p in pieces if i < marks[0])
    after = "".join(p for i, p in pieces if i > marks[0])
    assert TURNS[0].startswith(before) and before != TURNS[0]
    assert after == "".join(TURNS)
