"""gemini/<model> through the real google-genai SDK against a local Gemini API server."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from recursa.errors import AuthenticationError, ConfigError, ModelError, ModelNotFoundError
from recursa.models import pricing
from recursa.models.base import Message
from recursa.models.gemini import GeminiModel, _retry_delay, create, to_gemini
from recursa.sampling import Sampling
from recursa.testing import HTTPFailure, Received, Reply
from tests.helpers import requires
from tests.providers.servers import GeminiServer, options

pytestmark = requires("google.genai")

FLASH = "gemini-2.5-flash"
# gemini-2.5-flash: priced as genai-prices lists it (see recursa.models.pricing).


def make(server: GeminiServer, name: str = FLASH) -> GeminiModel:
    return GeminiModel(name, options=options(server.url, api_key="test-key"))


async def test_roles_system_instruction_and_generation_config(serve: Any) -> None:
    server = serve(GeminiServer, lambda r: "42")
    messages: list[Message] = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    async with make(server) as model:
        c = await model.complete(messages, max_tokens=64, sampling=Sampling(temperature=0.0))
    assert c.text == "42"
    assert c.model == "gemini/gemini-2.5-flash"
    (request,) = server.requests
    assert request.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert request.headers["x-goog-api-key"] == "test-key"
    body = request.body
    assert body["systemInstruction"]["parts"] == [{"text": "Be terse."}]
    assert [(c["role"], c["parts"]) for c in body["contents"]] == [
        ("user", [{"text": "q1"}]),
        ("model", [{"text": "a1"}]),
        ("user", [{"text": "q2"}]),
    ]
    assert body["generationConfig"] == {"maxOutputTokens": 64, "temperature": 0.0}


async def test_usage_counts_thinking_as_output_and_prices_cache_hits(serve: Any) -> None:
    usage = {
        "promptTokenCount": 1000,
        "candidatesTokenCount": 100,
        "thoughtsTokenCount": 50,
        "cachedContentTokenCount": 400,
    }
    server = serve(GeminiServer, lambda r: Reply("ok", usage))
    async with make(server) as model:
        c = await model.complete([{"role": "user", "content": "hi"}])
    assert (c.input_tokens, c.output_tokens, c.cached_tokens) == (1000, 150, 400)
    # 600 fresh at the input price, 400 cached at the cached price, 150 at the output price
    price = pricing.lookup(f"gemini/{FLASH}")
    assert price is not None and price.cached < price.input
    expected = 600 * price.input + 400 * price.cached + 150 * price.output
    assert c.cost_usd == pytest.approx(expected / 1e6)


async def test_bad_key_is_a_one_line_authentication_error(serve: Any) -> None:
    server = serve(GeminiServer, lambda r: "never", api_key="the-real-key")
    async with make(server) as model:
        with pytest.raises(AuthenticationError) as info:
            await model.complete([{"role": "user", "content": "hi"}])
    message = str(info.value)
    assert "authentication failed (401): API key not valid" in message
    assert "\n" not in message
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_unauthenticated_and_forbidden_are_authentication_errors(
    serve: Any, status: int
) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(status, "Permission denied on resource")

    server = serve(GeminiServer, reply)
    async with make(server) as model:
        with pytest.raises(AuthenticationError, match=f"authentication failed \\({status}\\)"):
            await model.complete([{"role": "user", "content": "hi"}])


async def test_unknown_model_is_model_not_found(serve: Any) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(404, "models/gemini-nope is not found for API version v1beta")

    server = serve(GeminiServer, reply)
    async with make(server, name="gemini-nope") as model:
        with pytest.raises(ModelNotFoundError, match=r"model not found \(404\)"):
            await model.complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [503, 429, 500])
async def test_unavailable_then_success_is_retried(serve: Any, status: int) -> None:
    failures = {"left": 2}

    def reply(r: Received) -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise HTTPFailure(status, "The model is overloaded. Please try again later.")
        return "fine"

    server = serve(GeminiServer, reply)
    async with make(server) as model:
        assert (await model.complete([{"role": "user", "content": "hi"}])).text == "fine"
    assert len(server.requests) == 3


async def test_input_too_long_is_permanent(serve: Any) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(
            400,
            "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).",
        )

    server = serve(GeminiServer, reply)
    async with make(server) as model:
        with pytest.raises(ModelError, match="exceeds the maximum number of tokens") as info:
            await model.complete([{"role": "user", "content": "hi"}])
    assert type(info.value).__name__ == "ContextWindowError"
    assert len(server.requests) == 1


async def test_connection_refused_is_reported_at_once(serve: Any) -> None:
    server = serve(GeminiServer, lambda r: "ok")
    url = server.url
    server.close()
    async with GeminiModel(FLASH, options=options(url, api_key="k")) as model:
        with pytest.raises(ModelError, match=re.escape(f"at {url}: connection refused")):
            await model.complete([{"role": "user", "content": "hi"}])


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        GeminiModel(FLASH)


@pytest.mark.parametrize("variable", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
async def test_key_from_environment_and_registry_factory(
    serve: Any, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "test-key")
    server = serve(GeminiServer, lambda r: "ok")
    model = create(FLASH, options(server.url))
    async with model:
        assert (await model.complete([{"role": "user", "content": "hi"}])).text == "ok"


def test_the_model_survives_successive_event_loops(serve: Any) -> None:
    server = serve(GeminiServer, lambda r: "ok")
    model = make(server)

    async def once() -> str:
        async with model:
            return (await model.complete([{"role": "user", "content": "hi"}])).text

    assert asyncio.run(once()) == "ok"
    assert asyncio.run(once()) == "ok"


def test_translation_merges_roles_and_fills_empty_turns() -> None:
    system, contents = to_gemini(
        [
            {"role": "system", "content": "s1"},
            {"role": "system", "content": "s2"},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": ""},
        ]
    )
    assert system == "s1\n\ns2"
    assert contents == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "(empty)"}]},
    ]


def test_retry_delay_is_read_from_retry_info() -> None:
    details = {
        "error": {
            "code": 429,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"},
            ],
        }
    }
    assert _retry_delay(details) == 36.0
    assert _retry_delay({"error": {"code": 429}}) is None
    assert _retry_delay(None) is None
