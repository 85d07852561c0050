"""Streamed replies from the lean OpenAI client (``stream_text``), over real HTTP
against the scripted OpenAI server: the pieces in order, usage from the last chunk,
retries before and during a stream, and when a request does not stream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recursa.errors import ModelError
from recursa.models.base import Message, ToolSchema, offer_tools, stream_text
from recursa.models.cache import CachedModel, ResponseCache
from recursa.models.openai import OpenAIModel
from recursa.testing import HTTPFailure, Received, Reply, ScriptedServer, Stream
from tests.providers.servers import OpenAIServer, options

HI: list[Message] = [{"role": "user", "content": "hi there, model"}]
TEXT = "```repl\nprint(len(context))\n```\nand then we see."


class Heard:
    """A listener that keeps what it is told: each piece, and ``RESTART`` for a restart."""

    RESTART = "<restart>"

    def __init__(self) -> None:
        self.told: list[str] = []

    def __call__(self, piece: str, *, restart: bool = False) -> None:
        self.told.append(self.RESTART if restart else piece)


def model_at(server: ScriptedServer, client: str = "http") -> OpenAIModel:
    return OpenAIModel("gpt-test", options=options(server.url + "/v1", api_key="test-key"),
                       client=client)  # fmt: skip


async def test_pieces_arrive_in_order_with_the_usage_of_the_last_chunk(
    serve: Callable[..., Any],
) -> None:
    server = serve(
        OpenAIServer, lambda r: Reply(TEXT, {"prompt_tokens": 321, "completion_tokens": 7})
    )
    heard = Heard()
    model = model_at(server)
    assert model.supports_streaming
    async with model:
        with stream_text(heard):
            reply = await model.complete(HI)
    assert len(heard.told) > 3 and "".join(heard.told) == TEXT == reply.text
    assert (reply.input_tokens, reply.output_tokens) == (321, 7)
    body = server.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_without_a_listener_the_request_does_not_stream(serve: Callable[..., Any]) -> None:
    server = serve(OpenAIServer, lambda r: TEXT)
    async with model_at(server) as model:
        reply = await model.complete(HI)
    assert reply.text == TEXT
    assert "stream" not in server.requests[0] and "stream_options" not in server.requests[0]


async def test_a_429_before_the_stream_is_retried(serve: Callable[..., Any]) -> None:
    def reply(request: Received) -> str:
        if len(server.requests) == 1:
            raise HTTPFailure(429, "slow down")
        return TEXT

    server = serve(OpenAIServer, reply)
    heard = Heard()
    async with model_at(server) as model:
        with stream_text(heard):
            completion = await model.complete(HI)
    assert len(server.requests) == 2
    assert Heard.RESTART not in heard.told and "".join(heard.told) == TEXT == completion.text


async def test_a_stream_cut_mid_way_is_retried_and_the_listener_restarts(
    serve: Callable[..., Any],
) -> None:
    def reply(request: Received) -> Reply:
        return Reply(TEXT, cut_after=2) if len(server.requests) == 1 else Reply(TEXT)

    server = serve(OpenAIServer, reply)
    heard = Heard()
    async with model_at(server) as model:
        with stream_text(heard):
            completion = await model.complete(HI)
    assert len(server.requests) == 2 and completion.text == TEXT
    restart = heard.told.index(Heard.RESTART)
    assert restart == 2 and "".join(heard.told[restart + 1 :]) == TEXT
    assert heard.told[:restart] == heard.told[restart + 1 : restart + 3]


async def test_a_stream_that_keeps_breaking_fails_after_the_retries(
    serve: Callable[..., Any],
) -> None:
    server = serve(OpenAIServer, lambda r: Reply(TEXT, cut_after=1))
    heard = Heard()
    async with model_at(server) as model:
        with stream_text(heard), pytest.raises(ModelError, match="gave up after 4 attempts"):
            await model.complete(HI)
    assert heard.told.count(Heard.RESTART) == 3 == len(server.requests) - 1


class NoUsageServer(OpenAIServer):
    """Streams without the usage chunk, as some compatible servers do."""

    def stream(self, request: Received, reply: Reply) -> Stream:
        events = super().stream(request, reply).events
        return Stream([e for e in events if "usage" not in e])


async def test_a_stream_without_usage_falls_back_to_estimates(
    serve: Callable[..., Any],
) -> None:
    server = serve(NoUsageServer, lambda r: TEXT)
    async with model_at(server) as model:
        with stream_text(Heard()):
            reply = await model.complete(HI)
    assert reply.text == TEXT
    assert reply.output_tokens == (len(TEXT) + 3) // 4
    assert reply.input_tokens == (len(HI[0]["content"]) + 3) // 4


async def test_a_request_offering_tools_is_not_streamed(serve: Callable[..., Any]) -> None:
    server = serve(OpenAIServer, lambda r: TEXT)
    heard = Heard()
    tool = ToolSchema("lookup", "looks a word up", {"type": "object", "properties": {}})
    async with model_at(server) as model:
        with stream_text(heard), offer_tools([tool]):
            reply = await model.complete(HI)
    assert reply.text == TEXT and heard.told == []
    assert "stream" not in server.requests[0]


async def test_the_sdk_client_does_not_stream(serve: Callable[..., Any]) -> None:
    server = serve(OpenAIServer, lambda r: TEXT)
    heard = Heard()
    model = model_at(server, client="sdk")
    assert not model.supports_streaming
    async with model:
        with stream_text(heard):
            reply = await model.complete(HI)
    assert reply.text == TEXT and heard.told == []
    assert "stream" not in server.requests[0]


async def test_a_cache_hit_is_told_in_one_piece(serve: Callable[..., Any], tmp_path: Path) -> None:
    server = serve(OpenAIServer, lambda r: TEXT)
    first, second = Heard(), Heard()
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        model = CachedModel(model_at(server), cache)
        assert model.supports_streaming
        async with model:
            with stream_text(first):
                await model.complete(HI)
            with stream_text(second):
                hit = await model.complete(HI)
    assert hit.cache_hit and len(server.requests) == 1
    assert len(first.told) > 1 and second.told == [TEXT]


async def test_a_server_that_refuses_streaming_gets_whole_requests_from_then_on(
    serve: Callable[..., Any],
) -> None:
    def reply(request: Received) -> str:
        if "stream_options" in request:
            raise HTTPFailure(400, "Unrecognized request argument supplied: stream_options")
        return TEXT

    server = serve(OpenAIServer, reply)
    heard = Heard()
    model = model_at(server)
    async with model:
        with stream_text(heard):
            first = await model.complete(HI)
            second = await model.complete(HI)
        assert not model.supports_streaming
    assert first.text == second.text == TEXT and heard.told == []
    assert ["stream" in r for r in server.requests] == [True, False, False]


async def test_a_context_overflow_while_streaming_is_not_retried_whole(
    serve: Callable[..., Any],
) -> None:
    def reply(request: Received) -> str:
        raise HTTPFailure(400, "This model's maximum context length is 8192 tokens")

    server = serve(OpenAIServer, reply)
    model = model_at(server)
    async with model:
        with stream_text(Heard()), pytest.raises(ModelError, match="maximum context length"):
            await model.complete(HI)
        assert model.supports_streaming
    assert len(server.requests) == 1
