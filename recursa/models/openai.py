"""OpenAI and every OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp, OpenRouter).

Built on the official ``openai`` SDK with its own retries turned off: retries,
backoff and jitter are recursa's (see :class:`~recursa.models.base.BaseModel`),
so every provider behaves the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from ..errors import (
    AuthenticationError,
    ConfigError,
    ContextWindowError,
    ModelError,
    ModelNotFoundError,
)
from .base import BaseModel, Completion, Message, TransientError, estimate_tokens, message_text
from .registry import ModelOptions

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local servers (vLLM, llama.cpp, Ollama) ignore the key but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"


class OpenAIModel(BaseModel):
    """Chat completions over the OpenAI protocol."""

    provider = "openai"

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        options: ModelOptions | None = None,
    ) -> None:
        options = options or ModelOptions()
        super().__init__(name, options=options)
        base_url = base_url or options.base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = api_key or options.api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if base_url is None or base_url.rstrip("/") == DEFAULT_BASE_URL:
                raise ConfigError(
                    f"no API key for {self.spec}: set OPENAI_API_KEY, or give --base-url for a "
                    "server that needs none"
                )
            api_key = PLACEHOLDER_KEY
        self.base_url = base_url
        self._api_key = api_key
        self._client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
                **_http_client(),
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _request(
        self, messages: Sequence[Message], max_tokens: int | None, temperature: float | None
    ) -> Completion:
        params: dict[str, Any] = {}
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if temperature is not None:
            params["temperature"] = temperature
        try:
            # The SDK's low-level post(): chat.completions.create() re-validates and copies
            # the whole history on every call (about 0.3 ms a message), which dominates a
            # long RLM conversation; our messages are already plain JSON.
            response = await self.client.post(
                "/chat/completions",
                body={"model": self.name, "messages": list(messages), **params},
                cast_to=ChatCompletion,
            )
        except openai.APIStatusError as exc:
            raise self._translate(exc) from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise TransientError(f"connection failed: {exc}") from exc
        if not response.choices:
            raise TransientError("empty response (no choices)")
        text = response.choices[0].message.content or ""
        usage = response.usage
        if usage is None:
            input_tokens = estimate_tokens(message_text(messages))
            output_tokens, cached, reported_cost = estimate_tokens(text), 0, None
        else:
            input_tokens, output_tokens = usage.prompt_tokens, usage.completion_tokens
            details = usage.prompt_tokens_details
            cached = (details.cached_tokens or 0) if details is not None else 0
            # OpenRouter and some proxies report the exact charge.
            reported = getattr(usage, "cost", None)
            reported_cost = float(reported) if isinstance(reported, int | float) else None
        return Completion(
            text=text,
            model=self.spec,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            cost_usd=reported_cost,
        )

    def _translate(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        detail = _error_message(exc)
        where = f"{self.spec}" + (f" at {self.base_url}" if self.base_url else "")
        if status in (401, 403):
            return AuthenticationError(
                f"{where}: authentication failed ({status}): {detail}",
                status=status,
                model=self.spec,
            )
        if status == 404:
            hint = ""
            if self.base_url and not self.base_url.rstrip("/").endswith("/v1"):
                hint = " (OpenAI-compatible servers usually want the base URL to end in /v1)"
            return ModelNotFoundError(
                f"{where}: model not found (404): {detail}{hint}", status=status, model=self.spec
            )
        if status in (408, 409, 429) or status >= 500:
            retry_after = _retry_after(exc)
            return TransientError(
                f"HTTP {status}: {detail}", status=status, retry_after=retry_after
            )
        if status == 400 and "context" in detail.lower() and "length" in detail.lower():
            return ContextWindowError(f"{where}: {detail}", status=status, model=self.spec)
        return ModelError(f"{where}: HTTP {status}: {detail}", status=status, model=self.spec)


def _http_client() -> dict[str, Any]:
    """The SDK's aiohttp transport (``openai[aiohttp]``) when installed: about half the
    CPU per request of its default httpx one, which is what bounds wide fan-outs."""
    try:
        return {"http_client": openai.DefaultAioHttpClient()}
    except RuntimeError:  # httpx-aiohttp is missing: the SDK's default client
        return {}


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return exc.message


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def create(name: str, options: ModelOptions) -> OpenAIModel:
    """Registry entry point for ``openai/<name>``."""
    return OpenAIModel(name, options=options)
