"""Google's Gemini API (``gemini/<model>``) on the ``google-genai`` SDK.

Roles map to Gemini's (``assistant`` -> ``model``); system messages become the
``system_instruction``. The SDK's own retries are off by default and stay off
(retries are recursa's). recursa hands the SDK its own ``httpx`` clients, so
connections are bound to the run's event loop and closed by :meth:`aclose`,
errors are the same whichever HTTP backends happen to be installed (the SDK
prefers aiohttp where it finds it), and one TLS context serves them all.

Thinking tokens (Gemini 2.5) are billed as output and counted as output here.
Implicit-cache hits (``cached_content_token_count``) are inside the prompt
count and priced at the ``cached`` price.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import httpx

from ..errors import ConfigError, ModelError
from ..sampling import Sampling
from ._http import connection_error, request_origin, retry_after_seconds, status_error, where
from .base import (
    Completion,
    Message,
    SDKModel,
    ToolRequest,
    ToolSchema,
    estimate_tokens,
    message_tokens,
    offered_tools,
    refuse,
)
from .registry import ModelOptions

if TYPE_CHECKING:
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types

# Gemini rejects empty parts; an empty turn (a model that said nothing) becomes this.
EMPTY_TURN = "(empty)"
ROLES = {"user": "user", "assistant": "model"}
# reasoning_effort as Gemini 2.5's thinking_budget: Google's own mapping for its OpenAI
# compatibility layer (low 1024, medium 8192, high 24576, none 0); "minimal" is 512,
# which every 2.5 model allows (Pro's minimum is 128, Flash-Lite's 512).
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


class GeminiModel(SDKModel["genai.Client"]):
    """Gemini models over the Gemini Developer API (``generateContent``)."""

    provider = "gemini"
    sdk = "google.genai"
    #: function declarations, ``function_call`` / ``function_response`` parts
    supports_tools = True

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
        api_key = (
            api_key
            or options.api_key
            or os.environ.get("GEMINI_API_KEY")
            or os.environ.get("GOOGLE_API_KEY")
        )
        if not api_key:
            raise ConfigError(f"no API key for {self.spec}: set GEMINI_API_KEY (or GOOGLE_API_KEY)")
        self.base_url = base_url or options.base_url
        self._api_key = api_key
        self._http: tuple[httpx.AsyncClient, httpx.Client] | None = None

    def _make_client(self) -> genai.Client:
        from google import genai
        from google.genai import types

        # The SDK insists on a synchronous client as well; it stays idle.
        self._http = (
            httpx.AsyncClient(timeout=self.timeout, verify=_tls()),
            httpx.Client(timeout=self.timeout, verify=_tls()),
        )
        return genai.Client(
            api_key=self._api_key,
            http_options=types.HttpOptions(
                base_url=self.base_url,
                timeout=int(self.timeout * 1000),  # milliseconds
                httpx_async_client=self._http[0],
                httpx_client=self._http[1],
            ),
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        http, self._http = self._http, None
        if client is not None:
            await client.aio.aclose()
            client.close()
        if http is not None:
            await http[0].aclose()
            http[1].close()

    def sampling_config(self, max_tokens: int | None, sampling: Sampling) -> dict[str, Any]:
        """The ``GenerateContentConfig`` fields for the request's sampling:
        ``max_output_tokens``, ``temperature``, ``top_p``, ``seed`` and, for
        ``reasoning_effort``, a ``thinking_config``: a ``thinking_level`` on Gemini 3
        and later, a ``thinking_budget`` on Gemini 2.5 (:data:`THINKING_BUDGETS`). A
        :class:`ConfigError` for an effort the model cannot do."""
        config: dict[str, Any] = {
            "max_output_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        }
        effort = sampling.reasoning_effort
        if effort is not None:
            config["thinking_config"] = self._thinking(effort)
        return {k: v for k, v in config.items() if v is not None}

    def _thinking(self, effort: str) -> dict[str, Any]:
        name = self.name.lower().removeprefix("models/")
        if name.startswith(("gemini-1", "gemini-2.0")):
            raise refuse(
                self.spec, "reasoning_effort", effort, "the model does not think (Gemini 2.5+)"
            )
        if name.startswith("gemini-2.5"):
            if effort == "none" and "pro" in name:
                raise refuse(
                    self.spec,
                    "reasoning_effort",
                    effort,
                    "Gemini 2.5 Pro cannot turn its thinking off",
                )
            return {"thinking_budget": THINKING_BUDGETS[effort]}
        if effort == "none":
            raise refuse(
                self.spec,
                "reasoning_effort",
                effort,
                "Gemini 3 models cannot turn their thinking off; use 'minimal' or 'low'",
            )
        return {"thinking_level": effort.upper()}

    async def _request(
        self, messages: Sequence[Message], max_tokens: int | None, sampling: Sampling
    ) -> Completion:
        fields = self.sampling_config(max_tokens, sampling)
        system, contents = to_gemini(messages)
        client = await self._sdk()  # first: it imports the SDK off the event loop
        from google.genai import errors as genai_errors
        from google.genai import types

        tools = offered_tools()
        if tools:
            fields["tools"] = [{"function_declarations": [gemini_function(t) for t in tools]}]
        config = types.GenerateContentConfig(system_instruction=system, **fields)
        try:
            response = await client.aio.models.generate_content(
                model=self.name,
                contents=contents,
                config=config,
            )
        except genai_errors.APIError as exc:
            raise self._translate(exc) from exc
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            # refused or no such host: at once; a timeout or a reset: retried
            url = self.base_url or request_origin(exc)
            raise connection_error(exc, spec=self.spec, url=url) from exc
        if not response.candidates:
            feedback = response.prompt_feedback
            reason = feedback.block_reason if feedback is not None else None
            raise ModelError(
                f"{where(self.spec, self.base_url)}: no reply"
                + (f" (prompt blocked: {reason})" if reason else ""),
                model=self.spec,
            )
        content = response.candidates[0].content
        parts = (content.parts if content is not None else None) or []
        text = "".join(p.text for p in parts if p.text and not p.thought)
        calls = tuple(
            ToolRequest(p.function_call.id or f"call_{i}", p.function_call.name or "",
                        dict(p.function_call.args or {}))
            for i, p in enumerate(parts)
            if p.function_call is not None
        ) if tools else ()  # fmt: skip
        usage = response.usage_metadata
        if usage is None or usage.prompt_token_count is None:
            input_tokens = message_tokens(messages)
            output_tokens, cached = estimate_tokens(text), 0
        else:
            input_tokens = usage.prompt_token_count
            output_tokens = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
            cached = usage.cached_content_token_count or 0
        return Completion(
            text=text,
            model=self.spec,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            tool_calls=calls,
        )

    def _translate(self, exc: genai_errors.APIError) -> Exception:
        status = exc.code
        detail = exc.message or str(exc)
        # Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
        if status == 400 and ("API_KEY_INVALID" in str(exc.details) or "API key" in detail):
            status = 401
        headers = getattr(exc.response, "headers", None) or {}
        retry_after = retry_after_seconds(headers) or _retry_delay(exc.details)
        return status_error(
            spec=self.spec,
            where=where(self.spec, self.base_url),
            status=status,
            detail=detail,
            retry_after=retry_after,
        )


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS settings, loaded once (loading the CA bundle is slow)."""
    return httpx.create_ssl_context()


