"""What a client may cost the server before it is served, tried with raw sockets: the key
is checked on the head (a body is never read without it), bodies have a size limit and a
deadline, heads a deadline and a size limit, and connections a cap; stalled connections
never keep /health from answering."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from recursa import RLM
from recursa.serve import BackgroundServer, make_app
from recursa.testing import ScriptedServer

KEY = "sk-limits"


@pytest.fixture(scope="module")
def backend() -> Iterator[ScriptedServer]:
    with ScriptedServer(lambda body: "FINAL(ok)") as server:
        yield server


def rlm(backend: ScriptedServer) -> RLM:
    return RLM("openai/root", base_url=backend.url, sandbox="inprocess")


def address(server: BackgroundServer) -> tuple[str, int]:
    return server.server.host, server.server.port


def connect(server: BackgroundServer) -> socket.socket:
    sock = socket.create_connection(address(server), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    top, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in top.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return data


def head(path: str, length: int, key: str | None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: test",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def test_a_wrong_key_is_refused_before_the_body_is_read(backend: ScriptedServer) -> None:
    app = make_app(rlm(backend), api_key=KEY)
    with BackgroundServer(app) as server:
        for key in ("wrong", None):
            sock = connect(server)
            # A 64 MB body is announced and never sent: the answer comes from the head.
            sock.sendall(head("/v1/chat/completions", 64 * 1024 * 1024, key))
            started = time.monotonic()
            reply = read_all(sock)  # ends: the server closes the connection
            sock.close()
            assert time.monotonic() - started < 5
            assert status_of(reply) == 401, reply[:200]
            assert b"invalid_api_key" in reply and b"connection: close" in reply.lower()
    assert backend.requests == []


def test_a_body_over_the_limit_is_413_before_it_is_read(backend: ScriptedServer) -> None:
    app = make_app(rlm(backend), api_key=KEY, max_body_bytes=1000)
    with BackgroundServer(app) as server:
        sock = connect(server)
        sock.sendall(head("/v1/chat/completions", 64 * 1024 * 1024, KEY))
        reply = read_all(sock)
        sock.close()
        assert status_of(reply) == 413 and b"request_too_large" in reply
        # A chunked body that grows past the limit is stopped as it is read.
        sock = connect(server)
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n"
        )
        piece = b"x" * 600
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) * 2)
        reply = read_all(sock)
        sock.close()
        assert status_of(reply) == 413


def test_a_slow_body_is_408(backend: ScriptedServer) -> None:
    app = make_app(rlm(backend), api_key=KEY, body_timeout_seconds=0.5)
    with BackgroundServer(app) as server:
        sock = connect(server)
        sock.sendall(head("/v1/chat/completions", 100, KEY) + b'{"messages": ')
        started = time.monotonic()
        reply = read_all(sock)
        sock.close()
        assert 0.4 < time.monotonic() - started < 5
        assert status_of(reply) == 408 and b"request_timeout" in reply
    assert backend.requests == []


def test_stalled_connections_are_closed_and_health_answers_meanwhile(
    backend: ScriptedServer,
) -> None:
    app = make_app(rlm(backend))
    with BackgroundServer(app, header_timeout_seconds=3.0) as server:
        stalled = []
        for _ in range(200):
            sock = connect(server)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")  # never finished
            stalled.append(sock)
        base = server.url.removesuffix("/v1")
        started = time.monotonic()
        r = httpx.get(f"{base}/health", timeout=5)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert time.monotonic() - started < 2  # well before the stalled ones time out
        # After the head's deadline the server has closed every stalled connection.
        for sock in stalled:
            sock.settimeout(10)
            assert read_all(sock) == b""
            sock.close()


def test_an_idle_keep_alive_connection_gets_the_heads_deadline_again(
    backend: ScriptedServer,
) -> None:
    app = make_app(rlm(backend))
    with BackgroundServer(app, header_timeout_seconds=0.5) as server:
        sock = connect(server)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert status_of(read_response(sock)) == 200
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the next head never ends
        started = time.monotonic()
        assert read_all(sock) == b""
        assert time.monotonic() - started < 5
        sock.close()


def test_a_huge_head_is_refused(backend: ScriptedServer) -> None:
    app = make_app(rlm(backend))
    with BackgroundServer(app, max_head_bytes=16 * 1024) as server:
        sock = connect(server)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 64 * 1024)
        reply = read_all(sock)
        sock.close()
        assert status_of(reply) == 400


def test_connections_beyond_the_cap_are_503(backend: ScriptedServer) -> None:
    app = make_app(rlm(backend))
    with BackgroundServer(app, max_connections=4, header_timeout_seconds=1.0) as server:
        stalled = [connect(server) for _ in range(4)]
        for sock in stalled:
            sock.sendall(b"GET /health HTTP/1.1\r\n")
        base = server.url.removesuffix("/v1")
        time.sleep(0.1)
        assert httpx.get(f"{base}/health", timeout=5).status_code == 503
        for sock in stalled:
            sock.settimeout(10)
            assert read_all(sock) == b""
            sock.close()
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
