"""OpenAI and every OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp, OpenRouter).

Two clients send the same request (one JSON body, built once by
:meth:`OpenAIModel.sampling_params` and :meth:`OpenAIModel._body`) and their replies
and errors go through the same code:

- ``http`` (the default): :class:`~recursa.models.openai_http.ChatClient`, a lean
  HTTP/1.1 client on the standard library's asyncio streams for ``POST
  /chat/completions``. ``import openai`` takes about a second, on the critical path
  before a run's first request, and the SDK's request machinery costs several times
  this client's CPU a request (docs/performance.md).
- ``sdk``: the official ``openai`` SDK (its low-level ``post``, its aiohttp transport),
  with its own retries turned off. ``RECURSA_OPENAI_CLIENT=sdk`` or ``client="sdk"``.

Retries, backoff and jitter are recursa's on both (see
:class:`~recursa.models.base.BaseModel`), so every provider behaves the same way.

Within :func:`~recursa.models.base.stream_text`, the lean client asks for a streamed
reply (``"stream": true`` with ``stream_options.include_usage``) and tells the listener
its text as it arrives; usage comes from the last chunk, or is estimated as for a reply
without any. A request that offers tools is never streamed, and the SDK client does
not stream (``supports_streaming`` is False on it): its replies come whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigError,
    ContextWindowError,
    ModelError,
)
from ..sampling import Sampling
from ._http import connection_error, retry_after_seconds, status_error, where
from .base import (
    Completion,
    Message,
    SDKModel,
    TextListener,
    ToolRequest,
    ToolSchema,
    TransientError,
    estimate_tokens,
    message_tokens,
    offered_tools,
    refuse,
    text_listener,
)
from .openai_http import ChatClient, ClientError, HTTPStatusError, error_detail
from .registry import ModelOptions

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local servers (vLLM, llama.cpp, Ollama) ignore the key but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"
# OpenAI's reasoning models: GPT-5 (gpt-5, gpt-5-mini, gpt-5.1, ...) and the o-series.
REASONING_MODEL = re.compile(r"^(gpt-5|o\d)([.\-]|$)")
#: Which client sends the requests: ``http`` (the lean one, the default) or ``sdk``.
CLIENT_ENV = "RECURSA_OPENAI_CLIENT"
CLIENTS = ("http", "sdk")


class OpenAIModel(SDKModel["openai.AsyncOpenAI | ChatClient"]):
    """Chat completions over the OpenAI protocol, through ``client``: ``"http"`` (the
    lean client, the default) or ``"sdk"`` (the ``openai`` SDK); ``None`` reads
    ``$RECURSA_OPENAI_CLIENT``."""

    provider = "openai"
    sdk = "openai"
    #: OpenAI's function calling (``tools`` / ``tool_calls``), on both clients
    supports_tools = True

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        options: ModelOptions | None = None,
        client: str | None = None,
    ) -> None:
        options = options or ModelOptions()
        self.client = client_kind(client, spec=f"{self.provider}/{name}")
        self._stream_refused = False  # the server answered a streamed request with a 400
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

    def _make_client(self) -> openai.AsyncOpenAI | ChatClient:
        # in a worker thread: either imports its package
        return self._http_client() if self.client == "http" else self._sdk_client()

    def _sdk_client(self) -> openai.AsyncOpenAI:
        import openai

        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=0,
            **_sdk_transport(),
        )

    def _http_client(self) -> ChatClient:
        """The lean client, with the headers the SDK would send for the same settings:
        the key as a bearer token, and ``OpenAI-Organization`` / ``OpenAI-Project``
        from ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID`` (which the SDK reads too)."""
        headers = {"Authorization": f"Bearer {self._api_key}"}
        for header, variable in (
            ("OpenAI-Organization", "OPENAI_ORG_ID"),
            ("OpenAI-Project", "OPENAI_PROJECT_ID"),
        ):
            value = os.environ.get(variable)
            if value:
                headers[header] = value
        return ChatClient(self.base_url or DEFAULT_BASE_URL, headers=headers, timeout=self.timeout)

    @property
    def supports_streaming(self) -> bool:
        """Whether replies can stream (:func:`~recursa.models.base.stream_text`): on
        the lean client only."""
        return self.client == "http" and not self._stream_refused

    def _chat_path(self) -> str:
        """Where the lean client posts, under its base URL."""
        return "/chat/completions"

    @property
    def official(self) -> bool:
        """Whether requests go to OpenAI's own API (not a compatible server)."""
        return self.base_url is None or self.base_url.rstrip("/") == DEFAULT_BASE_URL

    @property
    def reasoning(self) -> bool:
        """Whether the model is one of OpenAI's reasoning models (GPT-5, o1, o3, o4-mini
        ...), by its name; a vendor prefix (``openai/gpt-5`` on a proxy) is ignored."""
        return is_reasoning_model(self.name)

    def _output_param(self) -> str:
        """The name of the output cap: OpenAI's own API takes ``max_completion_tokens``
        for every model (and refuses ``max_tokens`` for reasoning ones); a compatible
        server serving a reasoning model is a proxy to one, so it gets the same;
        other compatible servers (vLLM, llama.cpp, Ollama) know ``max_tokens``."""
        return "max_completion_tokens" if self.official or self.reasoning else "max_tokens"

    def sampling_params(self, max_tokens: int | None, sampling: Sampling) -> dict[str, Any]:
        """The request's sampling parameters; a :class:`ConfigError` for a value the
        model refuses (OpenAI's reasoning models take neither a temperature nor a top_p
        other than 1, unless their reasoning is off)."""
        params: dict[str, Any] = {}
        if max_tokens is not None:
            params[self._output_param()] = max_tokens
        effort = sampling.reasoning_effort
        if self.reasoning and effort != "none":
            for field in ("temperature", "top_p"):
                value = getattr(sampling, field)
                if value is not None and value != 1:
                    raise refuse(
                        self.spec,
                        field,
                        value,
                        "OpenAI's reasoning models (GPT-5, o-series) only take the default "
                        "of 1; leave it unset, or use reasoning_effort to steer them",
                    )
        if effort is not None and self.official and not self.reasoning:
            raise refuse(
                self.spec,
                "reasoning_effort",
                effort,
                "only OpenAI's reasoning models (GPT-5, o-series) take one",
            )
        for field in ("temperature", "top_p", "seed", "reasoning_effort"):
            value = getattr(sampling, field)
            if value is not None:
                params[field] = value
        return params

    def _body(
        self, messages: Sequence[Message], max_tokens: int | None, sampling: Sampling
    ) -> dict[str, Any]:
        """The request body, the same for both clients."""
        params = self.sampling_params(max_tokens, sampling)
        body: dict[str, Any] = {"model": self.name, "messages": list(messages), **params}
        tools = offered_tools()
        if tools:
            body["tools"] = [function_tool(t) for t in tools]
        return body

    async def _request(
        self, messages: Sequence[Message], max_tokens: int | None, sampling: Sampling
    ) -> Completion:
        body = self._body(messages, max_tokens, sampling)  # a refusal before anything
        client = await self._sdk()  # first: it imports its package off the event loop
        if isinstance(client, ChatClient):
            listener = text_listener()
            if listener is not None and "tools" not in body and not self._stream_refused:
                try:
                    return await self._streamed(client, body, messages, listener)
                except ModelError as exc:
                    if exc.status not in (400, 422) or isinstance(exc, ContextWindowError):
                        raise
                    # a server that does not take "stream" or "stream_options" (an old
                    # Azure api-version, a strict proxy): its replies come whole from now on
                    self._stream_refused = True
                    logger.warning("%s: streaming refused (%s); not streaming", self.spec, exc)
            with self._http_errors(client):
                raw = await client.post(self._chat_path(), body)
        else:
            raw = await self._post_sdk(client, body)
        return self._completion(raw, messages)

    @contextlib.contextmanager
    def _http_errors(self, client: ChatClient) -> Iterator[None]:
        """The lean client's failures as the model's errors."""
        try:
            yield
        except HTTPStatusError as exc:
            raise self._status_error(exc.status, exc.detail, exc.headers) from exc
        except (ClientError, OSError, TimeoutError) as exc:
            # refused or no such host: at once; a timeout or a reset: retried
            raise connection_error(exc, spec=self.spec, url=client.base_url) from exc

    async def _streamed(
        self,
        client: ChatClient,
        body: dict[str, Any],
        messages: Sequence[Message],
        listener: TextListener,
    ) -> Completion:
        """A streamed reply, its text told to ``listener`` piece by piece; one that
        ends before a ``finish_reason`` (the server broke off) is retried."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        pieces: list[str] = []
        usage: Any = None
        finished = False
        with self._http_errors(client):
            async with contextlib.aclosing(client.post_stream(self._chat_path(), body)) as events:
                async for raw in events:
                    chunk = _chunk(raw)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or ():
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        piece = _text(choice.get("delta") or {})
                        if piece:
                            pieces.append(piece)
                            listener(piece)
                        finished = finished or bool(choice.get("finish_reason"))
        if not finished:
            raise TransientError("the streamed reply ended before it finished")
        return self._with_usage("".join(pieces), usage, messages)

    async def _post_sdk(self, client: openai.AsyncOpenAI, body: dict[str, Any]) -> bytes:
        import openai

        try:
            # The SDK's low-level post(), and the body as bytes: chat.completions.create()
            # re-validates and copies the whole history on every call (about 0.3 ms a
            # message), and building its response models costs about as much CPU as the
            # request itself, which is what bounds a wide fan-out on a few cores.
            return await client.post("/chat/completions", body=body, cast_to=bytes)
        except openai.APIStatusError as exc:
            raise self._status_error(
                exc.status_code, _error_message(exc), exc.response.headers
            ) from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            # refused or no such host: at once; a timeout or a reset: retried
            raise connection_error(exc, spec=self.spec, url=str(client.base_url)) from exc

    def _completion(self, raw: bytes, messages: Sequence[Message]) -> Completion:
        """A chat completion body as a :class:`Completion`; a body that is not one (an
        HTML page from a proxy, an error object, no choices) is retried."""
        data = _json_object(raw, "the reply", "a chat completion")
        choices = data.get("choices")
        if not choices or not isinstance(choices, list):
            error = data.get("error")
            if isinstance(error, dict) and error.get("message"):
                raise TransientError(f"the reply is an error: {error['message']}")
            raise TransientError("empty response (no choices)")
        message = choices[0].get("message") or {}
        text = _text(message)
        calls = tool_requests(message.get("tool_calls")) if offered_tools() else ()
        return self._with_usage(text, data.get("usage"), messages, calls)

    def _with_usage(
        self,
        text: str,
        usage: Any,
        messages: Sequence[Message],
        calls: tuple[ToolRequest, ...] = (),
    ) -> Completion:
        """A reply's :class:`Completion` from its ``usage`` object; estimated (4
        characters a token) when the server reported none."""
        if not isinstance(usage, dict) or usage.get("prompt_tokens") is None:
            return Completion(
                text=text,
                model=self.spec,
                input_tokens=message_tokens(messages),
                output_tokens=estimate_tokens(text),
                tool_calls=calls,
            )
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        # OpenRouter and some proxies report the exact charge.
        reported = usage.get("cost")
        return Completion(
            text=text,
            model=self.spec,
            input_tokens=int(usage["prompt_tokens"]),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(cached or 0),
            cost_usd=float(reported) if isinstance(reported, int | float) else None,
            tool_calls=calls,
        )

    def _status_error(self, status: int, detail: str, headers: Mapping[str, str]) -> Exception:
        """The error for an HTTP status outside 2xx (:func:`~recursa.models._http.status_error`,
        with ``Retry-After``), whichever client got it."""
        at = where(self.spec, self.base_url)
        lowered = detail.lower()
        if status == 400 and "context" in lowered and "length" in lowered:
            return ContextWindowError(
                f"{at}: {' '.join(detail.split())}", status=status, model=self.spec
            )
        if status == 404 and self.base_url and not self.base_url.rstrip("/").endswith("/v1"):
            detail += " (OpenAI-compatible servers usually want the base URL to end in /v1)"
        return status_error(
            spec=self.spec,
            where=at,
            status=status,
            detail=detail,
            retry_after=retry_after_seconds(headers),
        )


def client_kind(value: str | None, *, spec: str) -> str:
    """``value`` (else ``$RECURSA_OPENAI_CLIENT``, else ``http``) checked."""
    kind = (value or os.environ.get(CLIENT_ENV) or "http").strip().lower()
    if kind not in CLIENTS:
        source = "client" if value else CLIENT_ENV
        raise ConfigError(f"{spec}: {source}={kind!r} is not one of {', '.join(CLIENTS)}")
    return kind


def is_reasoning_model(name: str) -> bool:
    """Whether ``name`` (``gpt-5-mini``, ``o4-mini``, ``openai/o3``) is one of OpenAI's
    reasoning models, which refuse ``max_tokens`` and any temperature but 1."""
    base = name.rsplit("/", 1)[-1].lower()
    # gpt-5-chat-latest is the chat model behind ChatGPT: no reasoning, any temperature
    return REASONING_MODEL.match(base) is not None and "-chat" not in base


def _sdk_transport() -> dict[str, Any]:
    """The SDK's aiohttp transport (``openai[aiohttp]``) when installed: about half the
    CPU per request of its default httpx one, which is what bounds wide fan-outs."""
    import openai

    try:
        return {"http_client": openai.DefaultAioHttpClient()}
    except RuntimeError:  # httpx-aiohttp is missing: the SDK's default client
        return {}


def _json_object(raw: bytes, what: str, shape: str) -> dict[str, Any]:
    """``raw`` as a JSON object; anything else is retried (a proxy's HTML page)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise TransientError(f"{what} is not JSON: {raw[:120]!r}") from None
    if not isinstance(data, dict):
        raise TransientError(f"{what} is not {shape}: {raw[:120]!r}")
    return data


def _chunk(raw: bytes) -> dict[str, Any]:
    """One event of a streamed reply; an error event or one that is not a chunk is
    retried, as a reply body that is not a completion is."""
    data = _json_object(raw, "a streamed chunk", "a chat completion chunk")
    error = data.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else error
        raise TransientError(f"the stream carried an error: {message}")
    return data


def _text(message: dict[str, Any]) -> str:
    """The reply text; some servers send content parts instead of a string."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def function_tool(tool: ToolSchema) -> dict[str, Any]:
    """A tool in OpenAI's ``tools`` list."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def tool_requests(calls: Any) -> tuple[ToolRequest, ...]:
    """A reply's ``tool_calls`` as :class:`ToolRequest` values. ``arguments`` is a JSON
    string on the wire; one that does not decode is passed on as the raw string, so the
    caller can tell the model its arguments were not JSON."""
    if not isinstance(calls, list):
        return ()
    out: list[ToolRequest] = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        raw = function.get("arguments")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) and raw.strip() else raw or {}
        except ValueError:
            arguments = raw
        call_id = call.get("id")
        out.append(ToolRequest(call_id if isinstance(call_id, str) else f"call_{i}",
                               function["name"], arguments))  # fmt: skip
    return tuple(out)


def _error_message(exc: openai.APIStatusError) -> str:
    """The provider's message, read from the body the way the lean client reads it."""
    try:
        raw = exc.response.content
    except Exception:  # a body never read (httpx2.ResponseNotRead): the SDK's text
        return exc.message
    return error_detail(exc.status_code, raw)


def create(name: str, options: ModelOptions) -> OpenAIModel:
    """Registry entry point for ``openai/<name>``."""
    return OpenAIModel(name, options=options)
