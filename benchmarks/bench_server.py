"""An OpenAI-compatible chat completions server on asyncio, for the fan-out benchmarks.

:class:`recursa.testing.ScriptedServer` is a threaded ``http.server``: each request
takes a thread and is parsed under the GIL, so 64 requests that arrive together are
answered over a spread of about 45 ms on 2 cores, and a batch can never look closer
than 1.2x to its latency floor whatever the client does (docs/performance.md). This
server answers on one event loop in a thread of its own: a request costs about 0.2 ms
of CPU here (64 at once on kept-alive connections), and ``latency`` is an
``asyncio.sleep``, so 1,024 requests in flight wait together. It speaks what both
benchmarked clients send (``POST .../chat/completions``, HTTP/1.1 with keep-alive,
JSON bodies, no streaming) and answers with the payloads ``ScriptedServer`` sends
(:func:`recursa.testing.chat_completion`); ``reply`` is called with a
:class:`recursa.testing.Received`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from types import TracebackType
from typing import Any, Self

from recursa.testing import Received, Reply, ReplyFunction, chat_completion

MAX_HEADER_LINES = 100


class FastScriptedServer:
    """Serves on 127.0.0.1 from :meth:`start` (or ``with``) to :meth:`close`."""

    def __init__(self, reply: ReplyFunction, *, latency: float = 0.0) -> None:
        self.reply = reply
        self.latency = latency
        self.max_in_flight = 0
        self.served = 0
        self._in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> Self:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._port = started.result(timeout=10)
        return self

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096)
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 2)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection stays open for the next."""
        line = await reader.readline()
        if not line:
            return False
        method, target, _version = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        path = target.split("?", 1)[0]
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            self._write(writer, 404, {"error": {"message": f"no route {path}"}})
            return True
        request = Received(json.loads(body) if body else {}, path=path, headers=headers)
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            reply = self.reply(request)
        finally:
            self._in_flight -= 1
        self.served += 1
        answer = reply if isinstance(reply, Reply) else Reply(reply)
        self._write(writer, 200, chat_completion(request, answer, serial=self.served))
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    @staticmethod
    def _write(writer: asyncio.StreamWriter, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + data)
