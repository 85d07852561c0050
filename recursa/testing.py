"""Test support: scripted models and a real local HTTP server, and the helpers that route
a recursive run's requests to root turns or sub-calls.

:class:`ScriptedServer` is a real OpenAI-compatible HTTP server on 127.0.0.1 that
plays a reply function, so the real client code path (SDK, HTTP, retries) is
exercised. It speaks ``POST /v1/chat/completions`` and ``GET /v1/models``::

    def reply(request: Received) -> str:
        if is_root_turn(request["messages"]):
            return "```repl\\nFINAL('done')\\n```"
        return "sub-call answer"

    with ScriptedServer(reply) as server:
        RLM("openai/any", base_url=server.url).completion("q", context="...")
        server.requests  # every request received, oldest first

A request with ``"stream": true`` is answered with server-sent events, as OpenAI
streams: the text in pieces (a word and the space after it each), then the finish,
the usage where ``stream_options.include_usage`` asks for it, and ``data: [DONE]``.

A reply function receives each request as a :class:`Received` (the JSON body, a
dict, with the request's path, query and headers) and returns the reply text or
a :class:`Reply` (text plus usage overrides), or raises :class:`HTTPFailure` to
answer with an HTTP error status.

:func:`router` builds such a function for a
:class:`~recursa.models.scripted.ScriptedModel` from the replies each turn of
the root should give, answering sub-calls from another function;
:func:`http_router` is the same for a :class:`ScriptedServer`::

    model = ScriptedModel(router(["```repl\\nprint(llm_query('hi'))\\n```",
                                  "```repl\\nFINAL('done')\\n```"]))

:class:`ScriptedHTTPServer` is the protocol-neutral base: subclass it (define
:meth:`~ScriptedHTTPServer.answer` and :meth:`~ScriptedHTTPServer.error`) to
script a server that speaks another provider's API.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from .models.base import Message

__all__ = [
    "HTTPFailure",
    "Received",
    "Reply",
    "ReplyFunction",
    "ScriptedHTTPServer",
    "ScriptedServer",
    "Stream",
    "http_router",
    "is_root_turn",
    "node_query",
    "router",
    "turn_index",
]


# -- routing a recursive run's requests -----------------------------------------------
def is_root_turn(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True for a turn of an RLM node (its conversation opens with the system prompt);
    False for a plain sub-call (``llm_query``), which is one user message."""
    return bool(messages) and messages[0]["role"] == "system"


def turn_index(messages: Sequence[Mapping[str, Any]]) -> int:
    """0 for a node's first turn, 1 for its second, ... (the replies it has had so far)."""
    return sum(1 for m in messages if m["role"] == "assistant")


