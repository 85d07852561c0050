"""The lean HTTP/1.1 client (:mod:`recursa.models.openai_http`) against real local
servers: the scripted OpenAI server, and raw asyncio servers that answer byte for byte
for the edge cases (keep-alive and servers that drop it, framing, compression, interim
responses, broken and oversized replies, timeouts, cancellation, proxies, TLS)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from recursa.errors import ConfigError
from recursa.models import openai_http
from recursa.models._http import connection_error, unreachable
from recursa.models.base import TransientError
from recursa.models.openai_http import (
    ChatClient,
    ClientError,
    HTTPStatusError,
    ServerDisconnected,
    encode,
)
from recursa.testing import ScriptedServer

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PATH = "/chat/completions"


# -- a raw server ------------------------------------------------------------------------
@dataclass
class Request:
    line: str
    headers: dict[str, str]
    body: bytes
    peer: int  # which connection (0: the first accepted) it came on


@dataclass
class Peer:
    """One accepted connection, as a handler sees it."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: Raw
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(self) -> Request | None:
        """The next request on this connection; None once the client closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
            return None
        first, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)
        }
        body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        request = Request(first, headers, body, self.index)
        self.server.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> None:
        """Wait for the client to close the connection (reading whatever it sends)."""
        while await self.reader.read(65536):
            pass
        self.closed.set()


Handler = Callable[[Peer], Awaitable[None]]


class Raw:
    """An asyncio server on 127.0.0.1 that runs ``handle`` for each connection."""

    def __init__(self, handle: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handle = handle
        self.ssl_context = ssl_context
        self.peers: list[Peer] = []
        self.requests: list[Request] = []

    async def start(self) -> Raw:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(len(self.peers), reader, writer, self)
        self.peers.append(peer)
        try:
            await self.handle(peer)
        except (OSError, asyncio.IncompleteReadError):
            peer.closed.set()

    async def close(self) -> None:
        self._server.close()
        for peer in self.peers:
            peer.writer.transport.abort()
        await self._server.wait_closed()


def reply(
    body: bytes = b'{"ok": true}',
    status: str = "200 OK",
    headers: dict[str, str] | None = None,
    *,
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    lines = [f"{version} {status}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def keep_alive(answer: Callable[[Request], bytes]) -> Handler:
    """A handler answering every request on its connection with ``answer(request)``."""

    async def handle(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            await peer.send(answer(request))

    return handle


@pytest.fixture
async def raw() -> AsyncIterator[Callable[..., Awaitable[Raw]]]:
    servers: list[Raw] = []

    async def start(handle: Handler, ssl_context: ssl.SSLContext | None = None) -> Raw:
        servers.append(await Raw(handle, ssl_context).start())
        return servers[-1]

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def client() -> AsyncIterator[Callable[..., ChatClient]]:
    """``client(url, **kw)``: a ChatClient (timeout 5 s unless given) closed after the test."""
    made: list[ChatClient] = []

    def make(url: str, **kw: Any) -> ChatClient:
        kw.setdefault("headers", {"Authorization": "Bearer k"})
        kw.setdefault("timeout", 5.0)
        made.append(ChatClient(url, **kw))
        return made[-1]

    yield make
    for each in made:
        await each.close()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


pytestmark = pytest.mark.usefixtures("no_proxy")


async def stream(client: ChatClient) -> list[bytes]:
    return [p async for p in client.post_stream(PATH, {**BODY, "stream": True})]


# -- the scripted server: the real round trip ---------------------------------------------
async def test_posts_and_a_stream_to_the_scripted_server_share_one_connection(
    client: Callable[..., ChatClient],
) -> None:
    with ScriptedServer(lambda r: "hello there") as server:
        chat = client(server.url)
        for _ in range(3):
            reply_body = json.loads(await chat.post(PATH, BODY))
            assert reply_body["choices"][0]["message"]["content"] == "hello there"
        events = [json.loads(p) for p in await stream(chat)]
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == (
            "hello there"
        )
        assert chat._session is not None and len(chat._session._open) == 1
        assert server.requests[0].headers["authorization"] == "Bearer k"
        assert server.requests[3].headers["accept"] == "text/event-stream"
        await chat.close()
        assert chat._session is None


# -- keep-alive ---------------------------------------------------------------------------
async def test_sequential_requests_reuse_one_connection_closed_with_the_client(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    server = await raw(keep_alive(lambda r: reply(b'{"n": 1}')))
    chat = client(server.url)
    for _ in range(5):
        assert await chat.post(PATH, BODY) == b'{"n": 1}'
    assert (len(server.peers), len(server.requests)) == (1, 5)
    first = server.requests[0]
    assert first.line == "POST /v1/chat/completions HTTP/1.1"
    assert first.body == encode(BODY)
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["content-length"] == str(len(encode(BODY)))
    assert first.headers["accept"] == "application/json"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["accept-encoding"] == "gzip, deflate"
    assert first.headers["user-agent"].startswith("recursa/")
    await chat.close()
    await asyncio.wait_for(server.peers[0].closed.wait(), 2)


async def test_the_most_recently_used_idle_connection_is_reused_first(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.1 if peer.index == 1 and len(server.requests) <= 2 else 0)
            await peer.send(reply())

    server = await raw(handle)
    chat = client(server.url)
    await asyncio.gather(chat.post(PATH, BODY), chat.post(PATH, BODY))
    await chat.post(PATH, BODY)
    assert len(server.peers) == 2
    assert server.requests[-1].peer == 1  # the one that answered last


async def test_a_connection_the_server_closes_while_idle_is_not_reused(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(reply())
        await asyncio.sleep(0.05)
        peer.writer.close()  # its keep-alive timeout

    server = await raw(handle)
    chat = client(server.url)
    await chat.post(PATH, BODY)
    await asyncio.sleep(0.2)
    assert await chat.post(PATH, BODY) == b'{"ok": true}'
    assert len(server.peers) == 2


async def test_a_request_on_a_kept_alive_connection_the_server_dropped_goes_again_once(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    """The server takes the next request and closes without a byte (its keep-alive
    timeout ran out as the request came): sent again on a new connection, once."""

    async def handle(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(reply(b'"answered"'))
        await peer.request()
        peer.writer.close()

    server = await raw(handle)
    chat = client(server.url)
    for _ in range(3):
        assert await chat.post(PATH, BODY) == b'"answered"'
    assert (len(server.peers), len(server.requests)) == (3, 5)

    async def never_answers(peer: Peer) -> None:
        await peer.request()
        peer.writer.close()

    server.handle = never_answers  # the new connection is dropped as well: no third try
    with pytest.raises(ServerDisconnected) as info:
        await chat.post(PATH, BODY)
    assert len(server.peers) == 4
    assert isinstance(connection_error(info.value, spec="x", url=server.url), TransientError)
    with pytest.raises(ServerDisconnected):  # a new connection dropped: not sent again
        await chat.post(PATH, BODY)
    assert len(server.peers) == 5


@pytest.mark.parametrize(
    ("version", "headers", "connections"),
    [
        ("HTTP/1.1", {"Connection": "close"}, 3),
        ("HTTP/1.0", {}, 3),
        ("HTTP/1.0", {"Connection": "keep-alive"}, 1),
        ("HTTP/1.1", {"Connection": "Upgrade, keep-alive"}, 1),
    ],
)
async def test_a_connection_is_reused_only_where_the_reply_allows(
    raw: Any,
    client: Callable[..., ChatClient],
    version: str,
    headers: dict[str, str],
    connections: int,
) -> None:
    # the server would go on answering: only the client's choice tells
    server = await raw(keep_alive(lambda r: reply(headers=headers, version=version)))
    chat = client(server.url)
    for _ in range(3):
        assert await chat.post(PATH, BODY) == b'{"ok": true}'
    assert len(server.peers) == connections


async def test_idle_connections_expire(
    raw: Any, client: Callable[..., ChatClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_http, "KEEPALIVE_SECONDS", 0.1)
    server = await raw(keep_alive(lambda r: reply()))
    chat = client(server.url)
    await chat.post(PATH, BODY)
    await asyncio.sleep(0.15)
    await chat.post(PATH, BODY)
    assert len(server.peers) == 2
    # no further request: the second is closed all the same, by the pool's reaper
    await asyncio.wait_for(server.peers[1].closed.wait(), 2)


async def test_at_most_max_connections_are_open(
    raw: Any, client: Callable[..., ChatClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_http, "MAX_CONNECTIONS", 2)

    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.03)
            await peer.send(reply())

    server = await raw(handle)
    chat = client(server.url)
    replies = await asyncio.gather(*(chat.post(PATH, BODY) for _ in range(6)))
    assert replies == [b'{"ok": true}'] * 6
    assert len(server.peers) == 2


# -- framing and decoding ------------------------------------------------------------------
async def test_a_chunked_body_with_trailers(raw: Any, client: Callable[..., ChatClient]) -> None:
    chunked = b"5\r\nhello\r\n7;name=value\r\n, world\r\nA\r\n, chunked!\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = await raw(keep_alive(lambda r: head + chunked))
    chat = client(server.url)
    assert await chat.post(PATH, BODY) == b"hello, world, chunked!"
    assert await chat.post(PATH, BODY) == b"hello, world, chunked!"
    assert len(server.peers) == 1  # read to its end, trailers included: reused


@pytest.mark.parametrize(
    ("answer", "connections"),
    [
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}", 1),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            3,
        ),
    ],
    ids=["bare-lf-lines", "chunked-and-length"],
)
async def test_lenient_and_suspect_framing(
    raw: Any, client: Callable[..., ChatClient], answer: bytes, connections: int
) -> None:
    """Bare LF line ends are read; a chunked body that also has a Content-Length is
    read by its chunks, and its connection (a smuggling suspect) not reused."""
    server = await raw(keep_alive(lambda r: answer))
    chat = client(server.url)
    for _ in range(3):
        assert await chat.post(PATH, BODY) == b"{}"
    assert len(server.peers) == connections


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
    ],
    ids=["gzip", "deflate", "raw-deflate"],
)
async def test_a_compressed_body_is_decoded(
    raw: Any, client: Callable[..., ChatClient], encoding: str, compress: Any
) -> None:
    data = json.dumps({"text": "compressible " * 500}).encode()
    server = await raw(
        keep_alive(lambda r: reply(compress(data), headers={"Content-Encoding": encoding}))
    )
    chat = client(server.url)
    assert await chat.post(PATH, BODY) == data
    assert await chat.post(PATH, BODY) == data
    assert len(server.peers) == 1


async def test_a_body_that_ends_with_the_connection(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(reply(b'{"part": ', length=False))
        await asyncio.sleep(0.02)
        await peer.send(b'"two"}')
        peer.writer.close()

    server = await raw(handle)
    chat = client(server.url)
    assert await chat.post(PATH, BODY) == b'{"part": "two"}'
    assert await chat.post(PATH, BODY) == b'{"part": "two"}'
    assert len(server.peers) == 2


async def test_a_204_has_no_body_and_interim_replies_are_skipped(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    answers = [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + reply(),
    ]
    server = await raw(keep_alive(lambda r: answers[len(server.requests) - 1]))
    chat = client(server.url)
    assert await chat.post(PATH, BODY) == b""
    assert await chat.post(PATH, BODY) == b'{"ok": true}'
    assert len(server.peers) == 1


@pytest.mark.parametrize(
    "answer",
    [
        reply(b'{"cut": "sh', headers={"Content-Length": "100"}, length=False),
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{"cut": ',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["content-length", "mid-chunk", "before-last-chunk", "mid-head"],
)
async def test_a_reply_cut_short_is_a_retried_client_error(
    raw: Any, client: Callable[..., ChatClient], answer: bytes
) -> None:
    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        peer.writer.close()

    server = await raw(handle)
    with pytest.raises(ClientError, match="closed in the middle") as info:
        await client(server.url).post(PATH, BODY)
    assert not isinstance(info.value, ServerDisconnected)
    assert isinstance(connection_error(info.value, spec="x", url=server.url), TransientError)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 300 + b"\r\n{}", "256 lines"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n{}", "64 KiB"),
        (b"HTTP/1.1 200 OK\r\nX-Endless: " + b"e" * 2_000_000, "64 KiB"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n{}", "malformed Content-Length"),
    ],
    ids=["lines", "one-header", "no-end", "not-http", "bad-header", "two-lengths"],
)
async def test_a_bad_or_oversized_head_is_refused_at_once(
    raw: Any, client: Callable[..., ChatClient], answer: bytes, message: str
) -> None:
    async def handle(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(answer)  # not drained: the client may stop reading
        await peer.until_closed()

    server = await raw(handle)
    started = time.monotonic()
    with pytest.raises(ClientError, match=message):
        await client(server.url).post(PATH, BODY)
    assert time.monotonic() - started < 2.0  # not the 5 s timeout
    await asyncio.wait_for(server.peers[0].closed.wait(), 2)  # and the connection dropped


# -- no answer: timeouts, refusals, cancellation ----------------------------------------------
async def test_a_server_that_never_answers_times_out_within_the_timeout(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.until_closed()

    server = await raw(handle)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client(server.url, timeout=0.3).post(PATH, BODY)
    assert 0.25 < time.monotonic() - started < 1.5
    await asyncio.wait_for(server.peers[0].closed.wait(), 2)


async def test_a_refused_connection_is_told_as_refused(client: Callable[..., ChatClient]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError) as info:
        await client(f"http://127.0.0.1:{port}/v1").post(PATH, BODY)
    assert not isinstance(info.value, TimeoutError)
    assert unreachable(info.value) == "connection refused"


async def test_a_cancelled_request_closes_its_connection(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    second = asyncio.Event()

    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            if len(server.requests) == 2:
                second.set()
                await peer.until_closed()
                return
            await peer.send(reply())

    server = await raw(handle)
    chat = client(server.url)
    await chat.post(PATH, BODY)
    task = asyncio.create_task(chat.post(PATH, BODY))
    await asyncio.wait_for(second.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.peers[0].closed.wait(), 2)
    assert await chat.post(PATH, BODY) == b'{"ok": true}'
    assert len(server.peers) == 2  # not back in the pool


# -- server-sent events ---------------------------------------------------------------------
def chunked(data: bytes, sizes: Iterator[int]) -> bytes:
    """``data`` as a chunked body, in chunks of the given sizes."""
    out, at = [], 0
    while at < len(data):
        piece = data[at : at + next(sizes)]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        at += len(piece)
    return b"".join(out) + b"0\r\n\r\n"


async def test_events_split_across_any_writes_arrive_whole(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    rng = random.Random(7)
    payloads = [json.dumps({"n": i, "text": "x" * rng.randrange(200)}).encode() for i in range(20)]
    payloads.insert(10, json.dumps({"big": "y" * 300 * 1024}).encode())  # one 300 KiB line
    events = b"".join(
        b": a comment\n" + b"event: chunk\r\ndata: " + p + (b"\r\n\r\n" if i % 2 else b"\n\n")
        for i, p in enumerate(payloads)
    )
    events += b"data: [DONE]\n\n"
    body = chunked(events, iter(lambda: rng.randrange(1, 9000), None))

    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
            await peer.send(b"Transfer-Encoding: chunked\r\n\r\n")
            at = 0
            while at < len(body):  # TCP writes that cut lines, chunk sizes and CRLFs
                step = rng.choice((1, 2, 5, 100, 4000, 40000))
                await peer.send(body[at : at + step])
                at += step
                if rng.random() < 0.2:
                    await asyncio.sleep(0.001)

    server = await raw(handle)
    chat = client(server.url)
    assert await stream(chat) == payloads
    assert server.requests[0].headers["accept"] == "text/event-stream"
    assert await stream(chat) == payloads
    assert len(server.peers) == 1  # read to the end after [DONE]: reused


async def test_a_gzipped_stream_is_decoded_as_it_arrives(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    got_first = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n")
        packer = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        await peer.send(packer.compress(b"data: one\n\n") + packer.flush(zlib.Z_SYNC_FLUSH))
        await got_first.wait()  # a client that waited for the whole body would hang here
        await peer.send(packer.compress(b"data: two\n\n") + packer.flush())
        peer.writer.close()

    server = await raw(handle)
    seen = []
    async for payload in client(server.url, timeout=2.0).post_stream(PATH, BODY):
        seen.append(payload)
        got_first.set()
    assert seen == [b"one", b"two"]


async def test_a_stream_broken_mid_way_raises_after_what_arrived(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await peer.send(chunked(b"data: 1\n\ndata: 2\n\n", iter(lambda: 9, None))[:-5])
        peer.writer.close()

    server = await raw(handle)
    seen = []
    with pytest.raises(ClientError, match="closed in the middle of the chunked body"):
        async for payload in client(server.url).post_stream(PATH, BODY):
            seen.append(payload)
    assert seen == [b"1", b"2"]


async def test_a_stream_left_unread_closes_its_connection(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await peer.send(chunked(b"data: 1\n\n", iter(lambda: 100, None))[:-5])
        await peer.until_closed()

    server = await raw(handle)
    chat = client(server.url)
    async with contextlib.aclosing(chat.post_stream(PATH, BODY)) as events:
        async for payload in events:
            assert payload == b"1"
            break
    await asyncio.wait_for(server.peers[0].closed.wait(), 2)
    assert chat._session is not None and not chat._session._open


# -- the request: query, headers, statuses ----------------------------------------------------------
async def test_params_form_the_query_and_the_path_is_not_quoted_twice(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    server = await raw(keep_alive(lambda r: reply()))
    chat = client(server.url + "/openai", params={"api-version": "2024-10-21", "q": "a b&c"})
    await chat.post("/deployments/my%20model/chat/completions", BODY)
    assert server.requests[0].line == (
        "POST /v1/openai/deployments/my%20model/chat/completions"
        "?api-version=2024-10-21&q=a+b%26c HTTP/1.1"
    )


def test_a_header_with_a_line_break_is_refused_without_its_value() -> None:
    with pytest.raises(ConfigError, match="'Authorization' holds a line break") as info:
        ChatClient("http://x.test/v1", headers={"Authorization": "Bearer sk-1\n"}, timeout=1)
    assert "sk-1" not in str(info.value)


async def test_a_redirect_is_an_error_status_not_followed(
    raw: Any, client: Callable[..., ChatClient]
) -> None:
    moved = reply(
        b'{"error": {"message": "moved"}}', "307 Temporary Redirect", {"Location": "/v2/x"}
    )
    server = await raw(keep_alive(lambda r: moved))
    chat = client(server.url)
    with pytest.raises(HTTPStatusError) as info:
        await chat.post(PATH, BODY)
    assert (info.value.status, info.value.detail) == (307, "moved")
    assert info.value.headers["location"] == "/v2/x"
    with pytest.raises(HTTPStatusError):
        await stream(chat)
    assert len(server.requests) == 2 and len(server.peers) == 1  # error bodies read whole


# -- proxies and TLS ---------------------------------------------------------------------------
async def test_an_http_endpoint_through_an_http_proxy(
    raw: Any, client: Callable[..., ChatClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await raw(keep_alive(lambda r: reply(b'"via proxy"')))
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://user:p%40ss@127.0.0.1:{proxy.port}")
    chat = client("http://upstream.test:8080/v1")
    assert await chat.post(PATH, BODY) == b'"via proxy"'
    assert await chat.post(PATH, BODY) == b'"via proxy"'
    request = proxy.requests[0]
    assert request.line == "POST http://upstream.test:8080/v1/chat/completions HTTP/1.1"
    assert request.headers["host"] == "upstream.test:8080"
    assert (
        request.headers["proxy-authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    )
    assert len(proxy.peers) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``api.test`` and 127.0.0.1, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=api.test", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:api.test,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_server(raw: Any, certificate: tuple[Path, Path]) -> tuple[Raw, list[str | None]]:
    """An HTTPS server with that certificate, and the SNI names it was sent."""
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)

    def heard(sock: Any, name: str | None, ctx: Any) -> None:
        names.append(name)

    context.sni_callback = heard
    return await raw(keep_alive(lambda r: reply(b'"over tls"')), context), names


async def test_https_trusted_through_ssl_cert_file_and_untrusted_fails_fast(
    tls_server: tuple[Raw, list[str | None]],
    certificate: tuple[Path, Path],
    client: Callable[..., ChatClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _ = tls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    started = time.monotonic()
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        await client(server.url).post(PATH, BODY)
    assert time.monotonic() - started < 2.0
    # the same on every retry: a permanent error naming why, not a retried one
    failure = connection_error(refused.value, spec="openai/m", url=server.url)
    assert not isinstance(failure, TransientError)
    assert "TLS certificate not trusted (self-signed certificate)" in str(failure), failure
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    chat = client(server.url)  # its context is made now, trusting the file
    assert await chat.post(PATH, BODY) == b'"over tls"'
    assert await chat.post(PATH, BODY) == b'"over tls"'
    assert len(server.peers) == 1  # kept alive (the refused handshake never got to it)


async def test_https_through_a_connect_proxy(
    raw: Any,
    tls_server: tuple[Raw, list[str | None]],
    certificate: tuple[Path, Path],
    client: Callable[..., ChatClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, names = tls_server
    connects: list[Request] = []
    pipes: list[asyncio.Task[None]] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        writer.transport.abort()

    async def tunnel(peer: Peer) -> None:
        request = await peer.request()
        assert request is not None
        connects.append(request)
        if (
            request.headers.get("proxy-authorization")
            != "Basic " + base64.b64encode(b"u:p").decode()
        ):
            await peer.send(reply(b'{"error": "who are you"}', "407 Proxy Authentication Required"))
            return
        # wherever it says it goes (api.test), the tunnel goes to the HTTPS server
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipes.append(asyncio.create_task(pipe(up_reader, peer.writer)))
        await pipe(peer.reader, up_writer)

    proxy = await raw(tunnel)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, f"http://u:wrong@127.0.0.1:{proxy.port}")
    with pytest.raises(HTTPStatusError) as info:
        await client("https://api.test/v1").post(PATH, BODY)
    assert (info.value.status, info.value.detail) == (407, "who are you")

    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, f"http://u:p@127.0.0.1:{proxy.port}")
    chat = client(f"https://api.test:{server.port}/v1")
    assert await chat.post(PATH, BODY) == b'"over tls"'
    assert await chat.post(PATH, BODY) == b'"over tls"'
    assert connects[-1].line == f"CONNECT api.test:{server.port} HTTP/1.1"
    assert len(connects) == 2 and len(server.peers) == 1  # one tunnel, kept alive
    assert names == ["api.test"]
    assert server.requests[0].line == "POST /v1/chat/completions HTTP/1.1"  # not absolute
    assert server.requests[0].headers["host"] == f"api.test:{server.port}"
    await chat.close()
    for task in pipes:
        await asyncio.wait_for(task, 2)


async def test_a_proxy_that_never_answers_connect_times_out(
    raw: Any, client: Callable[..., ChatClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stall(peer: Peer) -> None:
        await peer.request()
        await peer.until_closed()

    proxy = await raw(stall)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client("https://api.test/v1", timeout=0.3).post(PATH, BODY)
    assert 0.25 < time.monotonic() - started < 1.5


# -- what it imports -------------------------------------------------------------------------
def test_the_client_imports_neither_aiohttp_nor_httpx() -> None:
    """Nor urllib.request (3 MiB) to find no proxy, where only the environment sets one."""
    code = (
        "import asyncio, sys\n"
        "from recursa.models.openai_http import ChatClient\n"
        "async def main():\n"
        "    c = ChatClient('http://127.0.0.1:9/v1', headers={}, timeout=1)\n"
        "    try:\n"
        "        await c.post('/x', {})\n"
        "    except OSError:\n"
        "        pass\n"
        "    await c.close()\n"
        "asyncio.run(main())\n"
        "names = ('aiohttp', 'httpx', 'httpx2', 'openai', 'urllib.request')\n"
        "print(sorted(m for m in names if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    imported = "['urllib.request']" if sys.platform == "darwin" or os.name == "nt" else "[]"
    assert done.stdout.strip() == imported
