"""A lean HTTP client for OpenAI-compatible chat completions, on ``aiohttp``.

:class:`~recursa.models.openai.OpenAIModel` sends one kind of request, ``POST
{base_url}/chat/completions`` with a JSON body, and reads the reply body itself.
The ``openai`` SDK costs about a second to import and 1-1.5 ms of CPU a request
on top of that; this client sends the same request with the same JSON body in
about a third of the CPU, and ``aiohttp`` imports in a third of a second (see
docs/performance.md for the figures). The SDK path stays selectable
(``RECURSA_OPENAI_CLIENT=sdk``).

What the model needs of a client is three outcomes of :meth:`ChatClient.post`:
the body of a 2xx reply as bytes; a :class:`HTTPStatusError` with the status,
the provider's one-line message and the headers (for ``Retry-After``); or an
``aiohttp.ClientError`` / ``TimeoutError`` for a request that got no answer,
which :func:`recursa.models._http.connection_error` tells apart (refused or
unknown host: permanent; timeout or reset: retried). :meth:`ChatClient.post_stream`
is the same for a streamed reply (``"stream": true``): the payload of each
server-sent ``data:`` line as it arrives, with the same errors (a stream that
breaks off mid-way raises ``aiohttp.ClientPayloadError``, a reset).

``aiohttp`` is imported when the client is made (in a worker thread, see
:class:`~recursa.models.base.SDKModel`), and its session on the first request,
on the running event loop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._version import __version__

if TYPE_CHECKING:
    import aiohttp

# The SDK's own limits (openai._constants.DEFAULT_CONNECTION_LIMITS): a run's
# semaphores keep far fewer in flight, so this is never what queues a request.
MAX_CONNECTIONS = 1000
KEEPALIVE_SECONDS = 5.0
USER_AGENT = f"recursa/{__version__}"
#: How much of an error body that carries no message goes into the error.
DETAIL_CHARS = 300


class HTTPStatusError(Exception):
    """A reply with a status outside 2xx: ``detail`` is the provider's message, read
    the way the ``openai`` SDK reads it, so both paths report the same text."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers


class ChatClient:
    """``POST`` JSON to one endpoint and return the reply body, over one connection pool.

    ``base_url`` is what errors name (a refused connection says which server);
    ``path`` is appended to it, ``params`` form the query string (Azure's
    ``api-version``) and ``headers`` carry the credentials.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        params: Mapping[str, str] | None = None,
    ) -> None:
        import aiohttp  # here, not at module level: this runs in a worker thread

        self._aiohttp = aiohttp
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **headers,
        }
        self._params = dict(params or {})
        self._proxy = env_proxy(self.base_url)
        # httpx's timeout (the SDK's) is per phase, not for the whole request: the
        # same here, for getting a connection and for each read.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # made on the running loop (aiohttp binds a session to it), on first use
        aiohttp = self._aiohttp
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=self._headers,
            # not trust_env: it looks up .netrc and the proxy settings in a worker thread
            # on every request (two thread hops, about a third of this client's CPU); the
            # proxy is looked up once instead (env_proxy)
            trust_env=False,
        )
        return self._session

    async def post(self, path: str, body: dict[str, Any]) -> bytes:
        """The body of the reply to ``POST base_url + path`` with ``body`` as JSON."""
        session = self._session if self._session is not None else self._open()
        data = encode(body)
        async with session.post(
            self.base_url + path,
            data=data,
            params=self._params or None,
            proxy=self._proxy,
            allow_redirects=False,  # as httpx (the SDK's): a 3xx is an error status
        ) as response:
            raw = await response.read()
            if response.status >= 300:
                raise HTTPStatusError(
                    response.status,
                    error_detail(response.status, raw),
                    {k.lower(): v for k, v in response.headers.items()},
                )
            return raw

    async def post_stream(self, path: str, body: dict[str, Any]) -> AsyncGenerator[bytes, None]:
        """The payload of each ``data:`` line of the server-sent events replying to
        ``POST base_url + path``, as it arrives, up to ``data: [DONE]`` (or the end of
        the body). A status outside 2xx raises :class:`HTTPStatusError` before any."""
        session = self._session if self._session is not None else self._open()
        async with session.post(
            self.base_url + path,
            data=encode(body),
            params=self._params or None,
            proxy=self._proxy,
            allow_redirects=False,
            headers={"Accept": "text/event-stream"},
        ) as response:
            if response.status >= 300:
                raise HTTPStatusError(
                    response.status,
                    error_detail(response.status, await response.read()),
                    {k.lower(): v for k, v in response.headers.items()},
                )
            # lines split here: aiohttp's own line reader refuses one over 128 KiB
            pending = b""
            done = False
            async for block in response.content.iter_any():
                if done:
                    continue  # read to the end: the connection then goes back to the pool
                *lines, pending = (pending + block).split(b"\n")
                for line in lines:
                    payload = sse_data(line)
                    done = payload == b"[DONE]"
                    if done:
                        break
                    if payload is not None:
                        yield payload
            payload = None if done else sse_data(pending)
            if payload is not None and payload != b"[DONE]":
                yield payload

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def env_proxy(url: str) -> str | None:
    """The proxy for ``url`` from ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``,
    unless ``NO_PROXY`` names its host (the variables httpx, the SDK's, honours)."""
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