def node_query(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of a node's first user message, which carries its query."""
    return str(messages[1]["content"]) if len(messages) > 1 else ""


def _default_sub(prompt: str) -> str:
    return f"sub:{prompt[:40]}"


def router(
    root: Sequence[str] | Mapping[str, Sequence[str]],
    sub: Callable[[str], str] = _default_sub,
) -> Callable[[list[Message]], str]:
    """A reply function for :class:`~recursa.models.scripted.ScriptedModel`.

    Root turns (of the root and of any child RLM) play ``root`` by turn index, the
    last reply repeating once they run out; ``root`` may instead map a substring of
    a node's query to that node's own replies (the first key found in the query
    wins). Single-message requests are sub-calls, answered by ``sub(prompt)``.
    """

    def reply(messages: list[Message]) -> str:
        if not is_root_turn(messages):
            return sub(str(messages[-1]["content"]))
        replies: Sequence[str]
        if isinstance(root, Mapping):
            query = node_query(messages)
            replies = next(v for k, v in root.items() if k in query)
        else:
            replies = root
        i = turn_index(messages)
        return replies[min(i, len(replies) - 1)]

    return reply


def http_router(
    root: Sequence[str] | Mapping[str, Sequence[str]],
    sub: Callable[[str], str] = _default_sub,
) -> Callable[[Mapping[str, Any]], str]:
    """:func:`router` for a :class:`ScriptedServer`: it reads the request body's messages."""
    inner = router(root, sub)
    return lambda body: inner(body["messages"])


# -- scripted HTTP servers -----------------------------------------------------------
class HTTPFailure(Exception):
    """Raise from a reply function to answer with an HTTP error status."""

    def __init__(self, status: int, message: str = "scripted failure") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Reply:
    """A reply's text and usage fields (in the protocol's own names) that override the
    server's estimates, e.g. ``Reply("ok", {"prompt_tokens": 1000})``; ``tool_calls``
    are function calls the reply makes, each ``{"name": ..., "arguments": {...}}`` (an
    ``id`` is made up when missing; ``arguments`` may be a str, sent as it is).
    Streamed, a reply with ``cut_after`` breaks off after that many pieces of its
    text: the connection closes mid-stream."""

    text: str
    usage: dict[str, Any] = field(default_factory=dict)
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    cut_after: int | None = None


@dataclass(frozen=True)
class Stream:
    """An answer sent as server-sent events: each of ``events`` as a ``data:`` line,
    then ``data: [DONE]``; with ``cut``, the connection closes after the events
    instead, with the chunked body unfinished (a server that broke off)."""

    events: list[dict[str, Any]]
    cut: bool = False


class Received(dict[str, Any]):
    """One request as the server received it: this dict is its JSON body (so a reply
    function may read ``request["messages"]``), and ``path``, ``query`` (the last value
    of each parameter) and ``headers`` (lower-case names) are attributes."""

    def __init__(
        self,
        body: Mapping[str, Any],
        *,
        path: str = "/",
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(body)
        self.path = path
        self.query: dict[str, str] = dict(query or {})
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body (this dict itself)."""
        return self


ReplyFunction = Callable[[Received], str | Reply]


class _Server(ThreadingHTTPServer):
    # Fan-out tests open hundreds of connections at once: keep them all in the backlog.
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away before its reply (a cancelled request) is no error of
        the server's: only other failures print their traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _tokens(text: str) -> int:
    """The usage estimate: 4 characters a token, at least 1."""
    return max(1, len(text) // 4)


class ScriptedHTTPServer:
    """A threaded local HTTP server on 127.0.0.1 that plays ``reply``; a subclass speaks
    one protocol by defining :meth:`answer` (and :meth:`answer_get`) and :meth:`error`.

    It listens from construction and serves once started (``with server:`` or
    :meth:`start`). Every request is recorded in :attr:`requests`, its raw body size in
    :attr:`request_sizes`; ``latency`` seconds are added to every reply, and
    :attr:`max_in_flight` is the most replies that were being made at once.
    """

    def __init__(
        self, reply: ReplyFunction, *, api_key: str | None = None, latency: float = 0.0
    ) -> None:
        self.reply = reply
        self.api_key = api_key
        self.latency = latency
        self.requests: list[Received] = []
        self.request_sizes: list[int] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- life cycle ------------------------------------------------------------------
    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``, with no path."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The base URL a client is given."""
        return self.origin

    def start(self) -> Self:
        """Serve requests (in a daemon thread); calling it again does nothing."""
        if self._thread.ident is None:
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.ident is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of :attr:`requests` as plain dicts."""
        return [dict(r) for r in self.requests]

    # -- what a subclass defines -----------------------------------------------------
    def answer(self, request: Received) -> tuple[int, dict[str, Any] | Stream]:
        """The status and JSON payload (or event stream) for a POST; raise
        :class:`HTTPFailure` to refuse."""
        raise HTTPFailure(404, f"no route {request.path}")

    def answer_get(self, request: Received) -> tuple[int, dict[str, Any]]:
        """The status and JSON payload for a GET (not recorded in :attr:`requests`)."""
        raise HTTPFailure(404, f"no route {request.path}")

    def error(self, status: int, message: str) -> dict[str, Any]:
        """The protocol's error payload."""
        return {"error": {"message": message, "code": status}}

    # -- for subclasses ------------------------------------------------------------------
    def play(self, request: Received) -> Reply:
        """Ask the reply function (after ``latency``), counting replies in flight."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            out = self.reply(request)
        finally:
            with self._lock:
                self._in_flight -= 1
        return out if isinstance(out, Reply) else Reply(out)

    # -- plumbing ----------------------------------------------------------------------
    def _respond(
        self, answer: Callable[[Received], tuple[int, dict[str, Any] | Stream]], request: Received
    ) -> tuple[int, dict[str, Any] | Stream]:
        try:
            return answer(request)
        except HTTPFailure as failure:
            return failure.status, self.error(failure.status, failure.message)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms wait

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _received(self, raw: bytes) -> Received:
                split = urlsplit(self.path)
                return Received(
                    json.loads(raw) if raw else {},
                    path=split.path,
                    query={k: v[-1] for k, v in parse_qs(split.query).items()},
                    headers=dict(self.headers.items()),
                )

            def _send(self, status: int, payload: dict[str, Any] | Stream) -> None:
                if isinstance(payload, Stream):
                    self._send_stream(status, payload)
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_stream(self, status: int, stream: Stream) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                lines = [json.dumps(event) for event in stream.events]
                for line in lines if stream.cut else [*lines, "[DONE]"]:
                    data = f"data: {line}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                if stream.cut:
                    self.close_connection = True
                else:
                    self.wfile.write(b"0\r\n\r\n")

            def do_GET(self) -> None:
                self._send(*server._respond(server.answer_get, self._received(b"")))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = self._received(raw)
                with server._lock:
                    server.request_sizes.append(len(raw))
                    server.requests.append(request)
                self._send(*server._respond(server.answer, request))

        return Handler


class ScriptedServer(ScriptedHTTPServer):
    """The OpenAI chat completions API under ``prefix`` (``/v1``): ``url`` is the base URL
    to give a client (``http://127.0.0.1:PORT/v1``).

    With ``api_key`` set, requests must carry it as a bearer token (else 401). Usage is
    estimated (4 characters a token) unless the reply overrides it; ``cost`` (if set) is
    reported as ``usage.cost``, the way OpenRouter and some proxies do.
    """

    #: The 401 message for a missing or wrong key.
    auth_failure = "Incorrect API key provided"

    def __init__(
        self,
        reply: ReplyFunction,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        prefix: str = "/v1",
        cost: float | None = None,
    ) -> None:
        super().__init__(reply, api_key=api_key, latency=latency)
        self.prefix = prefix.rstrip("/")
        self.cost = cost

    @property
    def url(self) -> str:
        return self.origin + self.prefix

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "scripted", "code": None}}

    def authenticate(self, request: Received) -> None:
        """Refuse (401) a request without the bearer key, where one is set."""
        expected = None if self.api_key is None else f"Bearer {self.api_key}"
        if expected is not None and request.headers.get("authorization") != expected:
            raise HTTPFailure(401, self.auth_failure)

    def answer_get(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.path.rstrip("/") != f"{self.prefix}/models":
            raise HTTPFailure(404, "not found")
        self.authenticate(request)
        return 200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]}

    def answer(self, request: Received) -> tuple[int, dict[str, Any] | Stream]:
        if request.path.rstrip("/") != f"{self.prefix}/chat/completions":
            raise HTTPFailure(404, f"no route {request.path}")
        self.authenticate(request)
        reply = self.play(request)
        if request.get("stream"):
            return 200, self.stream(request, reply)
        return 200, self.completion(request, reply)

    def usage(self, request: Received, reply: Reply) -> dict[str, Any]:
        """A reply's ``usage``: estimated, then the reply's overrides and the ``cost``."""
        return chat_usage(request, reply, cost=self.cost)

    def stream(self, request: Received, reply: Reply) -> Stream:
        """The ``chat.completion.chunk`` events of a streamed ``reply``: the role, the
        text a word at a time, the finish, and the usage where the request asks for it."""
        head = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model", "scripted"),
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        pieces = re.findall(r"\S+\s*|\s+", reply.text)
        if reply.cut_after is not None:
            told = [chunk({"content": p}) for p in pieces[: reply.cut_after]]
            return Stream([chunk({"role": "assistant", "content": ""}), *told], cut=True)
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": p}) for p in pieces]
        events.append(chunk({}, "stop"))
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            events.append({**head, "choices": [], "usage": self.usage(request, reply)})
        return Stream(events)

    def completion(
        self, request: Received, reply: Reply, *, model: str | None = None
    ) -> dict[str, Any]:
        """A ``chat.completion`` payload for ``reply``; ``model`` defaults to the request's."""
        return chat_completion(
            request, reply, serial=len(self.requests), model=model, cost=self.cost
        )


def chat_usage(request: Received, reply: Reply, *, cost: float | None = None) -> dict[str, Any]:
    """A reply's ``usage``: estimated (4 characters a token), then the reply's overrides
    and ``cost``, if any."""
    prompt = _tokens("".join(str(m.get("content", "")) for m in request.get("messages", [])))
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": _tokens(reply.text),
        "total_tokens": prompt + _tokens(reply.text),
        **reply.usage,
    }
    if cost is not None:
        usage["cost"] = cost
    return usage


def chat_completion(
    request: Received,
    reply: Reply,
    *,
    serial: int,
    model: str | None = None,
    cost: float | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` payload for ``reply`` (the ``serial``-th answer, in its id);
    ``model`` defaults to the request's. Any server speaking the protocol may build its
    replies with it, as :class:`ScriptedServer` does."""
    return {
        "id": f"chatcmpl-{serial}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or request.get("model", "scripted"),
        "choices": [
            {
                "index": 0,
                "message": _message(reply, serial),
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": chat_usage(request, reply, cost=cost),
    }


def _message(reply: Reply, serial: int) -> dict[str, Any]:
    """The assistant message of a ``chat.completion``, with OpenAI's ``tool_calls``."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": str(call.get("id") or f"call_{serial}_{i}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call["arguments"]
                    if isinstance(call.get("arguments"), str)
                    else json.dumps(call.get("arguments", {})),
                },
            }
            for i, call in enumerate(reply.tool_calls)
        ]
    return message
