"""OpenRouter (``openrouter/<vendor>/<model>``): hundreds of models behind one
OpenAI-compatible endpoint.

Only the endpoint and the key differ from :class:`~recursa.models.openai.OpenAIModel`.
OpenRouter reports the exact charge of every call as ``usage.cost`` (USD), which
the OpenAI backend reads, so costs are right for every model it routes to, priced
in recursa's table or not.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .openai import OpenAIModel
from .registry import ModelOptions

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"


class OpenRouterModel(OpenAIModel):
    """``name`` is OpenRouter's model id, e.g. ``anthropic/claude-sonnet-4.5``."""

    provider = "openrouter"

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        options: ModelOptions | None = None,
    ) -> None:
        options = options or ModelOptions()
        # Never fall back to OPENAI_API_KEY: that key must not be sent to another service.
        api_key = api_key or options.api_key or os.environ.get("OPENROUTER_API_KEY")
        if not api_key:
            raise ConfigError(f"no API key for {self.provider}/{name}: set OPENROUTER_API_KEY")
        base_url = base_url or options.base_url or OPENROUTER_BASE_URL
        super().__init__(name, api_key=api_key, base_url=base_url, options=options)

    def _output_param(self) -> str:
        # OpenRouter documents max_tokens for every model and maps it to each provider's.
        return "max_tokens"


def create(name: str, options: ModelOptions) -> OpenRouterModel:
    """Registry entry point for ``openrouter/<vendor>/<model>``."""
    return OpenRouterModel(name, options=options)
