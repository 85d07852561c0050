"""Sampling per model (``model_settings`` / ``sub_model_settings``): the exact request
bodies each provider sends over real HTTP, the refusals (a ConfigError before anything
is sent), and the root/sub split through a whole RLM run."""

from __future__ import annotations

from typing import Any

import pytest

from recursa import RLM
from recursa.budget import Budget
from recursa.errors import ConfigError
from recursa.models.anthropic import AnthropicModel
from recursa.models.azure import AzureOpenAIModel
from recursa.models.base import Message
from recursa.models.gemini import GeminiModel
from recursa.models.litellm import LiteLLMModel
from recursa.models.openai import OpenAIModel, is_reasoning_model
from recursa.models.openrouter import OpenRouterModel
from recursa.sampling import Sampling
from recursa.testing import ScriptedServer, http_router, is_root_turn, node_query
from tests.helpers import requires
from tests.providers.servers import (
    AnthropicServer,
    AzureServer,
    GeminiServer,
    OpenAIServer,
    OpenRouterServer,
    options,
)

HI: list[Message] = [{"role": "user", "content": "hi"}]
FULL = Sampling(temperature=0.3, top_p=0.9, seed=7, max_tokens=64)


def _openai(server: OpenAIServer, name: str) -> OpenAIModel:
    return OpenAIModel(name, options=options(server.url + "/v1", api_key="test-key"))


def _sent(body: dict[str, Any]) -> dict[str, Any]:
    """A chat completion body less the model and messages: what sampling put there."""
    return {k: v for k, v in body.items() if k not in ("model", "messages")}


# -- OpenAI and compatible servers ------------------------------------------------------
@pytest.mark.usefixtures("openai_client")
async def test_openai_compatible_chat_model_gets_every_field(serve: Any) -> None:
    server = serve(OpenAIServer, lambda r: "ok")
    async with _openai(server, "gpt-4o-mini") as model:
        await model.complete(HI, sampling=FULL.replace(reasoning_effort="low"))
    assert _sent(server.bodies[0]) == {
        "max_tokens": 64,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "reasoning_effort": "low",  # a compatible server may know it (vLLM does)
    }


@pytest.mark.usefixtures("openai_client")
async def test_the_smaller_output_cap_is_asked_for(serve: Any) -> None:
    server = serve(OpenAIServer, lambda r: "ok")
    async with _openai(server, "gpt-4o-mini") as model:
        await model.complete(HI, max_tokens=100, sampling=Sampling(max_tokens=64))
        await model.complete(HI, max_tokens=32, sampling=Sampling(max_tokens=64))
        await model.complete(HI, sampling=Sampling())
        await model.complete(HI)
    assert [_sent(b) for b in server.bodies] == [{"max_tokens": 64}, {"max_tokens": 32}, {}, {}]


@pytest.mark.usefixtures("openai_client")
async def test_reasoning_model_gets_max_completion_tokens_and_effort(serve: Any) -> None:
    server = serve(OpenAIServer, lambda r: "ok")
    async with _openai(server, "gpt-5-mini") as model:
        await model.complete(HI, sampling=Sampling(seed=3, max_tokens=500, reasoning_effort="high"))
    assert _sent(server.bodies[0]) == {
        "max_completion_tokens": 500,
        "seed": 3,
        "reasoning_effort": "high",
    }


@pytest.mark.parametrize("name", ["gpt-5", "gpt-5-mini", "gpt-5.1", "o1", "o3-mini", "o4-mini"])
@pytest.mark.parametrize("field", ["temperature", "top_p"])
async def test_reasoning_models_refuse_temperature_and_top_p(
    serve: Any, name: str, field: str
) -> None:
    server = serve(OpenAIServer, lambda r: "never")
    async with _openai(server, name) as model:
        with pytest.raises(ConfigError) as info:
            await model.complete(HI, sampling=Sampling(**{field: 0.5}))
    message = str(info.value)
    assert f"openai/{name}" in message and f"{field}=0.5" in message
    assert "reasoning models" in message
    assert server.requests == []  # refused before anything was sent


@pytest.mark.usefixtures("openai_client")
async def test_reasoning_model_takes_the_default_and_no_reasoning_takes_any(serve: Any) -> None:
    server = serve(OpenAIServer, lambda r: "ok")
    async with _openai(server, "gpt-5.1") as model:
        await model.complete(HI, sampling=Sampling(temperature=1.0, top_p=1.0))
        await model.complete(HI, sampling=Sampling(temperature=0.2, reasoning_effort="none"))
    assert _sent(server.bodies[0]) == {"temperature": 1.0, "top_p": 1.0}
    assert _sent(server.bodies[1]) == {"temperature": 0.2, "reasoning_effort": "none"}


