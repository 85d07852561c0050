"""litellm/<provider>/<model> through the real LiteLLM against a local OpenAI-compatible
server. Skipped where LiteLLM (an optional extra) is not installed."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import pytest

from recursa.errors import AuthenticationError, ConfigError, ModelError, ModelNotFoundError
from recursa.models import litellm as backend
from recursa.models.litellm import LiteLLMModel
from recursa.sampling import Sampling
from recursa.testing import HTTPFailure, Received
from tests.helpers import requires
from tests.providers.servers import OpenAIServer, options

pytestmark = [
    requires("litellm"),
    pytest.mark.slow,  # importing LiteLLM alone takes seconds
]
HI: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", autouse=True)
def _offline_litellm() -> None:
    """LiteLLM fetches its price list from the network when imported, unless told not to."""
    if "litellm" not in sys.modules:
        previous = os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        try:
            importlib.import_module("litellm")
        finally:
            if previous is None:
                del os.environ["LITELLM_LOCAL_MODEL_COST_MAP"]
            else:
                os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = previous


@pytest.fixture
def server_factory(serve: Any) -> Any:
    return lambda reply: serve(OpenAIServer, reply)


def make(server: OpenAIServer, name: str = "openai/gpt-4o-mini") -> LiteLLMModel:
    return LiteLLMModel(name, options=options(server.url + "/v1", api_key="test-key"))


async def test_reply_usage_and_litellm_reported_cost(server_factory: Any) -> None:
    server = server_factory(lambda r: "hello from litellm")
    async with make(server) as model:
        c = await model.complete(HI, max_tokens=32, sampling=Sampling(temperature=0.5))
    assert c.text == "hello from litellm"
    assert c.model == "litellm/openai/gpt-4o-mini"
    (request,) = server.requests
    body = request.body
    assert request.headers["authorization"] == "Bearer test-key"
    assert body["model"] == "gpt-4o-mini"
    assert body["max_tokens"] == 32
    assert body["temperature"] == 0.5
    assert c.input_tokens >= 1 and c.output_tokens >= 1
    # LiteLLM's own price for gpt-4o-mini: $0.15 in, $0.60 out per MTok.
    assert c.cost_usd == pytest.approx((c.input_tokens * 0.15 + c.output_tokens * 0.60) / 1e6)


async def test_unknown_model_is_unpriced_not_free(server_factory: Any) -> None:
    server = server_factory(lambda r: "ok")
    async with make(server, name="openai/some-local-model") as model:
        c = await model.complete(HI)
    assert c.text == "ok"
    assert c.cost_usd is None


async def test_wrong_key_is_an_authentication_error(server_factory: Any) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(401, "Incorrect API key provided")

    server = server_factory(reply)
    async with make(server) as model:
        with pytest.raises(AuthenticationError, match=r"authentication failed \(401\)") as info:
            await model.complete(HI)
    assert "Incorrect API key provided" in str(info.value)
    assert "\n" not in str(info.value)
    assert len(server.requests) == 1


async def test_unknown_model_is_model_not_found(server_factory: Any) -> None:
    def reply(r: Received) -> str:
        raise HTTPFailure(404, "The model does not exist")

    server = server_factory(reply)
    async with make(server) as model:
        with pytest.raises(ModelNotFoundError, match=r"model not found \(404\)"):
            await model.complete(HI)
    assert len(server.requests) == 1


async def test_503_then_success_is_retried_by_recursa_only(server_factory: Any) -> None:
    failures = {"left": 2}

    def reply(r: Received) -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise HTTPFailure(503, "busy")
        return "fine"

    server = server_factory(reply)
    async with make(server) as model:
        assert (await model.complete(HI)).text == "fine"
    assert len(server.requests) == 3  # neither LiteLLM nor the OpenAI SDK retried on its own


async def test_an_unknown_litellm_provider_is_a_model_error(server_factory: Any) -> None:
    server = server_factory(lambda r: "ok")
    async with make(server, name="no-such-provider-xyz/model") as model:
        with pytest.raises(ModelError, match="litellm/no-such-provider-xyz/model"):
            await model.complete(HI)


def test_missing_litellm_is_a_config_error_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'recursa\[litellm\]'"):
        backend.create("openai/gpt-4o-mini", options("http://127.0.0.1:9"))
