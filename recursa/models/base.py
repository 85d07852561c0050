"""The one model protocol every provider implements, and the logic they share.

A backend subclasses :class:`BaseModel` and implements a single coroutine,
:meth:`BaseModel._request`. Retries with exponential backoff and jitter,
pricing and the common signature live here, once.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import dataclasses
import importlib.util
import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import (
    Any,
    ClassVar,
    Generic,
    Literal,
    NotRequired,
    Protocol,
    TypedDict,
    TypeVar,
    runtime_checkable,
)

from ..errors import BudgetExceeded, ConfigError, ModelError
from ..sampling import Sampling
from . import pricing


class Message(TypedDict):
    """A chat message in OpenAI's shape; ``content`` may be a list of content parts.

    A sub-call that uses tools (:mod:`recursa.subcall_tools`) adds OpenAI's function-calling
    messages: an assistant message with ``tool_calls`` and a ``tool`` message per result
    (``tool_call_id``); providers with another wire format translate them."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]]
    tool_calls: NotRequired[list[dict[str, Any]]]
    tool_call_id: NotRequired[str]


@dataclass(frozen=True)
class ToolRequest:
    """A tool call a model asked for: the provider's ``id``, the tool and its arguments
    (``arguments`` is what the model sent, decoded: any JSON value, checked by the caller)."""

    id: str
    name: str
    arguments: Any


@dataclass(frozen=True)
class ToolSchema:
    """A tool offered to a model: its name, what it does, and its arguments as JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Completion:
    """One model reply and what it cost. ``cost_usd`` is ``None`` when unpriced;
    ``tool_calls`` are the tools the model asked for (only when tools were offered)."""

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    cache_hit: bool = False  # served by recursa's response cache, not the provider
    tool_calls: tuple[ToolRequest, ...] = ()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient provider errors."""

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.max_delay, retry_after)
        cap = min(self.max_delay, self.base_delay * (2**attempt))
        return random.uniform(cap / 2, cap)


#: The ``time.monotonic()`` by which the current request must be done (a budget's
#: ``seconds``), set around a request by :func:`request_deadline`.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "recursa_request_deadline", default=None
)


@contextlib.contextmanager
def request_deadline(at: float | None) -> Iterator[None]:
    """Within the block, :meth:`BaseModel.complete` retries only while a retry can
    start before ``at`` (a ``time.monotonic()``); otherwise it raises
    :class:`~recursa.errors.BudgetExceeded` (``"seconds"``) at once."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


#: The tools offered to the current request (:func:`offer_tools`); ``()`` for none.
_TOOLS: contextvars.ContextVar[tuple[ToolSchema, ...]] = contextvars.ContextVar(
    "recursa_offered_tools", default=()
)


@contextlib.contextmanager
def offer_tools(tools: Sequence[ToolSchema]) -> Iterator[None]:
    """Within the block, a model that ``supports_tools`` offers ``tools`` in its requests
    and returns the calls the model makes in :attr:`Completion.tool_calls`. A context
    variable, like :func:`request_deadline`, so every wrapper (the cache, a recording)
    passes it on unchanged and :class:`Model`'s signature stays the same."""
    token = _TOOLS.set(tuple(tools))
    try:
        yield
    finally:
        _TOOLS.reset(token)


def offered_tools() -> tuple[ToolSchema, ...]:
    """The tools the current request offers (see :func:`offer_tools`)."""
    return _TOOLS.get()


class TextListener(Protocol):
    """Told a streamed reply's text as it arrives (see :func:`stream_text`)."""

    def __call__(self, piece: str, *, restart: bool = False) -> None:
        """``piece`` is the next text of the reply; ``restart=True`` (``piece`` empty)
        says the request broke off and is sent again: the pieces told so far are void
        and the reply starts over."""
        ...


#: Who is told the current request's text as it streams (:func:`stream_text`).
_LISTENER: contextvars.ContextVar[TextListener | None] = contextvars.ContextVar(
    "recursa_text_listener", default=None
)


@contextlib.contextmanager
def stream_text(listener: TextListener) -> Iterator[None]:
    """Within the block, a model that ``supports_streaming`` asks its provider for a
    streamed reply and tells ``listener`` each piece of text as it arrives; it still
    returns the whole :class:`Completion`. Other models tell nothing (the caller sends
    the whole text itself). A context variable, like :func:`offer_tools`, so wrappers
    pass it on and :class:`Model`'s signature stays the same."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def text_listener() -> TextListener | None:
    """Who the current request tells its streamed text (see :func:`stream_text`)."""
    return _LISTENER.get()


class _Attempts:
    """A listener's stand-in for one :meth:`BaseModel.complete`: it notes whether the
    current attempt told any text, so a retry can tell the listener to start over."""

    def __init__(self, listener: TextListener) -> None:
        self.listener = listener
        self.told = False

    def __call__(self, piece: str, *, restart: bool = False) -> None:
        self.told = bool(piece) or (self.told and not restart)
        self.listener(piece, restart=restart)

    def retrying(self) -> None:
        if self.told:
            self("", restart=True)


class TransientError(Exception):
    """Raised by a backend for errors worth retrying (429, 5xx, timeouts, resets)."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class ModelOptions:
    """Settings every provider understands; a provider ignores what it does not need."""

    base_url: str | None = None
    api_key: str | None = None
    timeout: float = 300.0
    retry: RetryPolicy | None = None
    context_window: int | None = None


