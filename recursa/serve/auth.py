"""API keys: ``Authorization: Bearer KEY`` on every ``/v1`` route, checked from the
request's head alone, before a byte of its body is read."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from .limits import send_error
from .protocol import HTTPError


def protected(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class BearerAuth:
    """ASGI middleware: a ``/v1`` request without the key is answered 401 at once, and the
    connection is closed, so a body it sends is never read."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not protected(scope["path"]) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        error = HTTPError(
            401,
            "Incorrect or missing API key: send Authorization: Bearer <key>",
            code="invalid_api_key",
            headers={"www-authenticate": "Bearer"},
            close=True,
        )
        await send_error(send, error)

    def _allowed(self, scope: Scope) -> bool:
        value = b""
        for name, header in scope["headers"]:
            if name == b"authorization":
                value = header
                break
        scheme, _, token = value.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)
