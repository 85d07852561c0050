"""anthropic/<model> through the real SDK against a local Messages API server."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from recursa.errors import (
    AuthenticationError,
    ConfigError,
    ContextWindowError,
    ModelError,
    ModelNotFoundError,
)
from recursa.models.anthropic import AnthropicModel, create, to_anthropic
from recursa.models.base import Message
from recursa.sampling import Sampling
from recursa.testing import HTTPFailure, Received, Reply
from tests.helpers import requires
from tests.providers.servers import AnthropicServer, options

# Newer SDKs warn that claude-sonnet-4-5 is nearing retirement; the name is only a fixture here.
pytestmark = [
    requires("anthropic"),
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
]

EPHEMERAL = {"type": "ephemeral"}
SONNET = "claude-sonnet-4-5"
# claude-sonnet-4-5: $3 input, $15 output, $0.30 cache read, $3.75 cache write per MTok.


def make(server: AnthropicServer, name: str = SONNET, **kw: Any) -> AnthropicModel:
    return AnthropicModel(name, options=options(server.url, api_key="test-key"), **kw)


CONVERSATION: list[Message] = [
    {"role": "system", "content": "You are an RLM. " * 50},
    {"role": "user", "content": "Query: what is it?"},
    {"role": "assistant", "content": "```repl\nprint(context[:10])\n```"},
    {"role": "user", "content": "Output: abcdefghij"},
]


async def test_one_shot_reply_usage_and_cost(serve: Any) -> None:
    server = serve(AnthropicServer, lambda r: "Paris")
    async with make(server) as model:
        c = await model.complete([{"role": "user", "content": "Capital of France?"}])
    assert c.text == "Paris"
    assert c.model == "anthropic/claude-sonnet-4-5"
    (request,) = server.requests
    sent_key = request.headers.get("x-api-key") or request.headers["authorization"]
    assert sent_key.removeprefix("Bearer ") == "test-key"
    assert "anthropic-version" in request.headers
    body = request.body
    assert body["model"] == SONNET
    assert body["max_tokens"] == 8192
    assert "system" not in body
    # A one-shot prompt is never read back: no cache write is paid for it.
    assert "cache_control" not in str(body)
    usage = server.usages[0]
    assert (c.input_tokens, c.output_tokens, c.cached_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
        0,
    )
    assert c.cost_usd == pytest.approx((c.input_tokens * 3 + c.output_tokens * 15) / 1e6)


async def test_system_prompt_and_history_prefix_carry_cache_markers(serve: Any) -> None:
    server = serve(AnthropicServer, lambda r: "ok")
    async with make(server) as model:
        await model.complete(CONVERSATION, max_tokens=100, sampling=Sampling(temperature=0.2))
    body = server.bodies[0]
    assert body["max_tokens"] == 100
    assert body["temperature"] == 0.2
    assert body["system"] == [
        {"type": "text", "text": CONVERSATION[0]["content"], "cache_control": EPHEMERAL}
    ]
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]
    first, prefix_end, newest = body["messages"]
    assert "cache_control" not in first["content"][-1]
    # The last message before the newest user turn ends the stable prefix ...
    assert prefix_end["content"][-1]["cache_control"] == EPHEMERAL
    # ... and the newest turn is written so the next turn reads it back.
    assert newest["content"][-1]["cache_control"] == EPHEMERAL
    assert str(body).count("cache_control") <= 4


async def test_growing_conversation_reads_the_cache_and_prices_writes_and_reads(
    serve: Any,
) -> None:
    server = serve(AnthropicServer, lambda r: "```repl\nprint(1)\n```")
    messages = list(CONVERSATION[:2])
    completions = []
    async with make(server) as model:
        for turn in range(3):
            completions.append(c := await model.complete(messages))
            messages += [
                {"role": "assistant", "content": c.text},
                {"role": "user", "content": f"Output of turn {turn}: " + "x" * 400},
            ]
    first, second, third = completions
    assert first.cached_tokens == 0
    assert 0 < second.cached_tokens < third.cached_tokens
    for c, usage in zip(completions, server.usages, strict=True):
        fresh, written, read = (
            usage["input_tokens"],
            usage["cache_creation_input_tokens"],
            usage["cache_read_input_tokens"],
        )
        assert c.input_tokens == fresh + written + read
        assert c.cached_tokens == read
        expected = (fresh * 3 + written * 3.75 + read * 0.30 + c.output_tokens * 15) / 1e6
        assert c.cost_usd == pytest.approx(expected)
    # Everything but the newest user turn was in the cache on the third turn.
    assert server.usages[2]["cache_read_input_tokens"] > server.usages[2]["input_tokens"]


async def test_cost_of_reported_cache_writes_and_reads_is_exact(serve: Any) -> None:
    usage = {
        "input_tokens": 100,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 10_000,
        "output_tokens": 50,
    }
    server = serve(AnthropicServer, lambda r: Reply("ok", usage))
    async with make(server) as model:
        c = await model.complete(CONVERSATION)
    assert (c.input_tokens, c.cached_tokens, c.output_tokens) == (11_100, 10_000, 50)
    # 100 x $3 + 1000 x $3.75 (write, 1.25x) + 10000 x $0.30 (read, 0.1x) + 50 x $15
    assert c.cost_usd == pytest.approx(7800 / 1e6)


async def test_one_hour_cache_writes_cost_twice_the_input_price(serve: Any) -> None:
    usage: dict[str, Any] = {
        "input_tokens": 0,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400},
    }
    server = serve(AnthropicServer, lambda r: Reply("ok", usage))
    async with make(server) as model:
        c = await model.complete(CONVERSATION)
    assert c.cost_usd == pytest.approx((600 * 3.75 + 400 * 6.0) / 1e6)


async def test_unpriced_model_has_no_cost(serve: Any) -> None:
    server = serve(AnthropicServer, lambda r: "ok")
    async with make(server, name="claude-future-9") as model:
        c = await model.complete([{"role": "user", "content": "hi"}])
    assert c.cost_usd is None
    assert c.input_tokens > 0


async def test_wrong_key_is_a_one_line_authentication_error(serve: Any) -> None:
    server = serve(AnthropicServer, lambda r: "never", api_key="the-real-key")
    async with make(server) as model:
        with pytest.raises(AuthenticationError) as info:
            await model.complete([{"role": "user", "content": "hi"}])
    message = str(info.value)
    assert "authentication failed (401): invalid x-api-key" in message
    assert "anthropic/claude-sonnet-4-5" in message
    assert "\n" not in message
    assert info.value.status == 401
    assert len(server.requests) == 1  # not retried


async def test_unknown_model_is_model_not_found(serve: Any) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(404, f"model: {r.body['model']}")

    server = serve(AnthropicServer, reply)
    async with make(server, name="claude-nope") as model:
        with pytest.raises(
            ModelNotFoundError, match=r"model not found \(404\): model: claude-nope"
        ):
            await model.complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [529, 503, 429])
async def test_overloaded_then_success_is_retried(serve: Any, status: int) -> None:
    failures = {"left": 2}

    def reply(r: Received) -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise HTTPFailure(status, "Overloaded")
        return "fine"

    server = serve(AnthropicServer, reply)
    async with make(server) as model:
        c = await model.complete([{"role": "user", "content": "hi"}])
    assert c.text == "fine"
    assert len(server.requests) == 3


async def test_persistent_overload_gives_up_with_the_status(serve: Any) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(529, "Overloaded")

    server = serve(AnthropicServer, reply)
    async with make(server) as model:
        with pytest.raises(ModelError, match="HTTP 529: Overloaded") as info:
            await model.complete([{"role": "user", "content": "hi"}])
    assert info.value.status == 529
    assert len(server.requests) == 4  # the first try and 3 retries


async def test_prompt_too_long_is_a_context_window_error(serve: Any) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(400, "prompt is too long: 250000 tokens > 200000 maximum")

    server = serve(AnthropicServer, reply)
    async with make(server) as model:
        with pytest.raises(ContextWindowError, match="prompt is too long"):
            await model.complete([{"role": "user", "content": "hi"}])


async def test_connection_refused_is_reported_at_once(serve: Any) -> None:
    server = serve(AnthropicServer, lambda r: "ok")
    url = server.url
    server.close()
    model = AnthropicModel(SONNET, options=options(url, api_key="k"))
    async with model:
        with pytest.raises(ModelError, match=re.escape(f"at {url}: connection refused")):
            await model.complete([{"role": "user", "content": "hi"}])


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel(SONNET)


async def test_key_from_environment_and_registry_factory(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    server = serve(AnthropicServer, lambda r: "ok")
    model = create(SONNET, options(server.url))
    assert model.spec == "anthropic/claude-sonnet-4-5"
    async with model:
        assert (await model.complete([{"role": "user", "content": "hi"}])).text == "ok"


def test_the_model_survives_successive_event_loops(serve: Any) -> None:
    server = serve(AnthropicServer, lambda r: "ok")
    model = make(server)

    async def once() -> str:
        async with model:
            return (await model.complete([{"role": "user", "content": "hi"}])).text

    assert asyncio.run(once()) == "ok"
    assert asyncio.run(once()) == "ok"


def test_translation_merges_roles_fills_empty_turns_and_keeps_the_input() -> None:
    messages: list[Message] = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "c"},
    ]
    before = repr(messages)
    system, turns = to_anthropic(messages)
    assert repr(messages) == before
    assert system == [{"type": "text", "text": "sys", "cache_control": EPHEMERAL}]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["text"] for b in turns[0]["content"]] == ["a", "b"]
    assert turns[1]["content"] == [{"type": "text", "text": "(empty)", "cache_control": EPHEMERAL}]
    assert turns[2]["content"] == [{"type": "text", "text": "c", "cache_control": EPHEMERAL}]


def test_image_parts_become_anthropic_image_blocks() -> None:
    _, turns = to_anthropic(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            }
        ]
    )
    assert turns[0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    ]