@runtime_checkable
class Model(Protocol):
    """What the RLM needs of a model: a name and an async chat completion."""

    @property
    def spec(self) -> str:
        """``provider/name``, used for accounting and traces."""
        ...

    @property
    def context_window(self) -> int | None: ...

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Completion:
        """One reply. ``max_tokens`` caps its output (what a budget reserved);
        ``sampling`` is how to sample (its ``max_tokens`` caps the output too)."""
        ...


class BaseModel(abc.ABC):
    """Shared logic for providers: retries, pricing, token estimates."""

    provider: ClassVar[str] = "base"

    def __init__(
        self,
        name: str,
        *,
        options: ModelOptions | None = None,
        context_window: int | None = None,
    ) -> None:
        """``options`` carries the settings every provider shares (retries, timeout,
        window); ``context_window`` overrides the window a backend knows better."""
        options = options or ModelOptions()
        self.name = name
        self.retry = options.retry or RetryPolicy()
        self.timeout = options.timeout
        self._context_window = (
            context_window if context_window is not None else (options.context_window)
        )

    @property
    def spec(self) -> str:
        return f"{self.provider}/{self.name}"

    @property
    def context_window(self) -> int | None:
        return self._context_window

    @property
    def cache_identity(self) -> dict[str, Any]:
        """Where replies come from, for the response cache's key: the provider, the model
        and the endpoint (``base_url``, ``None`` for the provider's default)."""
        base_url = getattr(self, "base_url", None)
        return {
            "provider": self.provider,
            "model": self.name,
            "base_url": base_url.rstrip("/") if isinstance(base_url, str) else None,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"

    # A model may be shared by runs on different event loops (each sync completion()
    # has its own). Runs hold it open while they use it; the last one out closes the
    # loop-bound resources (HTTP connections), which are re-made on next use.
    async def __aenter__(self) -> BaseModel:
        self._users = getattr(self, "_users", 0) + 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._users -= 1
        if self._users == 0:
            await self.aclose()

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release connections bound to the running event loop."""

    @abc.abstractmethod
    async def _request(
        self, messages: Sequence[Message], max_tokens: int | None, sampling: Sampling
    ) -> Completion:
        """Send one request. ``max_tokens`` is the output cap to ask for (``None``: the
        backend's default); ``sampling`` the rest (its own ``max_tokens`` is already in
        ``max_tokens``). Refuse a sampling field the API does not take with a
        :class:`~recursa.errors.ConfigError` naming it, before anything is sent. Raise
        :class:`TransientError` for retryable failures and
        :class:`~recursa.errors.ModelError` (or a subclass) for permanent ones."""

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Completion:
        sampling = sampling if sampling is not None else Sampling()
        max_tokens = output_cap(max_tokens, sampling)
        listener = _LISTENER.get()
        attempts = None if listener is None else _Attempts(listener)
        token = _LISTENER.set(attempts)
        try:
            return await self._complete(messages, max_tokens, sampling, attempts)
        finally:
            _LISTENER.reset(token)

    async def _complete(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        sampling: Sampling,
        attempts: _Attempts | None,
    ) -> Completion:
        """:meth:`complete`'s retry loop; a listener that was told part of a reply that
        broke off is told to start over before the retry."""
        attempt = 0
        while True:
            try:
                completion = await self._request(messages, max_tokens, sampling)
            except TransientError as exc:
                if attempt >= self.retry.max_retries:
                    raise ModelError(
                        f"{self.spec}: {exc} (gave up after {attempt + 1} attempts)",
                        status=exc.status,
                        model=self.spec,
                    ) from exc
                delay = self.retry.delay(attempt, exc.retry_after)
                deadline = _DEADLINE.get()
                if deadline is not None and time.monotonic() + delay >= deadline:
                    # the retry could not start before the budget's deadline
                    raise BudgetExceeded("seconds") from exc
                await asyncio.sleep(delay)
                if attempts is not None:
                    attempts.retrying()
                attempt += 1
                continue
            return self._priced(completion)

    def _priced(self, c: Completion) -> Completion:
        """``c`` with its cost: the one the backend reported (the provider's charge, or
        its own reckoning from the price table), else the price table's. A model at a
        custom endpoint (a self-hosted server, a proxy) is unpriced, whatever a table
        says of its name: only the user's ``prices`` price it (the engine applies them).
        """
        base_url = pricing.endpoint(self)
        if pricing.custom_endpoint(base_url):
            return c if c.cost_usd is None else dataclasses.replace(c, cost_usd=None)
        if c.cost_usd is not None:
            return c
        cost = pricing.cost(
            self.spec, c.input_tokens, c.output_tokens, c.cached_tokens, base_url=base_url
        )
        return dataclasses.replace(c, cost_usd=cost)


class ModelWrapper:
    """A model that adds behaviour around another (a cache, a recorded run) and passes on
    what describes it, so accounting, prompts and image handling see the wrapped model."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner

    @property
    def spec(self) -> str:
        return self.inner.spec

    @property
    def context_window(self) -> int | None:
        return self.inner.context_window

    @property
    def prompt_style(self) -> str:
        return str(getattr(self.inner, "prompt_style", "full"))

    @property
    def max_output_tokens(self) -> int | None:
        value = getattr(self.inner, "max_output_tokens", None)
        return value if isinstance(value, int) else None

    @property
    def supports_images(self) -> bool:
        return bool(getattr(self.inner, "supports_images", True))

    @property
    def supports_tools(self) -> bool:
        return bool(getattr(self.inner, "supports_tools", False))

    @property
    def supports_streaming(self) -> bool:
        return bool(getattr(self.inner, "supports_streaming", False))


ClientT = TypeVar("ClientT")


class SDKModel(BaseModel, Generic[ClientT]):
    """A backend on a provider's SDK client, made on first use and closed with the run.

    The client is made in a worker thread, because making it imports the SDK (most
    of a second for ``openai``): meanwhile the event loop goes on, starting the run's
    sandbox worker for one. A backend imports its SDK inside :meth:`_make_client` and
    :meth:`_request`, never at module level, so that resolving a model spec is cheap.
    """

    #: the SDK's import name, checked (not imported) when the model is made
    sdk: ClassVar[str]
    _client: ClientT | None = None

    def __init__(
        self,
        name: str,
        *,
        options: ModelOptions | None = None,
        context_window: int | None = None,
    ) -> None:
        if not installed(self.sdk):
            raise ConfigError(
                f"{self.provider}/{name} needs the {self.sdk!r} package: "
                f"pip install 'recursa[{self.provider}]'"
            )
        super().__init__(name, options=options, context_window=context_window)
        self._making = threading.Lock()  # concurrent first requests make one client

    @abc.abstractmethod
    def _make_client(self) -> ClientT:
        """The SDK's async client (runs in a worker thread)."""

    async def _sdk(self) -> ClientT:
        client = self._client
        if client is None:
            client = await asyncio.to_thread(self._client_once)
        return client

    def _client_once(self) -> ClientT:
        with self._making:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()  # type: ignore[attr-defined]


def output_cap(max_tokens: int | None, sampling: Sampling | None) -> int | None:
    """The output cap a request asks for: the smaller of ``max_tokens`` (a budget's) and
    the sampling's own ``max_tokens`` (the user's), ``None`` when neither is set."""
    own = sampling.max_tokens if sampling is not None else None
    if own is None:
        return max_tokens
    return own if max_tokens is None else min(own, max_tokens)


def refuse(spec: str, field: str, value: object, why: str) -> ConfigError:
    """The :class:`~recursa.errors.ConfigError` for a sampling field a model does not take."""
    return ConfigError(f"{spec} does not support {field}={value!r}: {why}")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (nor failing when a
    parent package of a dotted name is missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def estimate_tokens(text: str) -> int:
    """A provider-free token estimate (4 characters a token), for models that report none."""
    return max(1, (len(text) + 3) // 4)


def tool_call_chars(message: Message) -> int:
    """The characters of an assistant message's ``tool_calls`` (each name and its
    arguments), which a provider counts as prompt but no ``content`` holds."""
    chars = 0
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        arguments = function.get("arguments", "")
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments, default=str)
        chars += len(str(function.get("name", ""))) + len(raw)
    return chars


def message_chars(messages: Sequence[Message]) -> int:
    """``len(message_text(messages))`` plus the :func:`tool_call_chars` of each message,
    without building the text: estimates run on every request and every turn, and a
    conversation may hold megabytes."""
    chars = 0
    pieces = 0
    for m in messages:
        chars += tool_call_chars(m)
        content = m["content"]
        if isinstance(content, str):
            chars += len(content)
            pieces += 1
        else:
            for p in content:
                if p.get("type") == "text":
                    chars += len(str(p.get("text", "")))
                    pieces += 1
    return chars + max(0, pieces - 1)


def message_tokens(messages: Sequence[Message]) -> int:
    """:func:`estimate_tokens` of a conversation's text."""
    return max(1, (message_chars(messages) + 3) // 4)


def message_text(messages: Sequence[Message]) -> str:
    """All text of a conversation, content parts included, for estimates and cache keys."""
    out: list[str] = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append(content)
        else:
            out.extend(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return "\n".join(out)
