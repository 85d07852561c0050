"""The :class:`~.app.App` on a TCP port, with uvicorn, and the head's limits.

uvicorn (its h11 protocol) reads the requests: a head larger than ``max_head_bytes`` is
a 400; at most ``max_connections`` connections are served at once (beyond them: 503); an
idle keep-alive connection is closed after ``idle_timeout_seconds``; and a connection
whose next request head is not all there within ``header_timeout_seconds`` (of its
opening, or of the previous response) is closed, so stalled clients cannot hold
connections open. The body's limits are the application's (:mod:`.limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..rlm import RLM
from .app import App, make_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_CONNECTIONS = 1000
HEADER_TIMEOUT_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 75.0
MAX_HEAD_BYTES = 64 * 1024
SHUTDOWN_GRACE_SECONDS = 5.0


def _protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's head."""

    class HeadDeadline(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _waiting_for: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._waiting_for:  # a new request's head arrived
                self._disarm()

        def on_response_complete(self) -> None:
            finished = self.cycle
            super().on_response_complete()  # may start a pipelined request's cycle
            if not self.transport.is_closing() and self.cycle is finished:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._waiting_for = self.cycle
            self._timer = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if self.cycle is self._waiting_for and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadline


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: App, signals: bool) -> None:
        super().__init__(config)
        self._app = app
        self._signals = signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self._signals:
            yield
            return
        with super().capture_signals():
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._app.stop_runs()  # their requests are answered 503 before the connections close
        await super().shutdown(sockets)


class Server:
    """An :class:`App` listening on a TCP port (HTTP/1.1 with keep-alive, via uvicorn)."""

    def __init__(
        self,
        app: App,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS,
        idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
        max_head_bytes: int = MAX_HEAD_BYTES,
        shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
        signals: bool = False,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._config = uvicorn.Config(
            app,
            http=_protocol(header_timeout_seconds),
            lifespan="off",  # start() and aclose() run the app's startup and shutdown
            limit_concurrency=max_connections,
            timeout_keep_alive=int(max(1, idle_timeout_seconds)),
            h11_max_incomplete_event_size=max_head_bytes,
            timeout_graceful_shutdown=int(max(1, shutdown_grace_seconds)),
            access_log=False,  # the app writes its own (recursa.serve.access)
            log_config=None,
            server_header=False,
            proxy_headers=False,
        )
        self._uvicorn = _Uvicorn(self._config, app, signals)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The base URL for OpenAI clients (ends in ``/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        """Bind the port (an :class:`OSError` if it cannot be), then serve in a task."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named, as asyncio's own servers do: asyncio then turns Nagle off on
        # each connection (with protocol 0 it does not, and every reply waits ~40 ms for
        # the client's delayed ACK between its head and its body).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(2048)
        except BaseException:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        await self.app.startup()
        self._task = asyncio.ensure_future(self._uvicorn.serve(sockets=[sock]))
        while not self._uvicorn.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.005)

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
        """Stop listening, answer the runs in flight 503 (cancelling them), close every
        connection."""
        task, self._task = self._task, None
        if task is not None:
            self._uvicorn.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.app.shutdown()

    async def serve_forever(self) -> None:
        if self._task is None:
            await self.start()
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        finally:
            await self.aclose()


async def aserve(
    app: App,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    on_ready: Callable[[Server], Awaitable[None] | None] | None = None,
    **limits: Any,
) -> None:
    """Serve ``app`` until cancelled (or, with ``signals=True``, until SIGINT/SIGTERM);
    ``limits`` are :class:`Server`'s keyword arguments."""
    server = Server(app, host, port, **limits)
    await server.start()
    if on_ready is not None:
        ready = on_ready(server)
        if ready is not None:
            await ready
    await server.serve_forever()


def serve(
    app: App | RLM,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    limits: dict[str, Any] | None = None,
    **options: Any,
) -> None:
    """Serve until interrupted (Ctrl-C); ``options`` go to :func:`make_app` for an RLM,
    ``limits`` to :class:`Server`. The access log goes to stderr."""
    application = app if isinstance(app, App) else make_app(app, **options)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("recursa: %(asctime)s %(message)s"))
    # the access log and the server's own messages; uvicorn's only from warnings up
    for name, level in (("recursa.serve", logging.INFO), ("uvicorn", logging.WARNING)):
        log = logging.getLogger(name)
        if not log.handlers:
            log.addHandler(handler)
            log.setLevel(level)
            log.propagate = False

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
        asyncio.run(aserve(application, host, port, on_ready=announce, **(limits or {})))


class BackgroundServer:
    """Serve an :class:`App` from a thread with its own event loop (tests, notebooks)::

    with BackgroundServer(app) as server:
        openai.OpenAI(base_url=server.url, api_key="x")...
    """

    def __init__(self, app: App, host: str = DEFAULT_HOST, port: int = 0, **limits: Any) -> None:
        self.server = Server(app, host, port, **limits)
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
