from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests.providers.servers import ProviderServer

S = TypeVar("S", bound=ProviderServer)


@pytest.fixture
def serve() -> Iterator[Callable[..., Any]]:
    """``serve(ServerClass, reply, **kw)`` starts a server that is closed after the test."""
    servers: list[ProviderServer] = []

    def start(cls: type[S], reply: Any, **kw: Any) -> S:
        server = cls(reply, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
