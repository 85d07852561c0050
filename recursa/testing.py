"""A real OpenAI-compatible HTTP server that plays scripted replies, for tests and benchmarks.

It speaks ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1,
so the real client code path (SDK, HTTP, retries) is exercised::

    def reply(request: dict) -> str:
        if request["messages"][0]["role"] == "system":   # a root turn
            return "```repl\\nFINAL('done')\\n```"
        return "sub-call answer"

    with ScriptedServer(reply) as server:
        RLM("openai/any", base_url=server.url).completion("q", context="...")
        server.requests  # every request body received
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class HTTPFailure(Exception):
    """Raise from a reply function to answer with an HTTP error status."""

    def __init__(self, status: int, message: str = "scripted failure") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


ReplyFunction = Callable[[dict[str, Any]], str]


class _Server(ThreadingHTTPServer):
    # Fan-out tests open hundreds of connections at once: keep them all in the backlog.
    request_queue_size = 1024


class ScriptedServer:
    """A threaded local server; ``latency`` seconds are added to every completion."""

    def __init__(self, reply: ReplyFunction, *, latency: float = 0.0) -> None:
        self.reply = reply
        self.latency = latency
        self.requests: list[dict[str, Any]] = []
        self.request_sizes: list[int] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _complete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            try:
                text = self.reply(body)
            except HTTPFailure as failure:
                return failure.status, {
                    "error": {"message": failure.message, "type": "scripted", "code": None}
                }
        finally:
            with self._lock:
                self._in_flight -= 1
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": max(1, prompt_chars // 4),
                "completion_tokens": max(1, len(text) // 4),
                "total_tokens": max(1, prompt_chars // 4) + max(1, len(text) // 4),
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms wait

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with server._lock:
                    server.request_sizes.append(len(raw))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                status, payload = server._complete(json.loads(raw))
                self._send(status, payload)

        return Handler
