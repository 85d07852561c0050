"""OpenAIModel reads the reply body itself (the SDK hands it the bytes): every shape
an OpenAI-compatible server sends, over real HTTP, and the ones that are not a
completion, which are retried and then reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest

from recursa.errors import ModelError
from recursa.models.openai import OpenAIModel
from tests.providers.servers import options

HI: list[Any] = [{"role": "user", "content": "hi there, model"}]


class RawServer:
    """Answers ``POST /v1/chat/completions`` with the given bodies in turn (status 200)."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = list(bodies)
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.requests += 1
                body = owner.bodies.pop(0) if len(owner.bodies) > 1 else owner.bodies[0]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def raw() -> Iterator[Any]:
    servers: list[RawServer] = []

    def start(*bodies: bytes | dict[str, Any]) -> RawServer:
        encoded = [b if isinstance(b, bytes) else json.dumps(b).encode() for b in bodies]
        servers.append(RawServer(encoded))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def completion(content: Any, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


async def ask(server: RawServer, model_name: str = "gpt-4o-mini") -> Any:
    async with OpenAIModel(model_name, options=options(server.url)) as model:
        return await model.complete(HI)


async def test_usage_with_cached_tokens_is_priced(raw: Any) -> None:
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 1500},
    }
    c = await ask(raw(completion("hello", usage)))
    assert (c.text, c.input_tokens, c.output_tokens, c.cached_tokens) == ("hello", 2000, 100, 1500)
    assert c.cost_usd is not None and c.cost_usd > 0


async def test_reported_cost_wins_over_the_price_table(raw: Any) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "cost": 0.25}
    assert (await ask(raw(completion("x", usage)))).cost_usd == 0.25


async def test_no_usage_is_estimated_from_the_text(raw: Any) -> None:
    c = await ask(raw(completion("four score and seven")))
    assert (c.input_tokens, c.output_tokens) == (4, 5)  # 15 and 20 characters, 4 a token


async def test_null_and_part_list_content(raw: Any) -> None:
    assert (await ask(raw(completion(None, {"prompt_tokens": 1})))).text == ""
    parts = [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]
    assert (await ask(raw(completion(parts, {"prompt_tokens": 1})))).text == "one two"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"[1, 2]", "not a chat completion"),
        ({"choices": []}, "no choices"),
        ({"error": {"message": "upstream overloaded"}}, "upstream overloaded"),
    ],
)
async def test_a_body_that_is_not_a_completion_is_retried_then_reported(
    raw: Any, body: bytes | dict[str, Any], message: str
) -> None:
    server = raw(body)
    with pytest.raises(ModelError, match=message) as caught:
        await ask(server)
    assert "gave up after 4 attempts" in str(caught.value)
    assert server.requests == 4  # FAST_RETRY: 3 retries


async def test_a_bad_body_then_a_good_one_succeeds(raw: Any) -> None:
    server = raw(b"not json", completion("recovered", {"prompt_tokens": 3}))
    assert (await ask(server)).text == "recovered"
    assert server.requests == 2
