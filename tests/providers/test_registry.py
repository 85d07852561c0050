"""Every built-in provider resolves from a "provider/name" string through the entry points
declared in pyproject.toml, the way third-party providers do."""

from __future__ import annotations

import asyncio
import importlib.util
import os

import pytest

from recursa.errors import ConfigError
from recursa.models import registry
from recursa.models.anthropic import AnthropicModel
from recursa.models.azure import AzureOpenAIModel
from recursa.models.gemini import GeminiModel
from recursa.models.openrouter import OpenRouterModel
from recursa.models.registry import ModelOptions
from tests.helpers import requires

BUILT_IN = [
    pytest.param(
        "anthropic/claude-haiku-4-5",
        AnthropicModel,
        "ANTHROPIC_API_KEY",
        marks=requires("anthropic"),
    ),
    pytest.param(
        "gemini/gemini-2.5-flash", GeminiModel, "GEMINI_API_KEY", marks=requires("google.genai")
    ),
    ("openrouter/openai/gpt-5-mini", OpenRouterModel, "OPENROUTER_API_KEY"),
    ("azure/gpt-4o-mini", AzureOpenAIModel, "AZURE_OPENAI_API_KEY"),
]


@pytest.mark.parametrize(("spec", "cls", "key"), BUILT_IN)
def test_provider_resolves_through_its_entry_point(
    spec: str, cls: type, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(key, "k")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    provider = spec.partition("/")[0]
    assert provider in registry.providers(), f"no entry point for {provider!r} in pyproject.toml"
    model = registry.resolve(spec, ModelOptions())
    assert isinstance(model, cls)
    assert model.spec == spec


@requires("litellm")
def test_litellm_resolves_through_its_entry_point() -> None:
    from recursa.models.litellm import LiteLLMModel  # LiteLLM itself loads on first request

    model = registry.resolve("litellm/bedrock/anthropic.claude-3-haiku", ModelOptions())
    assert isinstance(model, LiteLLMModel)
    assert model.name == "bedrock/anthropic.claude-3-haiku"


SDK_FREE_RESOLVE = """
import sys
from recursa.models import registry
from recursa.models.base import installed
for spec, sdk in (("openai/gpt-5-mini", "openai"), ("anthropic/claude-haiku-4-5", "anthropic"),
                  ("azure/gpt-4o-mini", "openai"), ("openrouter/openai/gpt-5-mini", "openai"),
                  ("gemini/gemini-2.5-flash", "google.genai")):
    if installed(sdk):  # a missing one is a ConfigError, tested below
        registry.resolve(spec, registry.ModelOptions(api_key="k", base_url="https://x.test/v1"))
sdks = ("openai", "anthropic", "aiohttp", "google.genai")
print(sorted(m for m in sdks if m in sys.modules))
"""


def test_resolving_a_model_does_not_import_its_sdk() -> None:
    """The SDK is imported with the first request, in a worker thread (SDKModel), so
    the event loop can start the sandbox meanwhile; resolving a spec stays cheap."""
    import subprocess
    import sys

    env = {**os.environ, "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com"}
    out = subprocess.run(
        [sys.executable, "-c", SDK_FREE_RESOLVE], capture_output=True, text=True, timeout=60,
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_concurrent_first_requests_share_one_client() -> None:
    from recursa.models.openai import OpenAIModel
    from recursa.testing import ScriptedServer

    with ScriptedServer(lambda body: "ok") as server:
        async with OpenAIModel("m", options=ModelOptions(base_url=server.url)) as model:
            made: list[object] = []
            make = model._make_client
            model._make_client = lambda: made.append(1) or make()  # type: ignore[method-assign]
            replies = await asyncio.gather(
                *(model.complete([{"role": "user", "content": f"q{i}"}]) for i in range(8))
            )
            client = model._client
            await model.complete([{"role": "user", "content": "again"}])
            assert model._client is client
    assert [r.text for r in replies] == ["ok"] * 8
    assert made == [1]


def test_a_missing_sdk_is_a_clear_error_when_the_model_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "anthropic" else real(name)
    )
    with pytest.raises(ConfigError, match=r"needs the 'anthropic' package: pip install"):
        registry.resolve("anthropic/claude-haiku-4-5", ModelOptions(api_key="k"))
