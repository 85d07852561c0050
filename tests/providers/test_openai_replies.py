"""OpenAIModel reads the reply body itself (either client hands it the bytes): every
shape an OpenAI-compatible server sends, over real HTTP, and the ones that are not a
completion, which are retried and then reported; error statuses, ``Retry-After``, and
the request itself, byte for byte the same from the lean client and from the SDK.
Every test runs through both clients."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest

from recursa.errors import (
    AuthenticationError,
    ConfigError,
    ContextWindowError,
    ModelError,
    ModelNotFoundError,
)
from recursa.models.base import TransientError
from recursa.models.openai import OpenAIModel
from recursa.models.openai_http import ChatClient, env_proxy
from recursa.sampling import Sampling
from tests.providers.servers import options

HI: list[Any] = [{"role": "user", "content": "hi there, model"}]

pytestmark = pytest.mark.usefixtures("openai_client")  # the lean client and the SDK

#: A reply: a body (status 200), or (status, headers, body).
Answer = bytes | tuple[int, dict[str, str], bytes]


class RawServer:
    """Answers ``POST /v1/chat/completions`` with the given answers in turn (the last
    one from then on), keeping each request's path, headers and raw body."""

    def __init__(self, bodies: list[Answer]) -> None:
        self.bodies = list(bodies)
        self.requests = 0
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.received.append((self.path, headers, raw))
                owner.requests += 1
                answer = owner.bodies.pop(0) if len(owner.bodies) > 1 else owner.bodies[0]
                status, extra, body = (200, {}, answer) if isinstance(answer, bytes) else answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in extra.items():
                    self.send_header(name, value)
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

    def start(*bodies: Answer | dict[str, Any]) -> RawServer:
        encoded = [b if isinstance(b, bytes | tuple) else json.dumps(b).encode() for b in bodies]
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


def failure(status: int, body: bytes | dict[str, Any], **headers: str) -> Answer:
    encoded = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (status, {k.replace("_", "-"): v for k, v in headers.items()}, encoded)


async def attempt(server: RawServer, model_name: str = "gpt-4o-mini") -> Any:
    """One request, without recursa's retries: what the backend raised."""
    async with OpenAIModel(model_name, options=options(server.url)) as model:
        return await model._request(HI, None, Sampling())


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry_After": "7"}, 7.0), ({"retry_after_ms": "1500"}, 1.5), ({}, None)],
)
async def test_429_and_5xx_are_transient_with_the_servers_retry_hint(
    raw: Any, headers: dict[str, str], seconds: float | None
) -> None:
    for status in (429, 503):
        body = {"error": {"message": "slow down"}}
        with pytest.raises(TransientError) as info:
            await attempt(raw(failure(status, body, **headers)))
        assert (info.value.status, info.value.retry_after) == (status, seconds)
        assert str(info.value) == f"HTTP {status}: slow down"


async def test_retry_after_is_waited_for(raw: Any) -> None:
    server = raw(
        failure(429, {"error": {"message": "later"}}, Retry_After="0.3"),
        completion("done", {"prompt_tokens": 1}),
    )
    model = OpenAIModel("m", options=options(server.url))
    model.retry = type(model.retry)(max_retries=2, base_delay=0.001, max_delay=5.0)
    started = time.monotonic()
    async with model:
        assert (await model.complete(HI)).text == "done"
    assert 0.3 <= time.monotonic() - started < 3.0
    assert server.requests == 2


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (401, {"error": {"message": "Incorrect API\nkey"}}, AuthenticationError,
         "authentication failed (401): Incorrect API key"),
        (403, {"error": "forbidden here"}, AuthenticationError,
         "authentication failed (403): forbidden here"),
        (404, {"detail": "no model"}, ModelNotFoundError,
         """model not found (404): Error code: 404 - {"detail": "no model"}"""),
        (400, {"error": {"message": "This model's maximum context length is 8192 tokens"}},
         ContextWindowError, "maximum context length is 8192"),
        (422, b"<html>bad request</html>", ModelError, "HTTP 422: Error code: 422 - <html>bad request</html>"),
    ],
)  # fmt: skip
async def test_permanent_statuses_are_one_line_errors_with_the_providers_message(
    raw: Any, status: int, body: bytes | dict[str, Any], kind: type[Exception], message: str
) -> None:
    server = raw(failure(status, body))
    with pytest.raises(kind) as info:
        await ask(server)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith(f"openai/gpt-4o-mini at {server.url}: ")
    assert server.requests == 1  # not retried
    assert getattr(info.value, "status", None) == status


