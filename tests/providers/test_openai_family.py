"""azure/<deployment> and openrouter/<vendor>/<model>: OpenAIModel with another client
or endpoint, against local servers speaking Azure's and OpenRouter's dialects; each
test through the lean client and through the SDK."""

from __future__ import annotations

from typing import Any

import pytest

from recursa.errors import AuthenticationError, ConfigError, ModelNotFoundError
from recursa.models import azure, openrouter
from recursa.models.azure import AzureOpenAIModel
from recursa.models.openrouter import OpenRouterModel
from recursa.models.registry import ModelOptions
from recursa.testing import HTTPFailure, Received
from tests.providers.servers import FAST_RETRY, AzureServer, OpenRouterServer, options

HI: list[Any] = [{"role": "user", "content": "hi"}]

pytestmark = pytest.mark.usefixtures("openai_client")  # the lean client and the SDK


@pytest.fixture(autouse=True)
def _no_azure_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


# -- Azure -------------------------------------------------------------------------
async def test_azure_deployment_path_api_version_key_and_price(serve: Any) -> None:
    server = serve(AzureServer, lambda r: "hello")
    async with AzureOpenAIModel(
        "gpt-4o-mini", options=options(server.url, api_key="test-key")
    ) as model:
        c = await model.complete(HI)
    assert c.text == "hello"
    assert c.model == "azure/gpt-4o-mini"
    (request,) = server.requests
    assert request.path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert request.query["api-version"] == azure.DEFAULT_API_VERSION
    assert request.headers["api-key"] == "test-key"
    # Priced by deployment name: gpt-4o-mini is $0.15 in, $0.60 out per MTok.
    assert c.cost_usd == pytest.approx((c.input_tokens * 0.15 + c.output_tokens * 0.60) / 1e6)


async def test_azure_settings_from_environment(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(AzureServer, lambda r: "ok")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-04-01-preview")
    model = azure.create("my-deployment", ModelOptions(retry=FAST_RETRY))
    async with model:
        c = await model.complete(HI)
    assert c.cost_usd is None  # a deployment name that is no model name is unpriced
    assert server.requests[0].query["api-version"] == "2025-04-01-preview"
    assert server.requests[0].path == "/openai/deployments/my-deployment/chat/completions"


async def test_azure_wrong_key_and_unknown_deployment(serve: Any) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(404, "The API deployment for this resource does not exist.")

    server = serve(AzureServer, reply)
    async with AzureOpenAIModel("nope", options=options(server.url, api_key="bad")) as model:
        with pytest.raises(AuthenticationError, match=r"authentication failed \(401\)") as info:
            await model.complete(HI)
    assert "\n" not in str(info.value)
    async with AzureOpenAIModel("nope", options=options(server.url, api_key="test-key")) as model:
        with pytest.raises(ModelNotFoundError, match="deployment for this resource does not"):
            await model.complete(HI)


async def test_azure_503_then_success_is_retried(serve: Any) -> None:
    failures = {"left": 1}

    def reply(r: Received) -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise HTTPFailure(503, "busy")
        return "ok"

    server = serve(AzureServer, reply)
    async with AzureOpenAIModel("d", options=options(server.url, api_key="test-key")) as model:
        assert (await model.complete(HI)).text == "ok"
    assert len(server.requests) == 2


def test_azure_needs_its_own_key_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "an-openai-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="AZURE_OPENAI_API_KEY"):
        AzureOpenAIModel("d")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        AzureOpenAIModel("d")


# -- OpenRouter ------------------------------------------------------------------------
async def test_openrouter_reports_its_own_cost(serve: Any) -> None:
    server = serve(OpenRouterServer, lambda r: "hello", cost=0.0123)
    model = OpenRouterModel(
        "anthropic/claude-sonnet-4.5", options=options(server.url + "/api/v1", api_key="test-key")
    )
    async with model:
        c = await model.complete(HI)
    assert c.model == "openrouter/anthropic/claude-sonnet-4.5"
    assert c.cost_usd == pytest.approx(0.0123)
    (request,) = server.requests
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body["model"] == "anthropic/claude-sonnet-4.5"


async def test_openrouter_key_from_environment_never_openai_key(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "an-openai-key")
    with pytest.raises(ConfigError, match="OPENROUTER_API_KEY"):
        OpenRouterModel("openai/gpt-5")
    monkeypatch.setenv("OPENROUTER_API_KEY", "test-key")
    server = serve(OpenRouterServer, lambda r: "ok")
    model = openrouter.create("openai/gpt-5", options(server.url + "/api/v1"))
    async with model:
        assert (await model.complete(HI)).text == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer test-key"


def test_openrouter_default_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "k")
    assert OpenRouterModel("openai/gpt-5").base_url == "https://openrouter.ai/api/v1"


async def test_openrouter_rate_limit_then_success_and_bad_key(serve: Any) -> None:
    failures = {"left": 1}

    def reply(r: Received) -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise HTTPFailure(429, "Rate limit exceeded")
        return "ok"

    server = serve(OpenRouterServer, reply)
    url = server.url + "/api/v1"
    async with OpenRouterModel("x/y", options=options(url, api_key="test-key")) as model:
        assert (await model.complete(HI)).text == "ok"
    assert len(server.requests) == 2
    async with OpenRouterModel("x/y", options=options(url, api_key="wrong")) as model:
        with pytest.raises(AuthenticationError, match="No auth credentials found"):
            await model.complete(HI)
