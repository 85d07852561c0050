"""Choosing a sandbox: the ``recursa.sandboxes`` entry points, and third-party factories."""

from __future__ import annotations

import asyncio
import functools
from importlib.metadata import EntryPoint, EntryPoints
from typing import Any

import pytest

import recursa.repl as repl_registry
from recursa import plugins
from recursa.context import Context
from recursa.errors import ConfigError
from recursa.repl import (
    ENTRY_POINT_GROUP,
    Sandbox,
    SandboxConfig,
    make_sandbox,
    sandbox_factory,
    sandbox_names,
)
from recursa.repl.base import CellResult
from recursa.repl.inprocess import InProcessSandbox
from recursa.repl.protocol import LlmQuery, ProtocolError, decode_request
from recursa.repl.runtime import HostCallError, Repl
from recursa.repl.subprocess import SubprocessSandbox

from .sandboxes import BACKENDS, TOOLS, FakeHost


class ThreadSandbox:
    """A third-party backend, written as the ``recursa.repl`` docstring says: the runtime's
    Repl, its calls checked by decode_request, cells in a thread. No timeouts: a toy."""

    isolation = "none (a test backend)"

    def __init__(self, label: str = "thread") -> None:
        self.label = label
        self._repl: Repl | None = None

    async def start(self, config: SandboxConfig) -> None:
        loop = asyncio.get_running_loop()

        def call_host(name: str, payload: dict[str, Any]) -> Any:
            try:
                request = decode_request(name, payload)
            except ProtocolError as exc:
                raise HostCallError(str(exc)) from None
            future = asyncio.run_coroutine_threadsafe(config.host(request), loop)
            try:
                return future.result()
            except Exception as exc:
                raise HostCallError(str(exc)) from None

        self._repl = Repl(
            config.context.value(), call_host, tools=[t.to_dict() for t in config.tools]
        )

    async def run(self, code: str, *, timeout: float) -> CellResult:
        assert self._repl is not None
        out = await asyncio.to_thread(self._repl.run, code)
        return CellResult(out["output"], out["error"], out["final"], out["duration_s"])

    async def close(self) -> None:
        self._repl = None


def test_the_built_ins_are_registered_by_entry_point() -> None:
    assert {"subprocess", "inprocess", "docker"} <= set(sandbox_names())
    assert sandbox_names() == sorted(sandbox_names())
    assert set(BACKENDS) == set(sandbox_names())  # the contract suite covers them all
    assert sandbox_factory("subprocess") is SubprocessSandbox
    assert sandbox_factory("inprocess") is InProcessSandbox
    assert isinstance(make_sandbox("inprocess"), InProcessSandbox)


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        make_sandbox("vm")
    message = str(info.value)
    assert message.startswith("unknown sandbox 'vm' (choose one of: ")
    for name in ("docker", "inprocess", "subprocess"):
        assert name in message


def test_what_is_not_a_sandbox_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="a name or a zero-argument factory"):
        make_sandbox(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not a Sandbox"):
        make_sandbox(object)  # type: ignore[arg-type]


async def check(sandbox: Sandbox) -> None:
    host = FakeHost()
    ctx = Context("a third-party context")
    try:
        await sandbox.start(SandboxConfig(context=ctx, host=host, tools=TOOLS))
        assert (await sandbox.run("x = len(context)", timeout=5)).error is None
        result = await sandbox.run("print(x, llm_query('hi'), add(1, 2))", timeout=5)
        assert (result.output, result.error) == ("21 echo:hi 3\n", None)
        result = await sandbox.run("llm_query('x', model=3)", timeout=5)
        assert result.error is not None and "'model' must be str, not int" in result.error
        assert (await sandbox.run("FINAL('done')", timeout=5)).final == "done"
        assert host.requests[0] == LlmQuery("hi")  # the ill-typed call never reached it
    finally:
        await sandbox.close()
        ctx.cleanup()


async def test_a_third_party_factory_works_with_make_sandbox() -> None:
    sandbox = make_sandbox(ThreadSandbox)
    assert isinstance(sandbox, ThreadSandbox)
    await check(sandbox)
    configured = make_sandbox(functools.partial(ThreadSandbox, label="custom"))
    assert isinstance(configured, ThreadSandbox) and configured.label == "custom"
    await check(configured)
    await check(make_sandbox(lambda: ThreadSandbox()))


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, *extra: EntryPoint) -> None:
    # entry points are read once per process: this test sees the real ones plus ``extra``
    real = plugins._scan()
    groups = {repl_registry.ENTRY_POINT_GROUP, "recursa.providers", *(ep.group for ep in extra)}
    scanned = EntryPoints([*(ep for g in groups for ep in real.select(group=g)), *extra])
    monkeypatch.setattr(plugins, "_scan", lambda: scanned)


async def test_a_third_party_entry_point_is_a_name_like_the_built_ins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _with_entry_points(
        monkeypatch, EntryPoint("thread", f"{__name__}:ThreadSandbox", ENTRY_POINT_GROUP)
    )
    assert "thread" in sandbox_names()
    assert sandbox_factory("thread") is ThreadSandbox
    await check(make_sandbox("thread"))


def test_an_entry_point_that_cannot_load_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _with_entry_points(
        monkeypatch,
        EntryPoint("gone", "no_such_package.sandbox:Sandbox", ENTRY_POINT_GROUP),
        EntryPoint("typo", f"{__name__}:NoSuchClass", ENTRY_POINT_GROUP),
    )
    with pytest.raises(ConfigError, match="sandbox 'gone' cannot be loaded"):
        make_sandbox("gone")
    with pytest.raises(ConfigError, match="sandbox 'typo' cannot be loaded"):
        make_sandbox("typo")
