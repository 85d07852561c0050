"""A lean HTTP/1.1 client for OpenAI-compatible chat completions, on asyncio streams.

:class:`~recursa.models.openai.OpenAIModel` sends one kind of request, ``POST
{base_url}/chat/completions`` with a JSON body, and reads the reply body itself (or
its server-sent events). The ``openai`` SDK costs about a second to import and
1-1.5 ms of CPU a request on top of that; ``aiohttp`` adds 14 MiB to the process and
about 0.8 ms of CPU a request. This client speaks just enough HTTP/1.1 for that one
request, on the standard library alone (see docs/performance.md for the figures).
The SDK path stays selectable (``RECURSA_OPENAI_CLIENT=sdk``).

What the model needs of a client is three outcomes of :meth:`ChatClient.post`:
the body of a 2xx reply as bytes; a :class:`HTTPStatusError` with the status, the
provider's one-line message and the headers (for ``Retry-After``); or, for a request
that got no answer, an ``OSError`` from the socket layer as it is (refused, unknown
host, reset), a ``TimeoutError``, or a :class:`ClientError` (a reply that broke the
protocol or broke off), which :func:`recursa.models._http.connection_error` tells
apart (refused or unknown host: permanent; the rest: retried).
:meth:`ChatClient.post_stream` is the same for a streamed reply (``"stream": true``):
the payload of each server-sent ``data:`` line as it arrives, with the same errors.

Connections are kept alive and reused (most recent first) for
:data:`KEEPALIVE_SECONDS`; a request on a kept-alive connection that the server had
already closed is sent once more on a new one, as httpx and aiohttp do. Timeouts are
httpx's (the SDK's): ``timeout`` seconds to get a connection, and as long for each
read and each write.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import sys
import zlib
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from .._version import __version__
from ..errors import ConfigError

# The SDK's own limits (openai._constants.DEFAULT_CONNECTION_LIMITS): a run's
# semaphores keep far fewer in flight, so this is never what queues a request.
MAX_CONNECTIONS = 1000
KEEPALIVE_SECONDS = 5.0
USER_AGENT = f"recursa/{__version__}"
#: How much of an error body that carries no message goes into the error.
DETAIL_CHARS = 300
#: The most a response's header section (its head, or its trailers) may take: a
#: server sending more is refused instead of buffered.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEAD_LINES = 256
#: The most one read takes off a socket.
READ_SIZE = 256 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
# what stays as it is in a request path (percent-escapes included: Azure's
# deployment name comes quoted)
PATH_SAFE = "/%:@!$&'()*+,;=~"

#: Where a connection goes: (scheme, host, port).
Origin = tuple[str, str, int]


class HTTPStatusError(Exception):
    """A reply with a status outside 2xx: ``detail`` is the provider's message, read
    the way the ``openai`` SDK reads it, so both paths report the same text."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers


class ClientError(Exception):
    """A reply that broke the HTTP protocol or broke off (a malformed head, one too
    large, a body cut short): no usable answer, retried as a reset is."""


class ServerDisconnected(ClientError):
    """The server closed the connection before a byte of its answer: on a kept-alive
    connection, it had timed it out while the request was on its way."""


