"""Scripting helpers shared by the tests: route requests to root turns or sub-calls."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from recursa.models.base import Message, installed


def is_root_turn(messages: Sequence[Any]) -> bool:
    return bool(messages) and messages[0]["role"] == "system"


def turn_index(messages: Sequence[Any]) -> int:
    """0 for a node's first turn, 1 for its second, ..."""
    return sum(1 for m in messages if m["role"] == "assistant")


def node_query(messages: Sequence[Any]) -> str:
    return str(messages[1]["content"]) if len(messages) > 1 else ""


def router(
    root: Sequence[str] | dict[str, Sequence[str]],
    sub: Callable[[str], str] = lambda prompt: f"sub:{prompt[:40]}",
) -> Callable[[list[Message]], str]:
    """A reply function for ScriptedModel: root turns play ``root`` by turn index
    (``root`` may map a substring of a node's query to its own replies);
    single-message requests are sub-calls answered by ``sub(prompt)``."""

    def reply(messages: list[Message]) -> str:
        if not is_root_turn(messages):
            return sub(str(messages[-1]["content"]))
        replies = root
        if isinstance(root, dict):
            query = node_query(messages)
            replies = next(v for k, v in root.items() if k in query)
        i = turn_index(messages)
        assert isinstance(replies, Sequence)
        return replies[min(i, len(replies) - 1)]

    return reply


def http_router(
    root: Sequence[str] | dict[str, Sequence[str]],
    sub: Callable[[str], str] = lambda prompt: f"sub:{prompt[:40]}",
) -> Callable[[dict[str, Any]], str]:
    """The same, for a ScriptedServer (it receives the request body)."""
    inner = router(root, sub)
    return lambda body: inner(body["messages"])


def run_cli(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m recursa ARGS`` as a real process, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "recursa", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
    )


def requires(*modules: str) -> pytest.MarkDecorator:
    """Skip where an optional package is not installed (``pip install -e ".[dev]"`` alone):
    CI and the README's test command install them all, so there these tests run."""
    missing = [m for m in modules if not installed(m)]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")
