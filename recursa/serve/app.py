"""The server's ASGI application (Starlette): routes, run slots, streaming, progress.

:class:`App` is an ASGI callable, so any ASGI server can host it; :mod:`.server` puts it
on uvicorn with the head's limits. Around the routes, from the outside in: the access
log, CORS (only with ``cors_origins``), the API key (checked on the head, before the
body is read) and the body's size limit and deadline.

A streamed reply sends the root model's text as it writes it (its code, each turn) as
``delta.reasoning_content``, the field clients show as a model's thinking; a reply
that broke off and starts over is marked by a chunk with ``rlm.reasoning_restart``.
The answer itself comes as ``delta.content`` only once the run's ``FINAL`` has passed
the schema and citation checks: text that could still be rejected is never content.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import ConfigError, RecursaError
from ..models.base import Model
from ..progress import ProgressState
from ..rlm import RLM, Result
from ..trace import Event
from .auth import BearerAuth
from .limits import AccessLog, BodyLimits
from .openapi import DOCS_PAGE, openapi_schema
from .protocol import (
    ChatRequest,
    HTTPError,
    bad,
    completion,
    dumps,
    extension,
    parse_chat,
    unknown_model,
    usage,
)
from .runs import RLMFactory, rlm_factory

logger = logging.getLogger("recursa.serve")

MODEL_NAME = "recursa"
MAX_BODY_BYTES = 256 * 1024 * 1024
BODY_TIMEOUT_SECONDS = 60.0
KEEPALIVE_SECONDS = 15.0
_BIG_BODY = 1024 * 1024
T = TypeVar("T")


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status, headers, media_type="application/json")


def error_response(error: HTTPError) -> Response:
    return Response(error.body(), error.status, error.headers, media_type="application/json")


class App:
    """The HTTP logic for runs made by ``factory``, as an ASGI application."""

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
        body_timeout_seconds: float = BODY_TIMEOUT_SECONDS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        cors_origins: Sequence[str] = (),
        hold: Sequence[Model] = (),
    ) -> None:
        if max_concurrent_runs < 1:
            raise ConfigError(f"max_concurrent_runs must be >= 1, got {max_concurrent_runs}")
        if max_queued < 0:
            raise ConfigError(f"max_queued must be >= 0, got {max_queued}")
        if api_key is not None and not api_key:
            raise ConfigError("the server's API key is empty")
        if max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
        if body_timeout_seconds <= 0:
            raise ConfigError(f"body_timeout_seconds must be > 0, got {body_timeout_seconds}")
        self.factory = factory
        self.api_key = api_key
        self.max_concurrent_runs = max_concurrent_runs
        self.max_queued = max_queued
        self.allow_models = allow_models
        self.model_name = model_name
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds
        self.keepalive_seconds = keepalive_seconds
        self.cors_origins = tuple(cors_origins)
        self.created = int(time.time())
        self.running = 0
        self.queued = 0
        self._slots: asyncio.Semaphore | None = None
        self._hold = list(hold)
        self._held: contextlib.AsyncExitStack | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self._asgi = self._build()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    def _build(self) -> Starlette:
        middleware = [Middleware(AccessLog)]
        if self.cors_origins:
            middleware.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=list(self.cors_origins),
                    allow_methods=["GET", "POST"],
                    allow_headers=["*"],
                    expose_headers=["retry-after"],
                    max_age=600,
                )
            )
        if self.api_key is not None:
            middleware.append(Middleware(BearerAuth, api_key=self.api_key))
        middleware.append(
            Middleware(BodyLimits, max_bytes=self.max_body_bytes, timeout=self.body_timeout_seconds)
        )
        routes = [
            Route("/health", self._health, methods=["GET"]),
            Route("/openapi.json", self._openapi, methods=["GET"]),
            Route("/docs", self._docs, methods=["GET"]),
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/v1/models/{name:path}", self._get_model, methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
        ]

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            await self.startup()
            try:
                yield
            finally:
                await self.shutdown()

        return Starlette(
            routes=routes,
            middleware=middleware,
            exception_handlers={HTTPError: self._on_error, HTTPException: self._on_http},
            lifespan=lifespan,
        )

    # -- lifetime -----------------------------------------------------------------
    async def startup(self) -> None:
        """Hold the configured models open while serving: their connections then last
        across runs instead of being made again for each one."""
        if self._held is not None:
            return
        self._stopping = False
        stack = contextlib.AsyncExitStack()
        seen: set[int] = set()
        for model in self._hold:
            if id(model) not in seen and isinstance(model, contextlib.AbstractAsyncContextManager):
                seen.add(id(model))
                await stack.enter_async_context(model)
        self._held = stack

    def stop_runs(self) -> None:
        """Cancel the runs in flight and those waiting (the server is stopping): each of
        their requests is answered 503."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()

    async def shutdown(self) -> None:
        self.stop_runs()
        held, self._held = self._held, None
        if held is not None:
            await held.aclose()

    # -- errors -------------------------------------------------------------------
    async def _on_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        return error_response(exc)

    async def _on_http(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            allowed = ", ".join(m for m in allow.split(", ") if m != "HEAD")
            error = HTTPError(
                405,
                f"{request.method} is not allowed on {request.url.path} (use {allowed})",
                code="method_not_allowed",
                headers={"allow": allowed},
            )
        elif exc.status_code == 404:
            error = HTTPError(
                404, f"Unknown request URL: {request.method} {request.url.path}", code="unknown_url"
            )
        else:
            error = HTTPError(exc.status_code, exc.detail, headers=dict(exc.headers or {}))
        return error_response(error)

    def _stopped(self) -> HTTPError:
        return HTTPError(
            503, "the server is shutting down", type="server_error", code="server_shutting_down"
        )

    # -- simple routes --------------------------------------------------------------
    async def _health(self, request: Request) -> Response:
        return json_response(200, {"status": "ok", "running": self.running, "queued": self.queued})

    async def _openapi(self, request: Request) -> Response:
        return json_response(200, openapi_schema(self.model_name, self.api_key is not None))

    async def _docs(self, request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "recursa"}

    def _models(self) -> list[dict[str, Any]]:
        names = [self.model_name]
        if isinstance(self.allow_models, Collection) and not isinstance(self.allow_models, str):
            names += sorted(set(self.allow_models) - {self.model_name})
        return [self._model_entry(n) for n in names]

    def model_allowed(self, name: str) -> bool:
        if isinstance(self.allow_models, bool):
            return self.allow_models and "/" in name
        return name in self.allow_models

    async def _list_models(self, request: Request) -> Response:
        return json_response(200, {"object": "list", "data": self._models()})

    async def _get_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = [m for m in self._models() if m["id"] == name]
        if not found and self.model_allowed(name):
            found = [self._model_entry(name)]
        if not found:
            raise unknown_model(name, self.model_name)
        return json_response(200, found[0])

    # -- chat completions -------------------------------------------------------------
    async def _read_body(self, request: Request) -> bytes:
        """The whole body, within the limits :class:`~.limits.BodyLimits` enforces."""
        body = bytearray()
        async for piece in request.stream():
            body += piece
        return bytes(body)

    async def _chat(self, request: Request) -> Response:
        try:
            raw = await self._read_body(request)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is there to read it
        try:
            if len(raw) > _BIG_BODY:  # a long context: decode off the event loop
                body = await asyncio.to_thread(json.loads, raw)
            else:
                body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(f"We could not parse the JSON body of your request: {exc}") from None
        chat = parse_chat(body, model_name=self.model_name, model_allowed=self.model_allowed)
        try:
            rlm = self.factory(chat.options)
        except ConfigError as exc:
            raise bad(str(exc)) from exc
        self._check_capacity()
        if chat.stream:
            return StreamingResponse(
                self._stream(chat, rlm),
                media_type="text/event-stream; charset=utf-8",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        self.queued += 1  # before any await: the capacity check just passed
        run = self._spawn(self._slot_run(chat, rlm))
        gone = asyncio.ensure_future(_disconnect(request.receive))
        try:
            await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not run.done():  # the client went away: its run is cancelled
            run.cancel()
            with contextlib.suppress(BaseException):
                await run
            return Response(status_code=499)
        try:
            result = run.result()
        except asyncio.CancelledError:
            raise self._stopped() from None
        payload = completion(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), chat, result)
        return json_response(200, payload)

    # -- concurrency ----------------------------------------------------------------
    def _check_capacity(self) -> None:
        """Refuse at once (429) when every run slot is taken and the queue is full."""
        if self._stopping:
            raise self._stopped()
        if self.running >= self.max_concurrent_runs and self.queued >= self.max_queued:
            raise HTTPError(
                429,
                f"the server is busy: {self.running} runs going and {self.queued} waiting "
                f"(limits {self.max_concurrent_runs} and {self.max_queued}); retry later",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"retry-after": "1"},
            )

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task :meth:`stop_runs` cancels."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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

    async def _slot_run(self, chat: ChatRequest, rlm: RLM) -> Result:
        await self._acquire()
        try:
            return await self._run(chat, rlm, [])
        finally:
            self._release()

    async def _run(self, chat: ChatRequest, rlm: RLM, sinks: list[Any]) -> Result:
        try:
            return await rlm.acompletion(
                chat.query, chat.context, output_type=chat.output_type, sinks=sinks
            )
        except ConfigError as exc:
            raise bad(str(exc)) from exc
        except RecursaError as exc:
            raise HTTPError(
                500, f"the RLM run failed: {exc}", type="server_error", code="run_failed"
            ) from exc
        except Exception as exc:
            logger.exception("the run failed")
            raise HTTPError(
                500, "internal server error (see the server's log)", type="server_error"
            ) from exc

    # -- streamed replies ---------------------------------------------------------------
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

        def note(item: dict[str, Any] | _Delta) -> bytes:
            if isinstance(item, _Delta):
                if item.restart:
                    return chunk(delta({}), rlm={"reasoning_restart": True})
                return chunk(delta({"reasoning_content": item.text}))
            if chat.progress_events:
                return chunk([], rlm={"progress": item})
            return f": progress {json.dumps(item)}\n\n".encode()

        must_wait = self.running >= self.max_concurrent_runs
        acquiring = self._spawn(self._acquire())
        try:
            yield chunk(delta({"role": "assistant", "content": ""}))
            if must_wait:
                yield b": queued\n\n"
            while not acquiring.done():
                await asyncio.wait({acquiring}, timeout=self.keepalive_seconds)
                if not acquiring.done():
                    yield b": queued\n\n"
            acquiring.result()
        except asyncio.CancelledError:
            if not acquiring.done():
                acquiring.cancel()
            with contextlib.suppress(BaseException):
                await acquiring
                self._release()  # it had a slot just before it was cancelled
            if self._stopping and not _cancelling():
                yield _sse(self._stopped().payload())
                yield b"data: [DONE]\n\n"
                return
            raise
        notes: asyncio.Queue[dict[str, Any] | _Delta] = asyncio.Queue()
        run = self._spawn(self._run(chat, rlm, [_Progress(notes)]))
        getter: asyncio.Future[dict[str, Any] | _Delta] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(notes.get())
                done, _ = await asyncio.wait(
                    {run, getter},
                    timeout=self.keepalive_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter in done:
                    yield note(getter.result())
                    continue
                getter.cancel()
                if run in done:
                    while not notes.empty():  # the last turn's text comes before the answer
                        yield note(notes.get_nowait())
                    break
                yield b": keep-alive\n\n"
            result = run.result()
        except HTTPError as exc:
            yield _sse(exc.payload())
            yield b"data: [DONE]\n\n"
            return
        except asyncio.CancelledError:
            if self._stopping and not _cancelling():
                yield _sse(self._stopped().payload())
                yield b"data: [DONE]\n\n"
                return
            raise
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
        yield chunk(delta({}, finish), rlm=extension(result))
        if chat.include_usage:
            yield chunk([], usage=usage(result))
        yield b"data: [DONE]\n\n"


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (not just a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _disconnect(receive: Receive) -> None:
    """Returns when the client has gone (the body was read: only a disconnect is left)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


@dataclasses.dataclass(frozen=True)
class _Delta:
    """A piece of the root model's text as it writes it; ``restart``: it starts over."""

    text: str
    restart: bool = False


class _Progress:
    """A live trace sink that turns a run's events into progress notes: each carries the
    totals so far and the calls running (sent) and queued (waiting for a slot); a batch
    has a note when it starts, as each of its calls returns, and when it ends. The root
    node's ``model_delta`` notices come through as :class:`_Delta` pieces."""

    live = True
    text_deltas = True

    def __init__(self, notes: asyncio.Queue[dict[str, Any] | _Delta]) -> None:
        self._notes = notes
        self._loop = asyncio.get_running_loop()
        self._calls = 0
        self._tokens = 0
        self._cost: float | None = 0.0
        self._state = ProgressState()

    def __call__(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "model_delta":
            if event.get("depth") == 0:
                piece = _Delta(str(event.get("text", "")), bool(event.get("restart")))
                self._loop.call_soon_threadsafe(self._notes.put_nowait, piece)
            return
        state = self._state
        ending = state.batches.get(event.get("batch_id", ""))  # batch_end drops it
        if state.notice(event) and kind not in _BATCH_NOTES:
            return  # a call queued, sent or over: counted in the next note
        if kind not in _NOTED:
            return
        if kind == "model_call":
            state.ended(str(event.get("call_id")))
            used = event.get("usage") or {}
            self._calls += int(used.get("calls", 0))
            self._tokens += int(used.get("input_tokens", 0)) + int(used.get("output_tokens", 0))
            cost = used.get("cost_usd")
            self._cost = None if cost is None or self._cost is None else self._cost + cost
        note = {
            "event": kind,
            "node": event.get("node_id"),
            "depth": event.get("depth"),
            "iteration": event.get("iteration"),
            "calls": self._calls,
            "tokens": self._tokens,
            "cost_usd": self._cost,
            "running": len(state.running),
            "queued": len(state.queued),
        }
        bar = state.batches.get(event.get("batch_id", "")) or ending
        if kind in _BATCH_NOTES and bar is not None:
            note["batch"] = {"id": event["batch_id"], **dataclasses.asdict(bar)}
        self._loop.call_soon_threadsafe(self._notes.put_nowait, note)


#: The notices that are progress notes of their own; the others only update the counts.
_BATCH_NOTES = frozenset({"batch_start", "batch_progress", "batch_end"})
_NOTED = frozenset({"model_call", "node_start", "subcall", *_BATCH_NOTES})


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
    body_timeout_seconds: float = BODY_TIMEOUT_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    cors_origins: Sequence[str] = (),
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
        body_timeout_seconds=body_timeout_seconds,
        keepalive_seconds=keepalive_seconds,
        cors_origins=cors_origins,
        hold=hold,
    )
