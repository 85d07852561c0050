"""Azure OpenAI (``azure/<deployment>``).

The same chat-completions protocol as OpenAI, so everything but the endpoint is
:class:`~recursa.models.openai.OpenAIModel`'s: Azure puts the deployment in the
path (``/openai/deployments/<deployment>/chat/completions``), wants
``api-version`` in the query and the key as ``api-key``. Both clients do that:
the lean one with the path, query and header below, the SDK through
``AsyncAzureOpenAI``.

Settings: ``AZURE_OPENAI_API_KEY``, ``AZURE_OPENAI_ENDPOINT``
(``https://<resource>.openai.azure.com``, or ``base_url``) and
``OPENAI_API_VERSION``. Prices are looked up by deployment name, so a
deployment named after its model (``gpt-4o-mini``) is priced; others are
reported as unpriced.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..errors import ConfigError
from .openai import OpenAIModel
from .openai_http import ChatClient
from .registry import ModelOptions

if TYPE_CHECKING:
    import openai

DEFAULT_API_VERSION = "2024-10-21"


class AzureOpenAIModel(OpenAIModel):
    """Chat completions on an Azure OpenAI deployment."""

    provider = "azure"

    def __init__(
        self,
        deployment: str,
        *,
        api_key: str | None = None,
        endpoint: str | None = None,
        api_version: str | None = None,
        options: ModelOptions | None = None,
        client: str | None = None,
    ) -> None:
        options = options or ModelOptions()
        spec = f"{self.provider}/{deployment}"
        # Never fall back to OPENAI_API_KEY / OPENAI_BASE_URL: they belong to another service.
        api_key = api_key or options.api_key or os.environ.get("AZURE_OPENAI_API_KEY")
        if not api_key:
            raise ConfigError(f"no API key for {spec}: set AZURE_OPENAI_API_KEY")
        endpoint = endpoint or options.base_url or os.environ.get("AZURE_OPENAI_ENDPOINT")
        if not endpoint:
            raise ConfigError(
                f"no endpoint for {spec}: set AZURE_OPENAI_ENDPOINT "
                "(https://<resource>.openai.azure.com) or give a base URL"
            )
        self.api_version = (
            api_version or os.environ.get("OPENAI_API_VERSION") or DEFAULT_API_VERSION
        )
        super().__init__(
            deployment, api_key=api_key, base_url=endpoint, options=options, client=client
        )

    def _http_client(self) -> ChatClient:
        assert self.base_url is not None  # checked in __init__
        return ChatClient(
            # the base URL AsyncAzureOpenAI uses, which errors name
            f"{self.base_url.rstrip('/')}/openai",
            headers={"api-key": self._api_key},
            params={"api-version": self.api_version},
            timeout=self.timeout,
        )

    def _chat_path(self) -> str:
        return f"/deployments/{quote(self.name, safe='')}/chat/completions"

    def _sdk_client(self) -> openai.AsyncOpenAI:
        import openai

        assert self.base_url is not None  # checked in __init__
        return openai.AsyncAzureOpenAI(
            api_key=self._api_key,
            azure_endpoint=self.base_url,
            api_version=self.api_version,
            timeout=self.timeout,
            max_retries=0,
        )


def create(name: str, options: ModelOptions) -> AzureOpenAIModel:
    """Registry entry point for ``azure/<deployment>``."""
    return AzureOpenAIModel(name, options=options)