def test_reasoning_model_names() -> None:
    for name in ("gpt-5", "gpt-5-nano", "gpt-5.2-pro", "o1", "o3", "o4-mini", "openai/gpt-5"):
        assert is_reasoning_model(name), name
    for name in ("gpt-4o", "gpt-4.1-mini", "gpt-5-chat-latest", "omni", "llama-3", "qwen3"):
        assert not is_reasoning_model(name), name


def test_openais_own_api_caps_with_max_completion_tokens_and_refuses_effort_on_chat_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    chat = OpenAIModel("gpt-4o-mini", api_key="sk-test")
    assert chat.official
    assert chat.sampling_params(10, Sampling(temperature=0.0)) == {
        "max_completion_tokens": 10,
        "temperature": 0.0,
    }
    with pytest.raises(ConfigError, match=r"openai/gpt-4o-mini does not support reasoning_effort"):
        chat.sampling_params(None, Sampling(reasoning_effort="low"))
    reasoning = OpenAIModel("o3", api_key="sk-test")
    assert reasoning.sampling_params(10, Sampling(reasoning_effort="medium")) == {
        "max_completion_tokens": 10,
        "reasoning_effort": "medium",
    }


@pytest.mark.usefixtures("openai_client")
async def test_azure_reasoning_deployment_gets_max_completion_tokens(serve: Any) -> None:
    server = serve(AzureServer, lambda r: "ok")
    for name in ("o4-mini", "gpt-4o-mini"):
        async with AzureOpenAIModel(name, options=options(server.url, api_key="test-key")) as m:
            await m.complete(HI, sampling=Sampling(max_tokens=20, seed=1))
    assert [_sent(b) for b in server.bodies] == [
        {"max_completion_tokens": 20, "seed": 1},
        {"max_tokens": 20, "seed": 1},
    ]


@pytest.mark.usefixtures("openai_client")
async def test_openrouter_always_gets_max_tokens(serve: Any) -> None:
    server = serve(OpenRouterServer, lambda r: "ok")
    model = OpenRouterModel(
        "openai/gpt-5", options=options(server.url + "/api/v1", api_key="test-key")
    )
    async with model:
        await model.complete(HI, sampling=Sampling(max_tokens=20, reasoning_effort="low"))
        with pytest.raises(ConfigError, match=r"temperature=0\.1"):
            await model.complete(HI, sampling=Sampling(temperature=0.1))
    assert [_sent(b) for b in server.bodies] == [{"max_tokens": 20, "reasoning_effort": "low"}]


# -- Anthropic ------------------------------------------------------------------------
SONNET = "claude-sonnet-4-5"
# Newer SDKs warn that claude-sonnet-4-5 is nearing retirement; the name is only a fixture here.
deprecated_name = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def _anthropic(server: AnthropicServer) -> AnthropicModel:
    return AnthropicModel(SONNET, options=options(server.url, api_key="test-key"))


def _anthropic_sent(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("model", "messages", "system")}


@deprecated_name
async def test_anthropic_temperature_top_p_and_max_tokens(serve: Any) -> None:
    pytest.importorskip("anthropic")
    server = serve(AnthropicServer, lambda r: "ok")
    async with _anthropic(server) as model:
        await model.complete(HI, sampling=Sampling(temperature=0.3, top_p=0.9, max_tokens=64))
        await model.complete(HI)
    assert _anthropic_sent(server.bodies[0]) == {"max_tokens": 64, "temperature": 0.3, "top_p": 0.9}
    assert _anthropic_sent(server.bodies[1]) == {"max_tokens": 8192}  # the API requires one


@deprecated_name
@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 2048), ("high", 4096)]
)
async def test_anthropic_reasoning_effort_is_extended_thinking(
    serve: Any, effort: str, budget: int
) -> None:
    pytest.importorskip("anthropic")
    server = serve(AnthropicServer, lambda r: "ok")
    async with _anthropic(server) as model:
        c = await model.complete(HI, sampling=Sampling(reasoning_effort=effort, top_p=0.95))
    assert c.text == "ok"
    assert _anthropic_sent(server.bodies[0]) == {
        "max_tokens": 8192,
        "top_p": 0.95,
        "thinking": {"type": "enabled", "budget_tokens": budget},
    }


