"""A request that reaches no server says so, with the URL, at once; a server that
accepts and then says nothing is still retried, each attempt within the request
timeout. Every provider through its real SDK (OpenAI's also through the lean
client, its default), against real sockets."""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recursa.errors import ModelError
from recursa.models._http import unreachable
from recursa.models.base import BaseModel, RetryPolicy, SDKModel
from recursa.models.registry import ModelOptions
from tests.helpers import requires, run_cli

HI: list[Any] = [{"role": "user", "content": "hi"}]
RETRY = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02)


def closed_port() -> int:
    """A local port nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stalling:
    """A TCP server that accepts every connection, reads, and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def stalling() -> Iterator[Stalling]:
    server = Stalling()
    yield server
    server.close()


def _openai(url: str, timeout: float) -> BaseModel:
    from recursa.models.openai import OpenAIModel

    return OpenAIModel("x", options=_options(url + "/v1", timeout))


def _openai_sdk(url: str, timeout: float) -> BaseModel:
    from recursa.models.openai import OpenAIModel

    return OpenAIModel("x", client="sdk", options=_options(url + "/v1", timeout))


def _anthropic(url: str, timeout: float) -> BaseModel:
    from recursa.models.anthropic import AnthropicModel

    return AnthropicModel("claude-test", options=_options(url, timeout))


def _gemini(url: str, timeout: float) -> BaseModel:
    from recursa.models.gemini import GeminiModel

    return GeminiModel("gemini-2.5-flash", options=_options(url, timeout))


def _litellm(url: str, timeout: float) -> BaseModel:
    from recursa.models.litellm import LiteLLMModel

    if "litellm" not in sys.modules:  # LiteLLM fetches prices from the network unless told
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        importlib.import_module("litellm")
    return LiteLLMModel("openai/x", options=_options(url + "/v1", timeout))


def _options(url: str, timeout: float) -> ModelOptions:
    return ModelOptions(base_url=url, api_key="test-key", timeout=timeout, retry=RETRY)


PROVIDERS: list[Any] = [
    pytest.param(_openai, "/v1", id="openai"),  # the lean client, the default
    pytest.param(_openai_sdk, "/v1", id="openai-sdk"),
    pytest.param(_anthropic, "", id="anthropic", marks=requires("anthropic")),
    pytest.param(_gemini, "", id="gemini", marks=requires("google.genai")),
    pytest.param(_litellm, "/v1", id="litellm", marks=[requires("litellm"), pytest.mark.slow]),
]


@pytest.mark.parametrize(("make", "suffix"), PROVIDERS)
async def test_a_refused_connection_fails_at_once_with_the_url(
    make: Callable[[str, float], BaseModel], suffix: str
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    model = make(url, 30.0)
    async with model:
        if isinstance(model, SDKModel):
            await model._sdk()  # the SDK's import is no part of the time measured
        started = time.monotonic()
        with pytest.raises(ModelError) as info:
            await model.complete(HI)
        elapsed = time.monotonic() - started
    message = str(info.value)
    assert "connection refused" in message
    assert f"{url}{suffix}" in message
    assert message.startswith(f"{model.spec} at ")
    assert "gave up" not in message  # not retried
    assert elapsed < 3.0


@pytest.mark.parametrize(("make", "suffix"), PROVIDERS)
async def test_a_server_that_stalls_is_retried_within_the_request_timeout(
    make: Callable[[str, float], BaseModel], suffix: str, stalling: Stalling
) -> None:
    model = make(f"http://127.0.0.1:{stalling.port}", 0.3)
    async with model:
        started = time.monotonic()
        with pytest.raises(ModelError, match="gave up after 3 attempts") as info:
            await model.complete(HI)
        elapsed = time.monotonic() - started
    assert "connection refused" not in str(info.value)
    assert stalling.accepted == 3  # one connection an attempt
    assert 0.8 < elapsed < 10.0  # three timeouts of 0.3 s, not one, not endless


def test_refused_and_unresolved_are_told_from_timeouts() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")
    wrapped = RuntimeError("Connection error.")
    wrapped.__cause__ = refused
    assert unreachable(wrapped) == "connection refused"
    assert unreachable(OSError("Multiple exceptions: [Errno 111] Connect call failed")) == (
        "connection refused"
    )
    assert unreachable(socket.gaierror(socket.EAI_NONAME, "Name or service not known")) == (
        "cannot resolve host"
    )
    assert unreachable(socket.gaierror(socket.EAI_AGAIN, "Temporary failure")) is None
    assert unreachable(TimeoutError()) is None
    assert unreachable(ConnectionResetError(104, "Connection reset by peer")) is None
    assert unreachable(RuntimeError("Request timed out.")) is None


@pytest.mark.parametrize("client", ["http", "sdk"])
def test_the_cli_reports_a_refused_connection_and_exits_1(tmp_path: Any, client: str) -> None:
    context = tmp_path / "some.txt"
    context.write_text("some context")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    env = {**os.environ, "OPENAI_API_KEY": "test-key", "RECURSA_OPENAI_CLIENT": client}
    started = time.monotonic()
    done = run_cli(["run", "q", "-c", str(context), "--model", "openai/x", "--base-url", url], env)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert f"recursa: error: openai/x at {url}: connection refused" in done.stderr
    assert elapsed < 30.0  # the process starts and imports; the request itself is at once
