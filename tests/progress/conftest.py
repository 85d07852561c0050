from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recursa.testing import ScriptedServer


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start scripted local OpenAI-compatible servers; all are closed after the test."""
    servers: list[ScriptedServer] = []

    def make(reply: Any, **kw: Any) -> ScriptedServer:
        server = ScriptedServer(reply, **kw).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
