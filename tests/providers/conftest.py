from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from recursa.testing import ScriptedHTTPServer

S = TypeVar("S", bound=ScriptedHTTPServer)


@pytest.fixture
def serve() -> Iterator[Callable[..., Any]]:
    """``serve(ServerClass, reply, **kw)`` starts a server that is closed after the test."""
    servers: list[ScriptedHTTPServer] = []

    def start(cls: type[S], reply: Any, **kw: Any) -> S:
        server = cls(reply, **kw)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture(params=["http", "sdk"])
def openai_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per OpenAI client: the lean one (the default) and the SDK
    (``RECURSA_OPENAI_CLIENT=sdk``), for models made while it runs."""
    kind = str(request.param)
    monkeypatch.setenv("RECURSA_OPENAI_CLIENT", kind)
    return kind
