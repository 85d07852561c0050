"""``recursa serve``: an RLM behind an OpenAI-compatible HTTP API.

Any tool that speaks OpenAI's chat-completions protocol can use an RLM::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY")
    client.chat.completions.create(model="recursa", messages=[...])

Routes: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``
(with and without ``stream``) and ``GET /health``.

Each chat completion is one RLM run. The last user message is the query; the
rest of the conversation, joined with ``### role`` headers, is the ``context``
(a conversation of one message is its own context). A query longer than
:data:`QUERY_MAX_CHARS` is shown to the root model cut, with a note, and given
in full at the end of the context. An extension field ``rlm`` in the request
may set ``context`` (str, list[str] or dict; replaces the conversation),
``max_depth``, ``max_iterations`` and ``budget`` (``usd``, ``tokens``,
``calls``, ``seconds``): a requested budget can only tighten the server's.
``model`` is ``"recursa"`` (the server's root model); another
``provider/name`` is accepted only if the server allows it.

The reply is a normal ``chat.completion`` (``finish_reason`` ``"length"`` when
the run stopped early on a budget or its turns) whose ``usage`` totals the
whole recursion tree, with an extension field ``rlm``: usage by model and by
depth, cost, iterations, depth reached, why it stopped, the trace path. A
streamed reply sends a role chunk at once, then ``: progress {...}`` comment
lines while the run goes (and ``: keep-alive`` when it is quiet), then the
answer, a final chunk with ``finish_reason`` and ``rlm``, an optional usage
chunk (``stream_options.include_usage``) and ``data: [DONE]``.

Limits: at most ``max_concurrent_runs`` runs at once; up to ``max_queued``
more requests wait for a slot (a streamed one is told ``: queued``); past that
a request is refused at once with 429 and ``Retry-After``. A run whose client
disconnects is cancelled. The server binds 127.0.0.1 unless told otherwise,
and with ``api_key`` every ``/v1`` route needs ``Authorization: Bearer KEY``.
Errors are OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}``.

The HTTP layer is asyncio streams with h11 (already a dependency of httpx), so
the server needs nothing beyond recursa's own requirements.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h11

from .budget import Budget
from .context import Context
from .errors import ConfigError, RecursaError
from .models.base import Model
from .prompts import QUERY_PREVIEW_CHARS
from .rlm import RLM, Result
from .trace import Event

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MODEL_NAME = "recursa"
# The root model's first turn cuts queries at QUERY_PREVIEW_CHARS; ours is cut
# (with our note) below that, so the note survives.
QUERY_MAX_CHARS = QUERY_PREVIEW_CHARS - 500
MAX_BODY_BYTES = 256 * 1024 * 1024
KEEPALIVE_SECONDS = 15.0
IDLE_TIMEOUT_SECONDS = 75.0
_READ_CHUNK = 64 * 1024
_BIG_BODY = 1024 * 1024
_RLM_FIELDS = frozenset({"context", "max_depth", "max_iterations", "budget"})
_BUDGET_FIELDS = ("usd", "tokens", "calls", "seconds")


# -- what a request may choose, and how an RLM is made for it -----------------------


@dataclass(frozen=True)
class RunOptions:
    """A request's choices for its run; ``None`` keeps the server's setting."""

    model: str | None = None
    max_depth: int | None = None
    max_iterations: int | None = None
    budget: Budget | None = None


RLMFactory = Callable[[RunOptions], RLM]


def tighter(server: Budget | None, requested: Budget | None) -> Budget | None:
    """The stricter of two budgets, limit by limit (a request cannot raise the server's)."""
    if requested is None:
        return server
    if server is None:
        return requested
    limits: dict[str, Any] = {}
    for name in _BUDGET_FIELDS:
        a, b = getattr(server, name), getattr(requested, name)
        limits[name] = a if b is None else b if a is None else min(a, b)
    return Budget(**limits)


def rlm_factory(
    template: RLM,
    *,
    trace_dir: str | Path | None = None,
    allowed_models: Collection[str] = (),
) -> RLMFactory:
    """Runs configured like ``template``, with each request's :class:`RunOptions` applied.

    Each run is ``template.with_settings(...)``: it shares the template's tools, cache
    and (unless the request names another model) its model objects, whose connections
    :class:`App` holds open across runs. The budget is the stricter of the template's
    and the request's (:func:`tighter`). Traces: one file per run under ``trace_dir``
    when given; with ``template.trace=True`` the RLM's own per-run files; otherwise none
    (one fixed trace path would be overwritten by concurrent runs).

    ``allowed_models`` (the server's ``--allow-model`` list) join the template's
    ``Settings.allowed_models``: a model the server lets a request choose as its root
    is also one that the run's code may call in ``llm_query(model=...)``.
    """
    directory = Path(trace_dir) if trace_dir is not None else None
    allowed = tuple(dict.fromkeys((*template.settings.allowed_models, *sorted(allowed_models))))

    def make(options: RunOptions) -> RLM:
        changes: dict[str, Any] = {"budget": tighter(template.budget, options.budget)}
        if allowed != template.settings.allowed_models:
            changes["allowed_models"] = allowed
        if options.model is not None:
            changes["model"] = options.model
        if options.max_depth is not None:
            changes["max_depth"] = options.max_depth
        if options.max_iterations is not None:
            changes["max_iterations"] = options.max_iterations
        if directory is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            changes["trace"] = directory / f"{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
        elif template.trace is not True:
            changes["trace"] = None
        return template.with_settings(**changes)

    return make


# -- HTTP messages ----------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    """A whole body, or a stream of chunks produced while it is sent."""

    status: int
    body: bytes | AsyncIterator[bytes]
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(
        cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        data = json.dumps(payload, ensure_ascii=False).encode()
        return cls(status, data, headers=list(headers or []))


class HTTPError(Exception):
    """An OpenAI-style error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or []

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> Response:
        return Response.json(self.status, self.payload(), self.headers)


def _bad(message: str, param: str | None = None) -> HTTPError:
    return HTTPError(400, message, param=param)


# -- a chat request, understood ---------------------------------------------------


@dataclass
class ChatRequest:
    model_name: str
    query: str
    context: str | list[str] | dict[str, Any]
    options: RunOptions
    stream: bool
    include_usage: bool


def _content_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
        return "\n".join(parts)
    raise _bad(f"{where}.content must be a string or a list of content parts", where)


def _last_user(messages: list[dict[str, Any]]) -> tuple[int, str]:
    """The index and text of the last user message: the query."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last is None:
        raise _bad("the conversation has no user message: it is the query", "messages")
    query = _content_text(messages[last].get("content"), f"messages[{last}]")
    if not query.strip():
        raise _bad("the last user message (the query) is empty", f"messages[{last}]")
    return last, query


def conversation(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """``(query shown to the root, context text)`` from a chat's messages."""
    texts = [
        (str(m["role"]), _content_text(m.get("content"), f"messages[{i}]"))
        for i, m in enumerate(messages)
    ]
    last, query = _last_user(messages)
    long = len(query) > QUERY_MAX_CHARS
    if len(texts) == 1:
        context = query
        where = "it is the whole of `context`"
    else:
        parts = [f"### {role}\n{text}" for i, (role, text) in enumerate(texts) if i != last]
        if long:
            parts.append(f"### user (the query, in full)\n{query}")
        context = "\n\n".join(parts)
        where = "it is in full at the end of `context`"
    if long:
        query = (
            query[:QUERY_MAX_CHARS]
            + f"\n[the query is {len(query):,} characters, cut here; {where}]"
        )
    return query, context


def _int_field(ext: dict[str, Any], name: str, minimum: int) -> int | None:
    value = ext.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _bad(f"rlm.{name} must be an integer >= {minimum}", f"rlm.{name}")
    return value


def _budget_field(value: Any) -> Budget | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("rlm.budget must be an object with usd, tokens, calls, seconds", "rlm.budget")
    unknown = set(value) - set(_BUDGET_FIELDS)
    if unknown:
        raise _bad(f"rlm.budget: unknown field {sorted(unknown)[0]!r}", "rlm.budget")
    for name, limit in value.items():
        if limit is not None and (
            not isinstance(limit, int | float) or isinstance(limit, bool) or limit <= 0
        ):
            raise _bad(f"rlm.budget.{name} must be a positive number", f"rlm.budget.{name}")
    try:
        return Budget(**value)
    except (ConfigError, TypeError) as exc:
        raise _bad(f"rlm.budget: {exc}", "rlm.budget") from exc


# -- the application --------------------------------------------------------------


class App:
    """The HTTP logic, free of sockets: :meth:`handle` turns a :class:`Request` into a
    :class:`Response`. :class:`Server` puts it on a port."""

    def __init__(
        self,
        factory: RLMFactory,
        *,
        api_key: str | None = None,
        max_concurrent_runs: int = 4,
        max_queued: int = 16,
        allow_models: bool | Collection[str] = False,
        model_name: str = MODEL_NAME,
        max_body_bytes: int = MAX_BODY_BYTES,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        hold: Sequence[Model] = (),
    ) -> None:
        if max_concurrent_runs < 1:
            raise ConfigError(f"max_concurrent_runs must be >= 1, got {max_concurrent_runs}")
        if max_queued < 0:
            raise ConfigError(f"max_queued must be >= 0, got {max_queued}")
        if api_key is not None and not api_key:
            raise ConfigError("the server's API key is empty")
        self.factory = factory
        self.api_key = api_key
        self.max_concurrent_runs = max_concurrent_runs
        self.max_queued = max_queued
        self.allow_models = allow_models
        self.model_name = model_name
        self.max_body_bytes = max_body_bytes
        self.keepalive_seconds = keepalive_seconds
        self.created = int(time.time())
        self.running = 0
        self.queued = 0
        self._slots: asyncio.Semaphore | None = None
        self._hold = list(hold)
        self._held: contextlib.AsyncExitStack | None = None

    async def startup(self) -> None:
        """Hold the configured models open while serving: their connections then last
        across runs instead of being made again for each one."""
        if self._held is not None:
            return
        stack = contextlib.AsyncExitStack()
        seen: set[int] = set()
        for model in self._hold:
            if id(model) not in seen and isinstance(model, contextlib.AbstractAsyncContextManager):
                seen.add(id(model))
                await stack.enter_async_context(model)
        self._held = stack

    async def shutdown(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.aclose()

    # -- routing ----------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except HTTPError as exc:
            return exc.response()
        except Exception:
            logger.exception("unexpected error on %s %s", request.method, request.path)
            return HTTPError(
                500, "internal server error (see the server's log)", type="server_error"
            ).response()

    async def _route(self, request: Request) -> Response:
        path = request.path.split("?", 1)[0].rstrip("/") or "/"
        method = request.method
        if path == "/v1" or path.startswith("/v1/"):
            self._authorize(request)
        if path == "/health":
            self._allow(method, "GET", path)
            return Response.json(200, {"status": "ok", "running": self.running})
        if path == "/v1/chat/completions":
            self._allow(method, "POST", path)
            return await self.chat_completions(request)
        if path == "/v1/models":
            self._allow(method, "GET", path)
            return Response.json(200, {"object": "list", "data": self._models()})
        if path.startswith("/v1/models/"):
            self._allow(method, "GET", path)
            name = urllib.parse.unquote(path.removeprefix("/v1/models/"))
            found = [m for m in self._models() if m["id"] == name]
            if not found and self._model_allowed(name):
                found = [self._model_entry(name)]
            if not found:
                raise self._unknown_model(name)
            return Response.json(200, found[0])
        raise HTTPError(404, f"Unknown request URL: {method} {request.path}", code="unknown_url")

    @staticmethod
    def _allow(method: str, allowed: str, path: str) -> None:
        if method != allowed:
            raise HTTPError(
                405,
                f"{method} is not allowed on {path} (use {allowed})",
                code="method_not_allowed",
                headers=[("allow", allowed)],
            )

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            raise HTTPError(
                401,
                "Incorrect or missing API key: send Authorization: Bearer <key>",
                code="invalid_api_key",
                headers=[("www-authenticate", "Bearer")],
            )

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "recursa"}

    def _models(self) -> list[dict[str, Any]]:
        names = [self.model_name]
        if isinstance(self.allow_models, Collection) and not isinstance(self.allow_models, str):
            names += sorted(set(self.allow_models) - {self.model_name})
        return [self._model_entry(n) for n in names]

    def _model_allowed(self, name: str) -> bool:
        if isinstance(self.allow_models, bool):
            return self.allow_models and "/" in name
        return name in self.allow_models

    def _unknown_model(self, name: str) -> HTTPError:
        return HTTPError(
            404,
            f"The model {name!r} does not exist or is not served here (use {self.model_name!r})",
            code="model_not_found",
            param="model",
        )

    # -- chat completions -------------------------------------------------------
    def parse_chat(self, body: Any) -> ChatRequest:
        """Validate a decoded chat-completions body (400 for anything wrong)."""
        if not isinstance(body, dict):
            raise _bad("the request body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("'messages' is required: a non-empty list of messages", "messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise _bad(f"messages[{i}] must be an object with a 'role'", f"messages[{i}]")
        name = body.get("model") or self.model_name
        if not isinstance(name, str):
            raise _bad("'model' must be a string", "model")
        model: str | None = None
        if name != self.model_name:
            if not self._model_allowed(name):
                raise self._unknown_model(name)
            model = name
        n = body.get("n")
        if n not in (None, 1):
            raise _bad("only n=1 is supported: one RLM run answers one request", "n")
        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise _bad("'stream' must be a boolean", "stream")
        stream_options = body.get("stream_options") or {}
        include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        ext = body.get("rlm") or {}
        if not isinstance(ext, dict):
            raise _bad("'rlm' must be an object", "rlm")
        unknown = set(ext) - _RLM_FIELDS
        if unknown:
            raise _bad(
                f"rlm: unknown field {sorted(unknown)[0]!r} "
                f"(known: {', '.join(sorted(_RLM_FIELDS))})",
                "rlm",
            )
        if ext.get("context") is not None:
            context_value: Any = ext["context"]
            if not (
                isinstance(context_value, str | dict)
                or (
                    isinstance(context_value, list)
                    and all(isinstance(v, str) for v in context_value)
                )
            ):
                raise _bad(
                    "rlm.context must be a string, a list of strings or an object", "rlm.context"
                )
            # The whole query goes to the run (the first turn cuts it when long).
            query = _last_user(messages)[1]
        else:
            query, context_value = conversation(messages)
        try:
            Context(context_value)  # validated now, while an error can still be a 400
        except ConfigError as exc:
            raise _bad(str(exc), "rlm.context") from exc
        options = RunOptions(
            model=model,
            max_depth=_int_field(ext, "max_depth", 0),
            max_iterations=_int_field(ext, "max_iterations", 1),
            budget=_budget_field(ext.get("budget")),
        )
        return ChatRequest(name, query, context_value, options, stream, include_usage)

    async def chat_completions(self, request: Request) -> Response:
        try:
            if len(request.body) > _BIG_BODY:  # a long context: decode off the event loop
                body = await asyncio.to_thread(json.loads, request.body)
            else:
                body = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad(f"We could not parse the JSON body of your request: {exc}") from None
        chat = self.parse_chat(body)
        try:
            rlm = self.factory(chat.options)
        except ConfigError as exc:
            raise _bad(str(exc)) from exc
        self._check_capacity()
        if chat.stream:
            return Response(
                200,
                self._stream(chat, rlm),
                content_type="text/event-stream; charset=utf-8",
                headers=[("cache-control", "no-cache"), ("x-accel-buffering", "no")],
            )
        self.queued += 1
        await self._acquire()
        try:
            result = await self._run(chat, rlm, [])
        finally:
            self._release()
        return Response.json(200, self._completion(f"chatcmpl-{uuid.uuid4().hex}", chat, result))

    # -- concurrency ----------------------------------------------------------------
    def _check_capacity(self) -> None:
        """Refuse at once (429) when every run slot is taken and the queue is full."""
        if self.running >= self.max_concurrent_runs and self.queued >= self.max_queued:
            raise HTTPError(
                429,
                f"the server is busy: {self.running} runs going and {self.queued} waiting "
                f"(limits {self.max_concurrent_runs} and {self.max_queued}); retry later",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers=[("retry-after", "1")],
            )

    async def _acquire(self) -> None:
        """Wait for a run slot; the caller counted itself in ``queued`` first."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent_runs)
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1
        self.running += 1

    def _release(self) -> None:
        assert self._slots is not None
        self.running -= 1
        self._slots.release()

    async def _run(self, chat: ChatRequest, rlm: RLM, sinks: list[Any]) -> Result:
        try:
            return await rlm.acompletion(chat.query, chat.context, sinks=sinks)
        except ConfigError as exc:
            raise _bad(str(exc)) from exc
        except RecursaError as exc:
            raise HTTPError(
                500, f"the RLM run failed: {exc}", type="server_error", code="run_failed"
            ) from exc

    # -- bodies -------------------------------------------------------------------------
    @staticmethod
    def _usage(result: Result) -> dict[str, Any]:
        u = result.usage
        return {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        }

    @staticmethod
    def _extension(result: Result) -> dict[str, Any]:
        info = result.to_dict()
        info.pop("answer", None)
        return info

    def _completion(self, completion_id: str, chat: ChatRequest, result: Result) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.answer},
                    "finish_reason": "length" if result.stopped else "stop",
                    "logprobs": None,
                }
            ],
            "usage": self._usage(result),
            "rlm": self._extension(result),
        }

    async def _stream(self, chat: ChatRequest, rlm: RLM) -> AsyncIterator[bytes]:
        # Counted as queued before the first await: the capacity check just passed.
        self.queued += 1
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": chat.model_name,
                "choices": choices,
            }
            payload.update(extra)
            return _sse(payload)

        def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": content, "finish_reason": finish}]

        must_wait = self.running >= self.max_concurrent_runs
        acquiring = asyncio.ensure_future(self._acquire())
        try:
            yield chunk(delta({"role": "assistant", "content": ""}))
            if must_wait:
                yield b": queued\n\n"
            while not acquiring.done():
                await asyncio.wait({acquiring}, timeout=self.keepalive_seconds)
                if not acquiring.done():
                    yield b": queued\n\n"
            acquiring.result()
        except BaseException:
            acquiring.cancel()
            with contextlib.suppress(BaseException):
                await acquiring
                self._release()  # it had a slot just before it was cancelled
            raise
        notes: asyncio.Queue[str] = asyncio.Queue()
        run = asyncio.ensure_future(self._run(chat, rlm, [_Progress(notes)]))
        getter: asyncio.Future[str] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(notes.get())
                done, _ = await asyncio.wait(
                    {run, getter},
                    timeout=self.keepalive_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter in done:
                    yield f": progress {getter.result()}\n\n".encode()
                    continue
                getter.cancel()
                if run in done:
                    break
                yield b": keep-alive\n\n"
            result = run.result()
        except HTTPError as exc:
            yield _sse(exc.payload())
            yield b"data: [DONE]\n\n"
            return
        except Exception:
            logger.exception("the streamed run failed")
            yield _sse(HTTPError(500, "internal server error", type="server_error").payload())
            yield b"data: [DONE]\n\n"
            return
        finally:
            if getter is not None:
                getter.cancel()
            if not run.done():
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run
            self._release()
        if result.answer:
            yield chunk(delta({"content": result.answer}))
        finish = "length" if result.stopped else "stop"
        yield chunk(delta({}, finish), rlm=self._extension(result))
        if chat.include_usage:
            yield chunk([], usage=self._usage(result))
        yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


class _Progress:
    """A live trace sink that turns a run's events into ``: progress {...}`` lines."""

    live = True

    def __init__(self, notes: asyncio.Queue[str]) -> None:
        self._notes = notes
        self._loop = asyncio.get_running_loop()
        self._calls = 0
        self._tokens = 0
        self._cost: float | None = 0.0

    def __call__(self, event: Event) -> None:
        kind = event.get("type")
        if kind not in ("model_call", "node_start", "subcall"):
            return
        if kind == "model_call":
            usage = event.get("usage") or {}
            self._calls += int(usage.get("calls", 0))
            self._tokens += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
            cost = usage.get("cost_usd")
            self._cost = None if cost is None or self._cost is None else self._cost + cost
        note = {
            "event": kind,
            "node": event.get("node_id"),
            "depth": event.get("depth"),
            "iteration": event.get("iteration"),
            "calls": self._calls,
            "tokens": self._tokens,
            "cost_usd": self._cost,
        }
        self._loop.call_soon_threadsafe(self._notes.put_nowait, json.dumps(note))


def make_app(
    rlm: RLM | RLMFactory,
    *,
    trace_dir: str | Path | None = None,
    api_key: str | None = None,
    max_concurrent_runs: int = 4,
    max_queued: int = 16,
    allow_models: bool | Collection[str] = False,
    model_name: str = MODEL_NAME,
    max_body_bytes: int = MAX_BODY_BYTES,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> App:
    """The server application for runs configured like ``rlm`` (or made by a factory)."""
    if isinstance(rlm, RLM):
        listed = () if isinstance(allow_models, bool) else allow_models
        factory = rlm_factory(rlm, trace_dir=trace_dir, allowed_models=listed)
        hold = [rlm.model, rlm.sub_model]
    else:
        factory, hold = rlm, []
    return App(
        factory,
        api_key=api_key,
        max_concurrent_runs=max_concurrent_runs,
        max_queued=max_queued,
        allow_models=allow_models,
        model_name=model_name,
        max_body_bytes=max_body_bytes,
        keepalive_seconds=keepalive_seconds,
        hold=hold,
    )


# -- HTTP/1.1 over asyncio streams ------------------------------------------------


class _ClientGone(Exception):
    pass


class Server:
    """An :class:`App` listening on a TCP port (HTTP/1.1, keep-alive, chunked streams)."""

    def __init__(self, app: App, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The base URL for OpenAI clients (ends in ``/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        await self.app.startup()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, cancel the runs in flight, close every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.app.shutdown()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.aclose()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._connection(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                try:
                    request = await self._read_request(conn, reader, writer)
                except h11.RemoteProtocolError as exc:
                    with contextlib.suppress(h11.LocalProtocolError):
                        await self._send(
                            conn, writer, _bad(f"bad HTTP request: {exc}").response(), close=True
                        )
                    return
                except HTTPError as exc:  # 413: the body is not read, so the connection ends
                    await self._send(conn, writer, exc.response(), close=True)
                    return
                if request is None:
                    return
                started = time.monotonic()
                status = await self._respond(conn, reader, writer, request)
                logger.info(
                    "%s %s %d %.2fs",
                    request.method,
                    request.path,
                    status,
                    time.monotonic() - started,
                )
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (_ClientGone, ConnectionError, TimeoutError, h11.ProtocolError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                timeout = IDLE_TIMEOUT_SECONDS if head is None else None
                data = await asyncio.wait_for(reader.read(_READ_CHUNK), timeout)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
                length = dict(event.headers).get(b"content-length")
                if (
                    length is not None
                    and length.isdigit()
                    and int(length) > self.app.max_body_bytes
                ):
                    raise self._too_large()
                if conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.app.max_body_bytes:
                    raise self._too_large()
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers
                }
                return Request(
                    head.method.decode("ascii"),
                    head.target.decode("latin-1"),
                    headers,
                    bytes(body),
                )
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    def _too_large(self) -> HTTPError:
        return HTTPError(
            413,
            f"the request body is larger than {self.app.max_body_bytes:,} bytes",
            code="request_too_large",
        )

    async def _respond(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: Request,
    ) -> int:
        """Handle and send, cancelling the work if the client goes away meanwhile."""
        outcome: dict[str, int] = {}

        async def work() -> None:
            response = await self.app.handle(request)
            outcome["status"] = response.status
            await self._send(conn, writer, response)

        task = asyncio.ensure_future(work())
        watch = asyncio.ensure_future(self._watch(conn, reader))
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, watch):
                if not pending.done():
                    pending.cancel()
            await asyncio.gather(task, watch, return_exceptions=True)
        if not task.cancelled() and task.exception() is None:
            return outcome.get("status", 0)
        if task.cancelled():
            raise _ClientGone()
        exc = task.exception()
        assert exc is not None
        raise exc

    @staticmethod
    async def _watch(conn: h11.Connection, reader: asyncio.StreamReader) -> None:
        """Returns when the client closes its end (a pipelined request is kept for later)."""
        while True:
            data = await reader.read(_READ_CHUNK)
            if not data:
                return
            conn.receive_data(data)

    @staticmethod
    async def _send(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        response: Response,
        *,
        close: bool = False,
    ) -> None:
        headers = [("content-type", response.content_type), ("server", "recursa")]
        headers += response.headers
        if isinstance(response.body, bytes):
            headers.append(("content-length", str(len(response.body))))
        if close:
            headers.append(("connection", "close"))
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
        if isinstance(response.body, bytes):
            if response.body:
                writer.write(conn.send(h11.Data(data=response.body)))
        else:
            stream = response.body
            try:
                async for piece in stream:
                    writer.write(conn.send(h11.Data(data=piece)))
                    await writer.drain()
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


async def aserve(
    app: App,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    on_ready: Callable[[Server], Awaitable[None] | None] | None = None,
) -> None:
    """Serve ``app`` until cancelled."""
    server = Server(app, host, port)
    await server.start()
    if on_ready is not None:
        ready = on_ready(server)
        if ready is not None:
            await ready
    await server.serve_forever()


def serve(
    app: App | RLM, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **options: Any
) -> None:
    """Serve until interrupted (Ctrl-C); ``options`` go to :func:`make_app` for an RLM."""
    application = app if isinstance(app, App) else make_app(app, **options)

    def announce(server: Server) -> None:
        print(
            f"recursa: serving on {server.url} (OpenAI-compatible; Ctrl-C to stop)", file=sys.stderr
        )
        if application.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"recursa: warning: listening on {host} with no --api-key: anyone who can "
                "reach it can spend your budget",
                file=sys.stderr,
            )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(aserve(application, host, port, on_ready=announce))


class BackgroundServer:
    """Serve an :class:`App` from a thread with its own event loop (tests, notebooks)::

    with BackgroundServer(app) as server:
        openai.OpenAI(base_url=server.url, api_key="x")...
    """

    def __init__(self, app: App, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.server = Server(app, host, port)
        self._thread = threading.Thread(target=self._main, name="recursa-serve", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.aclose()