def to_gemini(messages: Sequence[Message]) -> tuple[str | None, list[types.ContentDict]]:
    """OpenAI-shaped messages to a ``system_instruction`` and Gemini ``contents``; a
    tool-using sub-call's ``tool_calls`` become ``function_call`` parts and its ``tool``
    messages ``function_response`` parts of a user turn."""
    system: list[str] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    names: dict[str, str] = {}  # tool call id -> the function it called
    for message in messages:
        if message["role"] == "system":
            system.extend(_texts(message["content"]))
            continue
        role = "user" if message["role"] == "tool" else ROLES[message["role"]]
        parts = _parts(message, names)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(parts)  # Gemini wants roles to alternate
        else:
            turns.append((role, parts))
    contents: list[types.ContentDict] = [
        {"role": role, "parts": cast("list[types.PartDict]", parts or [{"text": EMPTY_TURN}])}
        for role, parts in turns
    ]
    return ("\n\n".join(system) if system else None), contents


def gemini_function(tool: ToolSchema) -> dict[str, Any]:
    """A tool as a Gemini function declaration."""
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters_json_schema": tool.parameters,
    }


def _parts(message: Message, names: dict[str, str]) -> list[dict[str, Any]]:
    """One message's Gemini parts (``names`` learns each call's function, which the
    ``function_response`` of a ``tool`` message must repeat)."""
    if message["role"] == "tool":
        call_id = message.get("tool_call_id", "")
        content = message["content"]
        try:
            response = json.loads(content) if isinstance(content, str) else content
        except ValueError:
            response = content
        if not isinstance(response, dict):
            response = {"result": response}
        function = {"id": call_id, "name": names.get(call_id, ""), "response": response}
        return [{"function_response": function}]
    parts: list[dict[str, Any]] = [{"text": t} for t in _texts(message["content"])]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        raw = function.get("arguments")
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            args = None
        names[str(call.get("id", ""))] = str(function.get("name", ""))
        args = args if isinstance(args, dict) else {}
        parts.append({"function_call": {"id": call.get("id"), "name": function.get("name"),
                                        "args": args}})  # fmt: skip
    return parts


def _texts(content: str | list[dict[str, Any]]) -> list[str]:
    if isinstance(content, str):
        return [content] if content else []
    texts: list[str] = []
    for part in content:
        if part.get("type") != "text":
            raise ConfigError(f"gemini: unsupported message content part {part.get('type')!r}")
        if part.get("text"):
            texts.append(str(part["text"]))
    return texts


def _retry_delay(details: Any) -> float | None:
    """Gemini's RetryInfo hint (``"retryDelay": "36s"``) from an error body."""
    error = details.get("error") if isinstance(details, dict) else None
    entries = error.get("details") if isinstance(error, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("@type", "")).endswith("RetryInfo"):
            try:
                return float(str(entry.get("retryDelay", "")).rstrip("s"))
            except ValueError:
                return None
    return None


def create(name: str, options: ModelOptions) -> GeminiModel:
    """Registry entry point for ``gemini/<model>``."""
    return GeminiModel(name, options=options)
