"""Building sandboxes by name (from the registry) for the tests, with a fake host behind
their sub-calls."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from recursa.context import Context, ContextSource
from recursa.repl import make_sandbox, sandbox_factory, sandbox_names
from recursa.repl.base import Sandbox, SandboxConfig, ToolSpec
from recursa.repl.docker import docker_available
from recursa.repl.protocol import (
    BudgetQuery,
    HostRequest,
    LlmBatch,
    LlmQuery,
    ToolCall,
    encode_request,
)

#: Every registered sandbox (the ``recursa.sandboxes`` entry points).
BACKENDS = tuple(sandbox_names())


class FakeHost:
    """Answers REPL calls like a tiny model: llm_query echoes; "fail" prompts fail.

    ``requests`` holds the typed requests; ``calls`` the same as (name, payload) pairs.
    """

    def __init__(self) -> None:
        self.requests: list[HostRequest] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, request: HostRequest) -> Any:
        self.requests.append(request)
        self.calls.append(encode_request(request))
        match request:
            case LlmQuery(prompt="fail"):
                await asyncio.sleep(0)
                raise RuntimeError("the model refused")
            case LlmQuery(prompt=prompt):
                await asyncio.sleep(0)
                return "echo:" + prompt
            case LlmBatch(prompts=prompts):
                return [{"error": "the model refused"} if p == "fail" else "echo:" + p
                        for p in prompts]  # fmt: skip
            case ToolCall(tool="add", args=args):
                return sum(args)
            case BudgetQuery():
                return {"usd": 1.0, "calls": 10}
        raise RuntimeError(f"unknown call {request.name}")


TOOLS = (ToolSpec("add", "(*numbers)", "Add numbers."),)


def build(name: str, **options: Any) -> Sandbox:
    """A registered sandbox by name, built as ``recursa.repl.make_sandbox`` builds it
    (``options`` go to its factory). Docker skips where no daemon answers."""
    if name == "docker" and not docker_available():
        pytest.skip("no Docker daemon answers `docker info`")
    factory = sandbox_factory(name)
    return make_sandbox(lambda: factory(**options))


@contextlib.asynccontextmanager
async def started(
    name: str,
    context: ContextSource = "a short context",
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


_buildable: dict[str, str | None] = {}


async def skip_unless_buildable(level: str) -> None:
    """Skip unless the subprocess sandbox can build isolation ``level`` on this machine
    (tried once per level and test process)."""
    if level not in _buildable:
        try:
            async with started("subprocess", isolation=level):
                _buildable[level] = None
        except Exception as exc:
            _buildable[level] = str(exc)
    if _buildable[level] is not None:
        pytest.skip(f"{level} cannot be built here: {_buildable[level]}")
