"""Checks every entry point of a completion makes before any work starts."""

from __future__ import annotations

import asyncio

from .errors import ConfigError


def no_running_loop(name: str) -> None:
    """Refuse a blocking call made inside a running event loop (it would deadlock)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigError(f"{name}() was called inside an event loop: use the async variant")


def check_query(query: str) -> None:
    """A query must say something."""
    if not query or not query.strip():
        raise ConfigError("the query is empty")
