"""Every built-in provider resolves from a "provider/name" string through the entry points
declared in pyproject.toml, the way third-party providers do."""

from __future__ import annotations

import importlib.util

import pytest

from recursa.models import registry
from recursa.models.anthropic import AnthropicModel
from recursa.models.azure import AzureOpenAIModel
from recursa.models.gemini import GeminiModel
from recursa.models.openrouter import OpenRouterModel
from recursa.models.registry import ModelOptions

BUILT_IN = [
    ("anthropic/claude-haiku-4-5", AnthropicModel, "ANTHROPIC_API_KEY"),
    ("gemini/gemini-2.5-flash", GeminiModel, "GEMINI_API_KEY"),
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


@pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="needs recursa[litellm]")
def test_litellm_resolves_through_its_entry_point() -> None:
    from recursa.models.litellm import LiteLLMModel  # LiteLLM itself loads on first request

    model = registry.resolve("litellm/bedrock/anthropic.claude-3-haiku", ModelOptions())
    assert isinstance(model, LiteLLMModel)
    assert model.name == "bedrock/anthropic.claude-3-haiku"
