"""Building sandboxes by name for the tests, with a fake host behind their sub-calls."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from recursa.context import Context, ContextInput
from recursa.repl.base import Sandbox, SandboxConfig, ToolSpec
from recursa.repl.docker import DockerSandbox, docker_available
from recursa.repl.inprocess import InProcessSandbox
from recursa.repl.subprocess import SubprocessSandbox

BACKENDS = ("inprocess", "subprocess", "docker")


class FakeHost:
    """Answers REPL calls like a tiny model: llm_query echoes; "fail" prompts fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, payload: dict[str, Any]) -> Any:
        self.calls.append((name, payload))
        if name == "llm_query":
            await asyncio.sleep(0)
            if payload["prompt"] == "fail":
                raise RuntimeError("the model refused")
            return "echo:" + payload["prompt"]
        if name == "llm_batch":
            return [
                {"error": "the model refused"} if p == "fail" else "echo:" + p
                for p in payload["prompts"]
            ]
        if name == "tool" and payload["name"] == "add":
            return sum(payload["args"])
        if name == "budget":
            return {"usd": 1.0, "calls": 10}
        raise RuntimeError(f"unknown call {name}")


TOOLS = (ToolSpec("add", "(*numbers)", "Add numbers."),)


def build(name: str, **options: Any) -> Sandbox:
    """A sandbox by name, as ``recursa.repl.make_sandbox`` will build it."""
    if name == "inprocess":
        return InProcessSandbox()
    if name == "subprocess":
        return SubprocessSandbox(**options)
    if name == "docker":
        if not docker_available():
            pytest.skip("no Docker daemon answers `docker info`")
        return DockerSandbox(**options)
    raise ValueError(name)


@contextlib.asynccontextmanager
async def started(
    name: str,
    context: ContextInput = "a short context",
    *,
    host: Any = None,
    tools: Sequence[ToolSpec] = TOOLS,
    max_output_chars: int = 20_000,
    **options: Any,
) -> AsyncIterator[Sandbox]:
    sandbox = build(name, **options)
    ctx = Context(context)
    config = SandboxConfig(
        context=ctx,
        host=host or FakeHost(),
        tools=tools,
        max_output_chars=max_output_chars,
    )
    try:
        await sandbox.start(config)
        yield sandbox
    finally:
        await sandbox.close()
        ctx.cleanup()


def child_pids() -> set[int]:
    """Live (or zombie) children of this test process, from /proc."""
    me = os.getpid()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me:
            found.add(int(entry))
    return found
