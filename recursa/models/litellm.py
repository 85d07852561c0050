"""Anything LiteLLM serves (``litellm/<litellm model>``), e.g. ``litellm/bedrock/...``,
``litellm/vertex_ai/...``, ``litellm/mistral/...``.

LiteLLM is an optional, heavy dependency (``pip install 'recursa[litellm]'``):
it is imported on first use, never when recursa is. Its own retries are off
(``num_retries=0``, ``max_retries=0``); retries are recursa's. The cost is
LiteLLM's own figure for the call when it has one (it knows the prices of
hundreds of models and their cache rules), else the shared price table.

LiteLLM keeps its HTTP clients in its own cache, one per event loop, and
closes them itself, so :meth:`LiteLLMModel.aclose` has nothing to release.
recursa sets ``litellm.suppress_debug_info`` when it loads LiteLLM: LiteLLM
would otherwise print help banners to stdout on errors.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

import openai

from ..errors import ConfigError, ContextWindowError, ModelError
from ..sampling import Sampling
from ._http import connection_error, retry_after_seconds, status_error, unreachable, where
from .base import BaseModel, Completion, Message, TransientError, estimate_tokens, message_tokens
from .registry import ModelOptions

INSTALL_HINT = "pip install 'recursa[litellm]'"


class LiteLLMModel(BaseModel):
    """A model behind ``litellm.acompletion``; ``name`` is LiteLLM's ``provider/model``."""

    provider = "litellm"

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
        if importlib.util.find_spec("litellm") is None:
            raise ConfigError(f"{self.spec} needs LiteLLM, which is not installed: {INSTALL_HINT}")
        # None: LiteLLM finds keys and endpoints itself (ANTHROPIC_API_KEY, AWS_*, ...).
        self.api_key = api_key or options.api_key
        self.base_url = base_url or options.base_url

    async def _request(
        self, messages: Sequence[Message], max_tokens: int | None, sampling: Sampling
    ) -> Completion:
        litellm = _import_litellm()
        # Passed on as they are: LiteLLM maps them onto the provider's API (reasoning_effort
        # to Anthropic's thinking, ...) and, with drop_params off, raises for one the
        # provider does not take, which is refused below rather than silently dropped.
        params: dict[str, Any] = {k: v for k, v in sampling.to_dict().items() if k != "max_tokens"}
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if self.api_key:
            params["api_key"] = self.api_key
        if self.base_url:
            params["api_base"] = self.base_url
        try:
            response = await litellm.acompletion(
                model=self.name,
                messages=[dict(m) for m in messages],  # LiteLLM may edit them in place
                timeout=self.timeout,
                num_retries=0,
                max_retries=0,
                drop_params=False,  # even if litellm.drop_params was turned on globally
                **params,
            )
        except litellm.UnsupportedParamsError as exc:
            raise ConfigError(
                f"{self.spec}: the model does not take a sampling setting "
                f"({', '.join(f'{k}={v!r}' for k, v in sorted(sampling.to_dict().items()))}): "
                f"{_one_line(exc)}"
            ) from exc
        except litellm.ContextWindowExceededError as exc:
            raise ContextWindowError(
                f"{where(self.spec, self.base_url)}: {_one_line(exc)}", status=400, model=self.spec
            ) from exc
        except openai.APIError as exc:  # every LiteLLM API error derives from openai's
            raise self._translate(exc) from exc
        except Exception as exc:  # LiteLLM raises a few of its own (unknown provider, ...)
            raise ModelError(
                f"{where(self.spec, self.base_url)}: {type(exc).__name__}: {_one_line(exc)}",
                model=self.spec,
            ) from exc
        return self._completion(response, messages)

    def _completion(self, response: Any, messages: Sequence[Message]) -> Completion:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise TransientError("empty response (no choices)")
        text = choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        if usage is None or not getattr(usage, "prompt_tokens", None):
            input_tokens = message_tokens(messages)
            output_tokens, cached = estimate_tokens(text), 0
        else:
            input_tokens = int(usage.prompt_tokens)
            output_tokens = int(usage.completion_tokens or 0)
            details = getattr(usage, "prompt_tokens_details", None)
            cached = int(getattr(details, "cached_tokens", None) or 0)
        hidden = getattr(response, "_hidden_params", None) or {}
        reported = hidden.get("response_cost") if isinstance(hidden, dict) else None
        return Completion(
            text=text,
            model=self.spec,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            cost_usd=float(reported) if isinstance(reported, int | float) else None,
        )

    def _translate(self, exc: openai.APIError) -> Exception:
        status = getattr(exc, "status_code", None)
        # No HTTP answer (LiteLLM reports a refused connection as a 500 of its own):
        # refused or unresolved fails at once, a timeout or a reset is retried.
        if not isinstance(status, int) or unreachable(exc, by_text=False):
            return connection_error(exc, spec=self.spec, url=self.base_url)
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        return status_error(
            spec=self.spec,
            where=where(self.spec, self.base_url),
            status=status,
            detail=_one_line(exc),
            retry_after=retry_after_seconds(headers),
        )


def _import_litellm() -> Any:
    try:
        litellm: Any = importlib.import_module("litellm")
    except ModuleNotFoundError as exc:
        if exc.name != "litellm":
            raise
        raise ConfigError(f"LiteLLM is not installed: {INSTALL_HINT}") from exc
    # LiteLLM prints help banners to stdout on every error, which would corrupt
    # `recursa run --json`; its exceptions carry the same information.
    litellm.suppress_debug_info = True
    return litellm


def _one_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())


def create(name: str, options: ModelOptions) -> LiteLLMModel:
    """Registry entry point for ``litellm/<provider>/<model>``."""
    return LiteLLMModel(name, options=options)