@deprecated_name
async def test_anthropic_reasoning_effort_none_leaves_thinking_off(serve: Any) -> None:
    pytest.importorskip("anthropic")
    server = serve(AnthropicServer, lambda r: "ok")
    async with _anthropic(server) as model:
        await model.complete(HI, sampling=Sampling(reasoning_effort="none", temperature=0.5))
    assert _anthropic_sent(server.bodies[0]) == {"max_tokens": 8192, "temperature": 0.5}


@deprecated_name
@pytest.mark.parametrize(
    ("sampling", "match"),
    [
        (Sampling(seed=1), r"anthropic/claude-sonnet-4-5 does not support seed=1: .*no seed"),
        (
            Sampling(reasoning_effort="low", temperature=0.5),
            r"does not support temperature=0.5: extended thinking",
        ),
        (Sampling(reasoning_effort="low", top_p=0.5), r"does not support top_p=0.5: .*0.95"),
        (
            Sampling(reasoning_effort="high", max_tokens=4000),
            r"reasoning_effort='high' thinks for up to 4096 tokens.*max_tokens \(4000\)",
        ),
    ],
)
async def test_anthropic_refusals(serve: Any, sampling: Sampling, match: str) -> None:
    pytest.importorskip("anthropic")
    server = serve(AnthropicServer, lambda r: "never")
    async with _anthropic(server) as model:
        with pytest.raises(ConfigError, match=match):
            await model.complete(HI, sampling=sampling)
    assert server.requests == []


# -- Gemini ---------------------------------------------------------------------------
def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _gemini(server: GeminiServer, name: str) -> GeminiModel:
    return GeminiModel(name, options=options(server.url, api_key="test-key"))


async def test_gemini_generation_config(serve: Any) -> None:
    pytest.importorskip("google.genai")
    server = serve(GeminiServer, lambda r: "ok")
    async with _gemini(server, "gemini-2.0-flash") as model:
        await model.complete(HI, sampling=FULL)
        await model.complete(HI)
    assert server.bodies[0]["generationConfig"] == {
        "maxOutputTokens": 64,
        "temperature": 0.3,
        "topP": 0.9,
        "seed": 7,
    }
    assert "generationConfig" not in server.bodies[1] or server.bodies[1]["generationConfig"] == {}


@pytest.mark.parametrize(
    ("name", "effort", "thinking"),
    [
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-flash", "minimal", {"thinkingBudget": 512}),
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024}),
        ("gemini-2.5-pro", "medium", {"thinkingBudget": 8192}),
        ("gemini-2.5-flash-lite", "high", {"thinkingBudget": 24576}),
        ("gemini-3-pro-preview", "low", {"thinkingLevel": "LOW"}),
        ("gemini-3-flash-preview", "high", {"thinkingLevel": "HIGH"}),
    ],
)
async def test_gemini_reasoning_effort_is_a_thinking_config(
    serve: Any, name: str, effort: str, thinking: dict[str, Any]
) -> None:
    pytest.importorskip("google.genai")
    server = serve(GeminiServer, lambda r: "ok")
    async with _gemini(server, name) as model:
        await model.complete(HI, max_tokens=30000, sampling=Sampling(reasoning_effort=effort))
    config = dict(server.bodies[0]["generationConfig"])
    # the SDK sends the nested fields in snake_case, which the API reads as well
    config["thinkingConfig"] = {_camel(k): v for k, v in config["thinkingConfig"].items()}
    assert config == {"maxOutputTokens": 30000, "thinkingConfig": thinking}


@pytest.mark.parametrize(
    ("name", "effort", "match"),
    [
        ("gemini-2.0-flash", "low", r"gemini/gemini-2.0-flash does not support reasoning_effort"),
        ("gemini-1.5-pro", "high", r"does not think"),
        ("gemini-2.5-pro", "none", r"cannot turn its thinking off"),
        ("gemini-3-pro-preview", "none", r"cannot turn their thinking off"),
    ],
)
async def test_gemini_refusals(serve: Any, name: str, effort: str, match: str) -> None:
    pytest.importorskip("google.genai")
    server = serve(GeminiServer, lambda r: "never")
    async with _gemini(server, name) as model:
        with pytest.raises(ConfigError, match=match):
            await model.complete(HI, sampling=Sampling(reasoning_effort=effort))
    assert server.requests == []


# -- root turns and sub-calls through a whole run ------------------------------------------
ROOT_TURNS = [
    "```repl\na = llm_query('sub prompt')\nb = rlm_query('child task')\nprint(a, b)\n```",
    "```repl\nFINAL(a + '|' + b)\n```",
]
CHILD_TURNS = ["```repl\nFINAL('kid')\n```"]
ROOT = {"temperature": 0.3, "seed": 11}
SUB = {"temperature": 0.9, "top_p": 0.5, "max_tokens": 77}