async def test_a_404_off_v1_hints_at_the_base_url(raw: Any) -> None:
    server = raw(failure(404, {"error": {"message": "nope"}}))
    async with OpenAIModel("m", options=options(server.url[: -len("/v1")])) as model:
        with pytest.raises(ModelNotFoundError, match="want the base URL to end in /v1"):
            await model.complete(HI)


async def test_both_clients_send_the_same_request(
    raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same body byte for byte (one builder, the SDK's JSON encoding), the same
    path, the key as a bearer token, JSON in and out, and OpenAI's organisation and
    project headers from the environment, as the SDK reads them."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-1")
    messages: list[Any] = [
        {"role": "system", "content": 'Sé breve. 日本語 \u2028 "quoted"'},
        {"role": "user", "content": [{"type": "text", "text": "part"}]},
    ]
    sampling = Sampling(temperature=0.5, top_p=0.9, seed=3, max_tokens=40, reasoning_effort="low")
    server = raw(completion("ok", {"prompt_tokens": 1}))
    for kind in ("http", "sdk"):
        model = OpenAIModel("gpt-4o-mini", client=kind, options=options(server.url, api_key="k"))
        async with model:
            await model.complete(messages, sampling=sampling)
    (path_a, headers_a, body_a), (path_b, headers_b, body_b) = server.received
    assert body_a == body_b
    assert json.loads(body_a) == {
        "model": "gpt-4o-mini",
        "messages": messages,
        "max_tokens": 40,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 3,
        "reasoning_effort": "low",
    }
    assert path_a == path_b == "/v1/chat/completions"
    for name, value in {
        "authorization": "Bearer k",
        "content-type": "application/json",
        "accept": "application/json",
        "openai-organization": "org-1",
        "openai-project": "proj-1",
    }.items():
        assert headers_a[name] == headers_b[name] == value, name


async def test_the_client_is_chosen_by_argument_or_environment_and_closed(
    raw: Any, openai_client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = raw(completion("ok", {"prompt_tokens": 1}))
    model = OpenAIModel("m", options=options(server.url))
    assert model.client == openai_client  # from RECURSA_OPENAI_CLIENT
    async with model:
        await model.complete(HI)
        client = model._client
        assert isinstance(client, ChatClient) == (openai_client == "http")
    assert model._client is None  # closed with the run
    if isinstance(client, ChatClient):
        assert client._session is None
    assert OpenAIModel("m", client="sdk", options=options(server.url)).client == "sdk"
    monkeypatch.setenv("RECURSA_OPENAI_CLIENT", "requests")
    with pytest.raises(
        ConfigError, match="RECURSA_OPENAI_CLIENT='requests' is not one of http, sdk"
    ):
        OpenAIModel("m", options=options(server.url))


async def test_both_clients_go_through_the_environments_proxy(
    raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY and NO_PROXY: the SDK's httpx reads them, the lean client looks
    them up once for its base URL (not per request)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = raw(completion("via proxy", {"prompt_tokens": 1}))
    monkeypatch.setenv("HTTP_PROXY", proxy.url[: -len("/v1")])
    monkeypatch.setenv("http_proxy", proxy.url[: -len("/v1")])
    model = OpenAIModel("m", options=options("http://upstream.test/v1"))
    async with model:
        assert (await model.complete(HI)).text == "via proxy"
    assert proxy.received[0][0] == "http://upstream.test/v1/chat/completions"
    assert env_proxy("https://api.openai.com/v1") is None  # no HTTPS_PROXY
    monkeypatch.setenv("no_proxy", "upstream.test")
    monkeypatch.setenv("NO_PROXY", "upstream.test")
    assert env_proxy("http://upstream.test/v1") is None
