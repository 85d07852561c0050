"""What a request may cost the server before it is handled: a body size limit and a
deadline for the body, enforced while it is read, and an access log line per request.

The head's limits (its size, how long it may take, how many connections) are the HTTP
server's: see :mod:`recursa.serve.server`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .protocol import HTTPError

access_logger = logging.getLogger("recursa.serve.access")


async def send_error(send: Send, error: HTTPError) -> None:
    """Answer with an OpenAI-shaped error, before or instead of the application."""
    body = error.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def too_large(limit: int) -> HTTPError:
    return HTTPError(
        413,
        f"the request body is larger than {limit:,} bytes",
        code="request_too_large",
        close=True,
    )


class BodyLimits:
    """ASGI middleware: a body declared larger than ``max_bytes`` is refused (413) before
    it is read; one that grows past it, or is not all there within ``timeout`` seconds of
    the request's head, stops the read with a 413 or a 408 (``HTTPError`` raised from
    ``receive``). Once the body is complete, ``receive`` passes through untouched (it then
    only tells of a disconnect)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_error(send, too_large(self.max_bytes))
                return
        deadline = asyncio.get_running_loop().time() + self.timeout
        received = 0
        complete = False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPError(
                    408,
                    f"the request body did not arrive within {self.timeout:g} seconds",
                    code="request_timeout",
                    close=True,
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        await self.app(scope, limited, send)


class AccessLog:
    """ASGI middleware: one ``recursa.serve.access`` line per request when its response
    ends (or the client leaves): client, method, path, status, bytes sent, seconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        state: dict[str, Any] = {"status": 0, "bytes": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            query = scope.get("query_string", b"")
            path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
            access_logger.info(
                '%s "%s %s" %d %d %.3fs',
                f"{client[0]}:{client[1]}" if client else "-",
                scope["method"],
                path,
                state["status"],
                state["bytes"],
                time.monotonic() - started,
            )
