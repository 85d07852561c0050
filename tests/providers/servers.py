"""Small real HTTP servers that speak each provider's own protocol, on 127.0.0.1.

The provider backends are tested through their real SDKs and real HTTP against
these. All are :class:`recursa.testing.ScriptedHTTPServer` subclasses, so a reply
function receives each :class:`~recursa.testing.Received` request and returns the
reply text or a :class:`~recursa.testing.Reply` (text plus usage overrides), or
raises :class:`~recursa.testing.HTTPFailure` to answer with an error status:

- :class:`AnthropicServer`: ``POST /v1/messages``, with a prompt-cache simulation
  that honours ``cache_control`` breakpoints the way Anthropic documents them.
- :class:`GeminiServer`: ``POST /v1beta/models/{model}:generateContent`` (or ``/v1/``).
- :class:`OpenAIServer`: :class:`recursa.testing.ScriptedServer` (``POST
  /v1/chat/completions``) with a key required; :class:`OpenRouterServer`: the same
  under ``/api/v1``, reporting ``usage.cost``; :class:`AzureServer`: ``POST
  /openai/deployments/{d}/chat/completions?api-version=...``.

Every one requires the key ``test-key`` unless given another, and its ``url`` is
the server's origin (``http://127.0.0.1:PORT``): a test appends the API's path.
Start one with the ``serve`` fixture (tests/providers/conftest.py), which closes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from recursa.models.base import RetryPolicy
from recursa.models.registry import ModelOptions
from recursa.testing import (
    HTTPFailure,
    Received,
    ReplyFunction,
    ScriptedHTTPServer,
    ScriptedServer,
)

# Client side: retries as in production, without the waiting.
FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)


def options(url: str, **kw: Any) -> ModelOptions:
    """Model options pointing a backend at one of these servers."""
    return ModelOptions(base_url=url, retry=FAST_RETRY, timeout=10.0, **kw)


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


# -- Anthropic -------------------------------------------------------------------
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class AnthropicServer(ScriptedHTTPServer):
    """The Messages API. Usage comes from a prompt-cache simulation: a breakpoint
    (``cache_control``) writes the prefix up to it; a later request reads the
    longest cached prefix found at or up to 20 blocks before any of its breakpoints."""

    LOOKBACK = 20

    def __init__(self, reply: ReplyFunction, *, api_key: str = "test-key") -> None:
        super().__init__(reply, api_key=api_key)
        self.cache: set[str] = set()
        self.usages: list[dict[str, int]] = []

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.path != "/v1/messages":
            raise HTTPFailure(404, f"no route {request.path}")
        # SDKs send the key as x-api-key (1.x) or as a bearer token (2.x).
        keys = {request.headers.get("x-api-key"), request.headers.get("authorization")}
        if not keys & {self.api_key, f"Bearer {self.api_key}"}:
            raise HTTPFailure(401, "invalid x-api-key")
        body = request.body
        if "max_tokens" not in body:
            raise HTTPFailure(400, "max_tokens: Field required")
        for message in body["messages"]:
            if message["role"] not in ("user", "assistant"):
                raise HTTPFailure(400, f"messages: Unexpected role {message['role']!r}")
        reply = self.play(request)
        usage = {**self._cache_usage(body), "output_tokens": tokens(reply.text), **reply.usage}
        with self._lock:
            self.usages.append(usage)
        return 200, {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }

    def _cache_usage(self, body: dict[str, Any]) -> dict[str, int]:
        blocks: list[tuple[str, dict[str, Any]]] = []
        system = body.get("system", [])
        if isinstance(system, str):
            system = [{"type": "text", "text": system}]
        blocks += [("system", b) for b in system]
        for message in body["messages"]:
            content = message["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            blocks += [(message["role"], b) for b in content]
        sizes = [tokens(str(b.get("text", ""))) for _, b in blocks]
        breakpoints = [i for i, (_, b) in enumerate(blocks) if "cache_control" in b]

        def key(i: int) -> str:
            prefix = [
                (role, {k: v for k, v in b.items() if k != "cache_control"})
                for role, b in blocks[: i + 1]
            ]
            return hashlib.sha256(json.dumps([body["model"], prefix]).encode()).hexdigest()

        with self._lock:
            read_end = -1
            for b in breakpoints:
                for j in range(b, max(-1, b - self.LOOKBACK - 1), -1):
                    if key(j) in self.cache:
                        read_end = max(read_end, j)
                        break
            write_end = max(breakpoints, default=-1)
            for b in breakpoints:
                if b > read_end:
                    self.cache.add(key(b))
        write_end = max(write_end, read_end)
        return {
            "input_tokens": sum(sizes[write_end + 1 :]),
            "cache_creation_input_tokens": sum(sizes[read_end + 1 : write_end + 1]),
            "cache_read_input_tokens": sum(sizes[: read_end + 1]),
        }


# -- Gemini ------------------------------------------------------------------------
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
# SDKs differ in their default API version (v1beta, v1); the route is the same.
GENERATE = re.compile(r"^/v1(?:beta)?/models/(?P<model>[^/:]+):generateContent$")


class GeminiServer(ScriptedHTTPServer):
    """The Gemini API's ``generateContent``; a bad key gets Gemini's 400 API_KEY_INVALID."""

    def __init__(self, reply: ReplyFunction, *, api_key: str = "test-key") -> None:
        super().__init__(reply, api_key=api_key)

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {
            "error": {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "")}
        }

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        match = GENERATE.match(request.path)
        if match is None:
            raise HTTPFailure(404, f"models/{request.path} is not found for API version v1beta")
        if request.headers.get("x-goog-api-key") != self.api_key:
            return 400, {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                        }
                    ],
                }
            }
        body = request.body
        for content in body.get("contents", []):
            if content.get("role") not in ("user", "model"):
                raise HTTPFailure(400, f"Please use a valid role: {content.get('role')}")
        reply = self.play(request)
        texts = [p.get("text", "") for c in body["contents"] for p in c["parts"]]
        system = body.get("systemInstruction") or {}
        texts += [p.get("text", "") for p in system.get("parts", [])]
        usage = {
            "promptTokenCount": tokens("".join(texts)),
            "candidatesTokenCount": tokens(reply.text),
            **reply.usage,
        }
        usage["totalTokenCount"] = (
            usage["promptTokenCount"]
            + usage["candidatesTokenCount"]
            + usage.get("thoughtsTokenCount", 0)
        )
        return 200, {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": reply.text}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": match["model"],
        }


# -- OpenAI chat completions (plain, OpenRouter, Azure) ---------------------------------
class OpenAIServer(ScriptedServer):
    """:class:`~recursa.testing.ScriptedServer` as these tests use it: the bearer key
    required, ``url`` the origin (the client is given ``url + prefix``)."""

    auth_failure = "No auth credentials found"

    def __init__(
        self,
        reply: ReplyFunction,
        *,
        api_key: str = "test-key",
        cost: float | None = None,
        prefix: str = "/v1",
    ) -> None:
        super().__init__(reply, api_key=api_key, cost=cost, prefix=prefix)

    @property
    def url(self) -> str:
        return self.origin


class OpenRouterServer(OpenAIServer):
    """OpenRouter: the API under ``/api/v1``; every reply reports its charge."""

    def __init__(
        self, reply: ReplyFunction, *, api_key: str = "test-key", cost: float | None = 0.00042
    ) -> None:
        super().__init__(reply, api_key=api_key, cost=cost, prefix="/api/v1")


AZURE_CHAT = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")


class AzureServer(OpenAIServer):
    """Azure OpenAI: the deployment in the path, ``api-version`` required, ``api-key`` header."""

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        match = AZURE_CHAT.match(request.path)
        if match is None:
            raise HTTPFailure(404, f"Resource not found: {request.path}")
        if "api-version" not in request.query:
            raise HTTPFailure(404, "Resource not found (missing api-version)")
        if request.headers.get("api-key") != self.api_key:
            raise HTTPFailure(
                401, "Access denied due to invalid subscription key or wrong API endpoint."
            )
        return 200, self.completion(request, self.play(request), model="gpt-4o-mini-2024-07-18")