def _kind(body: dict[str, Any]) -> str:
    messages = body["messages"]
    if not is_root_turn(messages):
        return "sub"
    return "child" if "child task" in node_query(messages) else "root"


def _by_kind(server: ScriptedServer) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {"root": [], "child": [], "sub": []}
    for body in server.bodies:
        kinds[_kind(body)].append(_sent(body))
    return kinds


def _run(sub_model_settings: Any, **kw: Any) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    reply = http_router({"child task": CHILD_TURNS, "top": ROOT_TURNS}, lambda p: "subanswer")
    with ScriptedServer(reply) as server:
        rlm = RLM(
            "openai/gpt-4o-mini",
            base_url=server.url,
            sandbox="inprocess",
            max_depth=2,
            model_settings=ROOT,
            sub_model_settings=sub_model_settings,
            **kw,
        )
        answer = rlm.completion("top query", "some context").answer
        return answer, _by_kind(server)


def test_root_turns_carry_model_settings_and_sub_calls_and_children_the_sub_settings() -> None:
    answer, kinds = _run(SUB)
    assert answer == "subanswer|kid"
    assert len(kinds["root"]) == 2 and len(kinds["child"]) == 1 and len(kinds["sub"]) == 1
    assert all(body == {"temperature": 0.3, "seed": 11} for body in kinds["root"])
    expected_sub = {"temperature": 0.9, "top_p": 0.5, "max_tokens": 77}
    assert kinds["sub"] == [expected_sub]
    assert kinds["child"] == [expected_sub]  # a child node's turns are sub-calls too


def test_without_sub_model_settings_sub_calls_sample_as_the_root() -> None:
    _, kinds = _run(None)
    root = {"temperature": 0.3, "seed": 11}
    assert all(body == root for bodies in kinds.values() for body in bodies)


def test_the_users_max_tokens_caps_the_budgets_reservation() -> None:
    budget = Budget(tokens=1_000_000)
    _, capped = _run({"max_tokens": 50}, budget=budget)
    assert capped["sub"][0]["max_tokens"] == 50 and capped["child"][0]["max_tokens"] == 50
    # the root has no max_tokens of its own: it asks for the budget's per-call cap
    root_caps = {body["max_tokens"] for body in capped["root"]}
    assert all(cap > 50 for cap in root_caps)


def test_a_refused_setting_fails_the_run_with_its_config_error() -> None:
    with ScriptedServer(http_router(ROOT_TURNS)) as server:
        rlm = RLM(
            "openai/gpt-5-mini",
            base_url=server.url,
            sandbox="inprocess",
            model_settings={"temperature": 0.2},
        )
        with pytest.raises(ConfigError, match=r"openai/gpt-5-mini does not support temperature"):
            rlm.completion("top query", "ctx")
        assert server.requests == []


# -- LiteLLM ----------------------------------------------------------------------------
def _litellm(server: OpenAIServer, name: str, monkeypatch: pytest.MonkeyPatch) -> LiteLLMModel:
    # LiteLLM fetches its price list from the network when imported, unless told not to.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return LiteLLMModel(name, options=options(server.url + "/v1", api_key="test-key"))


@pytest.mark.slow  # importing LiteLLM takes seconds
@requires("litellm")
async def test_litellm_passes_sampling_on(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(OpenAIServer, lambda r: "ok")
    async with _litellm(server, "openai/gpt-4o-mini", monkeypatch) as model:
        await model.complete(HI, sampling=FULL)
    sent = _sent(server.bodies[0])
    assert {k: sent.get(k) for k in ("max_tokens", "temperature", "top_p", "seed")} == {
        "max_tokens": 64,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
    }
    assert "drop_params" not in sent


@pytest.mark.slow
@requires("litellm")
@pytest.mark.parametrize(
    ("name", "sampling", "field"),
    [
        ("openai/gpt-4o-mini", Sampling(reasoning_effort="low"), "reasoning_effort"),
        ("openai/gpt-5-mini", Sampling(temperature=0.2), "temperature"),
    ],
)
async def test_litellm_unsupported_params_are_a_config_error_not_dropped(
    serve: Any, monkeypatch: pytest.MonkeyPatch, name: str, sampling: Sampling, field: str
) -> None:
    server = serve(OpenAIServer, lambda r: "never")
    async with _litellm(server, name, monkeypatch) as model:
        with pytest.raises(ConfigError) as info:
            await model.complete(HI, sampling=sampling)
    message = str(info.value)
    assert message.startswith(f"litellm/{name}: the model does not take a sampling setting")
    assert field in message and "\n" not in message
    assert server.requests == []