class ChatClient:
    """``POST`` JSON to one endpoint and return the reply body, over one connection pool.

    ``base_url`` is what errors name (a refused connection says which server);
    ``path`` is appended to it, ``params`` form the query string (Azure's
    ``api-version``) and ``headers`` carry the credentials. The proxy from the
    environment is looked up once, here (in a worker thread, see
    :class:`~recursa.models.base.SDKModel`), and so is the TLS context made for an
    ``https`` endpoint (tens of milliseconds, kept off the event loop).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        scheme, host, port, self._base_path = _split(self.base_url, f"base URL {base_url!r}")
        self._host = host
        self._tls = ssl.create_default_context() if scheme == "https" else None
        self._query = f"?{urlencode(dict(params))}" if params else ""
        authority = _authority(host, port, scheme)
        fixed = {
            "Host": authority,
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "gzip, deflate",
        }
        # where connections go (and the pool's key), and how a request names its target
        self._origin: Origin = (scheme, host, port)
        self._dial = (host, port)
        self._target = ""
        self._connect: bytes | None = None
        proxy = env_proxy(self.base_url)
        if proxy is not None:
            via, proxy_auth = _proxy(proxy)
            self._dial = via[1:]
            if scheme == "https":  # a tunnel to the endpoint, through the proxy
                target = f"{_bracketed(host)}:{port}"
                tunnel = {"Host": target, "User-Agent": USER_AGENT, **proxy_auth}
                self._connect = (
                    f"CONNECT {target} HTTP/1.1\r\n".encode() + _header_block(tunnel) + b"\r\n"
                )
            else:  # every request to the proxy, naming the endpoint in full
                self._origin = via
                self._target = f"http://{authority}"
                fixed.update(proxy_auth)
        self._lines = _header_block(_merged(fixed, headers))
        self._stream_lines = _header_block(
            _merged(fixed, {**headers, "Accept": "text/event-stream"})
        )
        self._heads: dict[tuple[str, bool], bytes] = {}
        # made on the running loop, on first use; None again once closed
        self._session: _Session | None = None

    async def post(self, path: str, body: dict[str, Any]) -> bytes:
        """The body of the reply to ``POST base_url + path`` with ``body`` as JSON."""
        response = await self._exchange(path, encode(body), stream=False)
        raw = await _whole_body(response)
        if response.status >= 300:
            raise _status_error(response, raw)
        return raw

    async def post_stream(self, path: str, body: dict[str, Any]) -> AsyncGenerator[bytes, None]:
        """The payload of each ``data:`` line of the server-sent events replying to
        ``POST base_url + path``, as it arrives, up to ``data: [DONE]`` (or the end of
        the body). A status outside 2xx raises :class:`HTTPStatusError` before any."""
        response = await self._exchange(path, encode(body), stream=True)
        if response.status >= 300:
            raise _status_error(response, await _whole_body(response))
        pending = bytearray()
        done = False
        try:
            while not done and (block := await response.read()):
                pending += block
                if b"\n" not in block:
                    continue  # a long line still arriving: no line-length limit
                *lines, rest = bytes(pending).split(b"\n")
                pending = bytearray(rest)
                for line in lines:
                    payload = sse_data(line)
                    done = payload == b"[DONE]"
                    if done:
                        break
                    if payload is not None:
                        yield payload
            payload = None if done else sse_data(bytes(pending))
            if payload is not None and payload != b"[DONE]":
                yield payload
        except BaseException:  # a broken stream, a cancelled one, or one left unread
            response.conn.close()
            raise
        try:  # read to the end: the connection then goes back to the pool
            while await response.read():
                pass
        except (ClientError, OSError):  # the answer is whole: only the connection is lost
            response.conn.close()
        except BaseException:
            response.conn.close()
            raise
        else:
            response.release()

    async def close(self) -> None:
        """Close every connection (those in use included)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- one exchange ------------------------------------------------------------------
    async def _exchange(self, path: str, data: bytes, *, stream: bool) -> _Response:
        """Send the request and read the head of its response (past any interim one)."""
        head = self._heads.get((path, stream))
        if head is None:
            target = self._target + quote(self._base_path + path, safe=PATH_SAFE) + self._query
            lines = self._stream_lines if stream else self._lines
            head = self._heads[(path, stream)] = f"POST {target} HTTP/1.1\r\n".encode() + lines
        request = head + b"Content-Length: %d\r\n\r\n" % len(data)
        session = self._session or self._start()
        fresh = False
        while True:
            async with asyncio.timeout(self._timeout):
                conn = await self._connection(session, fresh=fresh)
            try:
                conn.answered = False
                conn.writer.writelines((request, data))
                await conn.drain(self._timeout)
                return await _response(conn, self._timeout)
            except (ServerDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if not conn.reused or conn.answered:
                    raise
                fresh = True  # the server had closed it, idle: once more, on a new one
            except BaseException:
                conn.close()
                raise

    def _start(self) -> _Session:
        self._session = _Session(asyncio.get_running_loop())
        return self._session

    async def _connection(self, session: _Session, *, fresh: bool) -> _Connection:
        """An idle connection to reuse unless ``fresh``, else a new one: TCP, through
        the proxy's tunnel for ``https`` behind one, then TLS."""
        conn = await session.connection(self._origin, fresh=fresh)
        if conn is not None:
            return conn
        conn = await session.open(self._origin, *self._dial)
        try:
            if self._connect is not None:
                await self._tunnel(conn, self._connect)
            if self._tls is not None:
                await conn.writer.start_tls(self._tls, server_hostname=self._host)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _tunnel(self, conn: _Connection, request: bytes) -> None:
        """``CONNECT`` through the proxy; a refusal is the proxy's status error."""
        conn.writer.write(request)
        await conn.drain(self._timeout)
        response = await _response(conn, self._timeout, tunnel=True)
        if response.status >= 300:
            raise _status_error(response, await response.read_all())
        if conn.buffer:
            raise ClientError("the proxy sent data before the tunnel was open")


class _Session:
    """The connections of one client on one event loop: a pool keyed by origin, idle
    connections reused most recent first and closed once idle too long, at most
    :data:`MAX_CONNECTIONS` open. At the limit, a request waits for a connection that
    another one is done with, or for room to open one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._count = 0  # open or being opened
        # what waits at the limit: (origin, future); origin None for a new connection only
        self._waiters: deque[tuple[Origin | None, asyncio.Future[_Connection | None]]] = deque()
        self._reaper: asyncio.TimerHandle | None = None
        self.closed = False

    async def connection(self, origin: Origin, *, fresh: bool) -> _Connection | None:
        """An idle connection to ``origin`` (unless ``fresh``), or None once there is
        room to open one (it is then taken: :meth:`open` it)."""
        if self.closed:
            raise ClientError("the client was closed")
        if not fresh and (conn := self._reusable(origin)) is not None:
            return conn
        if self._count >= MAX_CONNECTIONS:
            self._close_oldest_idle()
        if self._count < MAX_CONNECTIONS:
            self._count += 1
            return None
        waiter: asyncio.Future[_Connection | None] = self._loop.create_future()
        entry = (None if fresh else origin, waiter)
        self._waiters.append(entry)
        try:
            return await waiter
        except BaseException:  # a timeout, a cancellation: what was handed over goes on
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._free()
                else:
                    self.keep(handed)
            elif entry in self._waiters:
                self._waiters.remove(entry)
            raise

    async def open(self, origin: Origin, host: str, port: int) -> _Connection:
        """A new TCP connection to ``host:port``, in the room :meth:`connection` made."""
        # a name's addresses (IPv6, IPv4) raced 250 ms apart, as aiohttp and httpx do; an
        # address is one, and the race would only cost CPU (a quarter of a request's)
        delay = None if _is_address(host) else 0.25
        try:
            reader, writer = await asyncio.open_connection(host, port, happy_eyeballs_delay=delay)
        except BaseException:
            self._free()
            raise
        conn = _Connection(self, origin, reader, writer)
        self._open.add(conn)
        if self.closed:  # while it was being opened
            conn.close()
            raise ClientError("the client was closed")
        return conn

    def keep(self, conn: _Connection) -> None:
        """Take back a connection whose response was read whole: for a request waiting
        for one, else idle, for reuse."""
        if self.closed:
            conn.close()
            return
        for entry in self._waiters:
            if entry[0] == conn.origin and not entry[1].done():
                self._waiters.remove(entry)
                conn.reused = True
                entry[1].set_result(conn)
                return
        if any(not waiter.done() for _, waiter in self._waiters):
            # they want another origin, or a new connection: make room
            conn.close()
            return
        conn.idle_since = self._loop.time()
        self._idle.setdefault(conn.origin, []).append(conn)
        if self._reaper is None:
            self._reaper = self._loop.call_later(KEEPALIVE_SECONDS, self._reap)

    def forget(self, conn: _Connection) -> None:
        """A connection closed: room for another."""
        self._open.discard(conn)
        self._free()

    def _free(self) -> None:
        """Room for a connection: handed to the first request waiting, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()[1]
            if not waiter.done():  # not one cancelled, whose request has yet to see it
                waiter.set_result(None)
                return
        self._count -= 1

    def _reusable(self, origin: Origin) -> _Connection | None:
        """The most recently used idle connection to ``origin`` that is still fit."""
        stack = self._idle.get(origin)
        while stack:
            conn = stack.pop()
            if self._loop.time() - conn.idle_since < KEEPALIVE_SECONDS and conn.alive():
                conn.reused = True
                return conn
            conn.close()
        return None

    def _reap(self) -> None:
        """Close the connections idle for too long (reuse checks it as well: this only
        frees their sockets while no request comes)."""
        self._reaper = None
        now = self._loop.time()
        for origin, stack in self._idle.items():
            expired = [c for c in stack if now - c.idle_since >= KEEPALIVE_SECONDS]
            self._idle[origin] = stack[len(expired) :]  # oldest first: the expired lead
            for conn in expired:
                conn.close()
        if any(self._idle.values()):
            self._reaper = self._loop.call_later(KEEPALIVE_SECONDS, self._reap)

    def _close_oldest_idle(self) -> None:
        """Make room (at the limit) by closing the idle connection unused the longest."""
        stacks = [s for s in self._idle.values() if s]
        if stacks:
            min(stacks, key=lambda s: s[0].idle_since).pop(0).close()

    async def close(self) -> None:
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        while self._waiters:
            waiter = self._waiters.popleft()[1]
            if not waiter.done():
                waiter.set_exception(ClientError("the client was closed"))
        self._idle.clear()
        conns = list(self._open)
        for conn in conns:
            conn.close()
        # closed on the next turn of the loop: wait for it, so none outlives the loop
        await asyncio.gather(*(c.writer.wait_closed() for c in conns), return_exceptions=True)


class _Connection:
    """One connection, and what has been read off it but not used yet."""

    __slots__ = (
        "answered",
        "buffer",
        "closed",
        "idle_since",
        "origin",
        "reader",
        "reused",
        "session",
        "writer",
    )

    def __init__(
        self,
        session: _Session,
        origin: Origin,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.session = session
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.idle_since = 0.0
        self.reused = False
        self.answered = False  # a byte came since the request went out
        self.closed = False

    def alive(self) -> bool:
        """Whether the server has not closed it (as far as the loop has seen)."""
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        """Drop the connection at once (a TLS goodbye would only delay it)."""
        if not self.closed:
            self.closed = True
            self.writer.transport.abort()
            self.session.forget(self)

    async def drain(self, timeout: float) -> None:
        """Wait while what was written has yet to go out (a large body)."""
        if self.writer.transport.get_write_buffer_size():
            async with asyncio.timeout(timeout):
                await self.writer.drain()

    async def more(self, timeout: float) -> bool:
        """Add what the server sends next to the buffer; False at the end of the stream."""
        async with asyncio.timeout(timeout):
            data = await self.reader.read(READ_SIZE)
        if not data:
            return False
        self.answered = True
        self.buffer += data
        return True

    def ended(self, what: str) -> ClientError:
        """The error for the end of the stream in the middle of ``what``."""
        if not self.answered:
            return ServerDisconnected("the server closed the connection without answering")
        return ClientError(f"the connection closed in the middle of the {what}")

    async def line(self, timeout: float, what: str) -> bytes:
        """The next line (without its CRLF or LF) of a chunked body's framing: a chunk's
        size, or the end of its data."""
        buffer = self.buffer
        while (end := buffer.find(b"\n")) < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise ClientError(f"the {what} has a line over {MAX_HEAD_BYTES // 1024} KiB")
            if not await self.more(timeout):
                raise self.ended(what)
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    async def section(self, timeout: float, what: str) -> list[str]:
        """The lines of a header section (a head, trailers) up to the blank line that
        ends it, CRLF or LF; one over the limits is refused, not buffered."""
        buffer = self.buffer
        start = 0  # where the blank line may begin, past what was searched
        limit = MAX_HEAD_BYTES + 3
        while True:
            if buffer.startswith((b"\n", b"\r\n")):  # no lines at all
                del buffer[: buffer.index(b"\n") + 1]
                return []
            crlf = buffer.find(b"\n\r\n", start, limit)
            lf = buffer.find(b"\n\n", start, limit)
            if crlf >= 0 or lf >= 0:
                end, skip = (lf, 2) if lf >= 0 and (crlf < 0 or lf < crlf) else (crlf, 3)
                break
            if len(buffer) > MAX_HEAD_BYTES:
                raise _oversized(what)
            start = max(0, len(buffer) - 2)
            if not await self.more(timeout):
                raise self.ended(what)
        text = buffer[:end].decode("latin-1")
        del buffer[: end + skip]
        lines = text.replace("\r\n", "\n").rstrip("\r").split("\n")
        if end > MAX_HEAD_BYTES or len(lines) > MAX_HEAD_LINES:
            raise _oversized(what)
        return lines

    async def some(self, limit: int, timeout: float) -> bytes:
        """Between 1 and ``limit`` bytes of a body whose end is known."""
        buffer = self.buffer
        if not buffer and not await self.more(timeout):
            raise self.ended("body")
        if limit >= len(buffer):
            piece = bytes(buffer)
            buffer.clear()
        else:
            piece = bytes(buffer[:limit])
            del buffer[:limit]
        return piece

    async def rest(self, timeout: float) -> bytes:
        """What comes next of a body that ends with the connection; b"" at its end."""
        if not self.buffer and not await self.more(timeout):
            return b""
        piece = bytes(self.buffer)
        self.buffer.clear()
        return piece


class _Response:
    """A response being read: its status and headers (lower-case names), then its body,
    piece by piece, by ``Content-Length``, chunks or the end of the connection."""

    __slots__ = (
        "_chunked",
        "_crlf_due",
        "_inflater",
        "_left",
        "_timeout",
        "_to_eof",
        "conn",
        "done",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(
        self,
        conn: _Connection,
        status: int,
        minor: int,
        headers: dict[str, str],
        timeout: float,
        *,
        bodiless: bool,
    ) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        self._timeout = timeout
        tokens = {t.strip() for t in headers.get("connection", "").lower().split(",")}
        self.keep_alive = "close" not in tokens if minor else "keep-alive" in tokens
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        self._chunked = False
        self._to_eof = False
        self._left = 0  # of the body, or of the chunk being read
        self._crlf_due = False  # a chunk's data is read, not the CRLF after it
        if bodiless:
            self.done = True
        elif coding is not None:
            self._chunked = coding.rsplit(",", 1)[-1].strip().lower() == "chunked"
            self._to_eof = not self._chunked
            self.done = False
            # with a Content-Length as well, the framing is suspect (smuggling): not reused
            self.keep_alive = self.keep_alive and length is None
        elif length is not None:
            self._left = _content_length(length)
            self.done = self._left == 0
        else:
            self._to_eof = True
            self.done = False
        if self._to_eof:
            self.keep_alive = False
        encoding = headers.get("content-encoding", "").strip().lower()
        self._inflater = _Inflater(encoding) if encoding in _Inflater.ENCODINGS else None

    async def read(self) -> bytes:
        """The next piece of the body, decoded; b"" once it is all read."""
        while not self.done:
            piece = await self._next()
            if self._inflater is not None:
                piece = self._inflater.feed(piece)
                if self.done:
                    piece += self._inflater.end()
            if piece:
                return piece
        return b""

    async def read_all(self) -> bytes:
        pieces = []
        while piece := await self.read():
            pieces.append(piece)
        return b"".join(pieces)

    def release(self) -> None:
        """The connection back to the pool if it can carry another request, else closed."""
        conn = self.conn
        if self.done and self.keep_alive and not conn.buffer:
            conn.session.keep(conn)
        else:
            conn.close()

    async def _next(self) -> bytes:
        conn, timeout = self.conn, self._timeout
        if self._to_eof:
            piece = await conn.rest(timeout)
            self.done = not piece
            return piece
        if self._chunked and not self._left:
            if self._crlf_due and await conn.line(timeout, "chunked body"):
                raise ClientError("a chunk of the body is longer than its size said")
            self._left = _chunk_size(await conn.line(timeout, "chunked body"))
            if not self._left:
                await conn.section(timeout, "trailers")
                self.done = True
                return b""
        piece = await conn.some(self._left, timeout)
        self._left -= len(piece)
        if self._chunked:
            self._crlf_due = not self._left
        else:
            self.done = not self._left
        return piece


class _Inflater:
    """A ``gzip`` or ``deflate`` body decoded as it arrives."""

    ENCODINGS = ("gzip", "x-gzip", "deflate")

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding != "deflate"
        self._zlib: zlib._Decompress | None = None

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._zlib is None:
            if self._gzip:
                wbits = 16 + zlib.MAX_WBITS
            else:  # deflate should come in zlib's wrapping; some servers send it raw
                wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
            self._zlib = zlib.decompressobj(wbits)
        try:
            return self._zlib.decompress(data)
        except zlib.error as exc:
            raise ClientError(f"the body does not decode: {exc}") from exc

    def end(self) -> bytes:
        if self._zlib is None:
            return b""
        tail = self._zlib.flush()
        if not self._zlib.eof:
            raise ClientError("the compressed body ended early")
        return tail


async def _response(conn: _Connection, timeout: float, *, tunnel: bool = False) -> _Response:
    """The response's head, past any interim (1xx) one; the body is left to read."""
    while True:
        status, minor, headers = _head(await conn.section(timeout, "response head"))
        if status == 101:
            raise ClientError("the server switched protocols (101)")
        if status >= 200:
            break
    # no body to a 204 or a 304, nor to the 2xx that opens a tunnel
    bodiless = status in (204, 304) or (tunnel and status < 300)
    return _Response(conn, status, minor, headers, timeout, bodiless=bodiless)


async def _whole_body(response: _Response) -> bytes:
    """The whole body; the connection then goes back to the pool, or is closed."""
    try:
        raw = await response.read_all()
    except BaseException:
        response.conn.close()
        raise
    response.release()
    return raw


def _status_error(response: _Response, raw: bytes) -> HTTPStatusError:
    return HTTPStatusError(response.status, error_detail(response.status, raw), response.headers)


def _head(lines: list[str]) -> tuple[int, int, dict[str, str]]:
    """The status, HTTP/1.x minor version and headers (names lower-cased, repeated
    ones joined with commas) of a response head."""
    line = lines[0] if lines else ""
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not (
        len(version) == 8
        and version.startswith("HTTP/1.")
        and version[7] in "0123456789"
        and len(code) == 3
        and code.isascii()
        and code.isdigit()
        and rest[3:4] in ("", " ")
    ):
        raise ClientError(f"not an HTTP/1.x status line: {line[:100]!r}")
    headers: dict[str, str] = {}
    for field in lines[1:]:
        name, colon, value = field.partition(":")
        if not colon or not name or name != name.strip():
            raise ClientError(f"a malformed header line: {field[:100]!r}")
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(code), int(version[7]), headers


def _oversized(what: str) -> ClientError:
    return ClientError(f"the {what} is over {MAX_HEAD_BYTES // 1024} KiB or {MAX_HEAD_LINES} lines")


def _content_length(value: str) -> int:
    """``Content-Length``, the same value repeated (by a proxy) taken once."""
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (length := values.pop()).isdigit():
        raise ClientError(f"a malformed Content-Length: {value[:100]!r}")
    return int(length)


def _chunk_size(line: bytes) -> int:
    size = line.partition(b";")[0].strip()
    if not size or size.strip(b"0123456789abcdefABCDEF") or len(size) > 16:
        raise ClientError(f"a malformed chunk size: {line[:100]!r}")
    return int(size, 16)


def _split(url: str, what: str) -> tuple[str, str, int, str]:
    """The scheme, host, port and path of an ``http(s)`` URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in DEFAULT_PORTS or not parts.hostname or port == -1:
        raise ConfigError(f"{what}: not an http:// or https:// URL with a host")
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme], parts.path


def _authority(host: str, port: int, scheme: str) -> str:
    """``host`` or ``host:port`` as the ``Host`` header has it."""
    host = _bracketed(host)
    return host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"


def _is_address(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address rather than a name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


def _bracketed(host: str) -> str:
    """An IPv6 address in brackets, as a URL or a ``Host`` header has it."""
    return f"[{host}]" if ":" in host else host


def _proxy(url: str) -> tuple[Origin, dict[str, str]]:
    """An ``http://`` proxy's origin and its ``Proxy-Authorization`` (from the URL's
    ``user:password``), if any."""
    url = url if "://" in url else f"http://{url}"
    parts = urlsplit(url)
    # the proxy's URL is not quoted in errors: it may hold a password
    scheme, host, port, _ = _split(url, "the proxy from the environment")
    if scheme != "http":
        raise ConfigError(
            f"proxy {parts.hostname}: only http:// proxies are supported here "
            "(or RECURSA_OPENAI_CLIENT=sdk)"
        )
    auth = {}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth["Proxy-Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
    return (scheme, host, port), auth


def _merged(fixed: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, str]:
    """``fixed`` with ``headers`` over it, names compared without case."""
    merged = {k.lower(): (k, v) for k, v in fixed.items()}
    merged.update({k.lower(): (k, v) for k, v in headers.items()})
    return dict(merged.values())


def _header_block(headers: Mapping[str, str]) -> bytes:
    """Header lines, each ended with CRLF; a line break in one would end it early (and
    let its value write others), so it is refused (without the value: a key)."""
    for name, value in headers.items():
        if not name or any(c in name for c in ":\r\n\0 ") or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"the HTTP header {name!r} holds a line break or a bad character")
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()


def env_proxy(url: str) -> str | None:
    """The proxy for ``url`` from ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``,
    unless ``NO_PROXY`` names its host (the variables httpx, the SDK's, honours)."""
    if (
        sys.platform != "darwin"
        and os.name != "nt"
        and not any(value and name.lower().endswith("_proxy") for name, value in os.environ.items())
    ):
        # what getproxies() reads here is only these variables: none set, no proxy (and
        # no urllib.request, which costs 3 MiB)
        return None
    from urllib.request import getproxies, proxy_bypass  # 60 ms: with the client, off the loop

    parts = urlsplit(url)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or (parts.hostname and proxy_bypass(parts.hostname)):
        return None
    return proxy


def sse_data(line: bytes) -> bytes | None:
    """The payload of a server-sent event's ``data:`` line; ``None`` for any other line
    (a comment, an ``event:`` name, the blank line between events)."""
    line = line.rstrip(b"\r")
    if not line.startswith(b"data:"):
        return None
    return line[5:].strip()


def encode(body: dict[str, Any]) -> bytes:
    """``body`` as the ``openai`` SDK encodes it (``openapi_dumps``): compact UTF-8 JSON,
    no NaN, byte for byte the same."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def error_detail(status: int, raw: bytes) -> str:
    """The provider's message in an error body, the same for both clients:
    ``error.message`` of a JSON object (what the ``openai`` SDK puts in its exception's
    text), its ``error`` string, a JSON string; else ``Error code: N - <the body>``,
    cut to :data:`DETAIL_CHARS` (an HTML page from a proxy, FastAPI's ``detail``)."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str | int | float):
            return str(inner["message"])
        if isinstance(inner, str) and inner:
            return inner
    elif isinstance(body, str) and body:
        return body
    text = " ".join(text.split())
    if not text:
        return f"Error code: {status}"
    if len(text) > DETAIL_CHARS:
        text = text[:DETAIL_CHARS] + "..."
    return f"Error code: {status} - {text}"
