"""One RLM over three providers, each behind its own real local HTTP server: the root on
Anthropic, sub-calls on Gemini, and one llm_query(..., model=...) on an OpenAI server."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from recursa import RLM
from recursa.models import registry
from recursa.models.anthropic import AnthropicModel
from recursa.models.gemini import GeminiModel
from recursa.models.openai import OpenAIModel
from recursa.models.registry import ModelOptions
from recursa.testing import Received, ScriptedServer
from tests.helpers import requires
from tests.providers.servers import AnthropicServer, GeminiServer, options

pytestmark = [
    requires("anthropic", "google.genai"),
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
]

ROOT_TURNS = [
    "Let me ask.\n```repl\n"
    "city = llm_query('Which city is named here? ' + context)\n"
    "count = llm_query('Count to three.', model='openai/gpt-4o-mini')\n"
    "print(city, count)\n```",
    "```repl\nFINAL(city + ' / ' + count)\n```",
]


async def test_root_sub_and_per_call_models_on_three_providers(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def root(r: Received) -> str:
        turn = sum(m["role"] == "assistant" for m in r.body["messages"])
        return ROOT_TURNS[int(turn)]

    anthropic_server = serve(AnthropicServer, root)
    gemini_server = serve(GeminiServer, lambda r: "Paris")
    with ScriptedServer(lambda body: "1 2 3") as openai_server:
        monkeypatch.setattr(registry, "_registered", dict(registry._registered))

        def third_provider(name: str, opts: ModelOptions) -> OpenAIModel:
            return OpenAIModel(name, options=replace(opts, base_url=openai_server.url, api_key="k"))

        registry.register_provider("openai", third_provider)
        rlm = RLM(
            model=AnthropicModel(
                "claude-sonnet-4-5", options=options(anthropic_server.url, api_key="test-key")
            ),
            sub_model=GeminiModel(
                "gemini-2.5-flash", options=options(gemini_server.url, api_key="test-key")
            ),
            sandbox="inprocess",
            allowed_models=["openai/gpt-4o-mini"],  # the per-call model the code names
        )
        result = await rlm.acompletion("Which city, and count to three?", "I live in Paris.")

    assert result.answer == "Paris / 1 2 3", result.error
    assert result.stopped is None
    by_model = result.usage.by_model
    assert set(by_model) == {
        "anthropic/claude-sonnet-4-5",
        "gemini/gemini-2.5-flash",
        "openai/gpt-4o-mini",
    }
    assert [by_model[m].calls for m in sorted(by_model)] == [2, 1, 1]
    assert result.usage.by_depth[0].calls == 2
    assert result.usage.by_depth[1].calls == 2

    # The sub-call reached Gemini as a one-turn conversation.
    (gemini_request,) = gemini_server.requests
    assert gemini_request.body["contents"][0]["parts"][0]["text"].startswith("Which city")
    assert len(openai_server.requests) == 1

    # The root's second turn carried cache breakpoints and read its first turn back.
    second = anthropic_server.bodies[1]
    assert second["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert second["messages"][-2]["role"] == "assistant"
    assert second["messages"][-2]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    root_usage = by_model["anthropic/claude-sonnet-4-5"]
    assert root_usage.cached_tokens == anthropic_server.usages[1]["cache_read_input_tokens"] > 0

    # Every provider priced its calls, so the whole tree has a cost.
    costs = [u.cost_usd for u in by_model.values()]
    assert all(c is not None and c > 0 for c in costs)
    assert result.cost_usd == pytest.approx(sum(c for c in costs if c is not None))
