"""Run cells with ``exec`` inside the host process.

**This is not a security boundary.** Model-written code runs with the host's
privileges: it can read files, the environment (API keys included) and the
network. Use it only for trusted models and contexts, where its speed matters
(no process start, no copies). The default sandbox is ``subprocess``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import threading
from typing import Any

from .base import CellResult, SandboxConfig
from .protocol import ProtocolError, decode_request
from .runtime import HostCallError, Repl

GRACE_SECONDS = 2.0


class InProcessSandbox:
    """Cells run in a worker thread so the event loop keeps serving sub-calls."""

    isolation = "none (in-process exec: not a security boundary)"

    def __init__(self) -> None:
        self._repl: Repl | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._config: SandboxConfig | None = None
        self._broken: str | None = None

    async def start(self, config: SandboxConfig) -> None:
        self._loop = asyncio.get_running_loop()
        self._config = config
        self._repl = Repl(
            config.context.value(),
            self._call_host,
            subcalls=config.subcalls,
            tools=[t.to_dict() for t in config.tools],
            max_output_chars=config.max_output_chars,
        )

    def _call_host(self, name: str, payload: dict[str, Any]) -> Any:
        assert self._loop is not None and self._config is not None
        host = self._config.host
        try:  # the same checks as a worker's calls get on the host (see WorkerLink)
            request = decode_request(name, payload)
        except ProtocolError as exc:
            raise HostCallError(str(exc)) from None

        async def call() -> Any:
            return await host(request)

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            return future.result()
        except Exception as exc:
            raise HostCallError(str(exc)) from None

    async def run(self, code: str, *, timeout: float) -> CellResult:
        if self._repl is None:
            raise RuntimeError("sandbox not started")
        if self._broken:
            return CellResult("", error=self._broken)
        repl = self._repl
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        outcome: dict[str, Any] = {}

        def target() -> None:
            # whatever the cell did (rebound ``answer``, broke the REPL), ``done`` is set:
            # a failure here must never leave the cell waiting for its whole timeout
            try:
                outcome.update(repl.run(code))
            except BaseException as exc:
                outcome["error"] = f"the REPL failed after the cell: {type(exc).__name__}: {exc}"
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(done.set)

        thread = threading.Thread(target=target, name="recursa-cell", daemon=True)
        thread.start()
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except TimeoutError:
            _interrupt(thread)
            try:
                await asyncio.wait_for(done.wait(), GRACE_SECONDS)
            except TimeoutError:
                self._broken = (
                    "the previous cell could not be interrupted; this in-process REPL is unusable"
                )
                return CellResult("", error=f"cell timed out after {timeout:g}s", timed_out=True)
            result = _as_result(outcome)
            result.timed_out = True
            result.error = f"cell interrupted: it ran longer than the {timeout:g}s cell timeout" + (
                f"\n{result.error}" if result.error else ""
            )
            return result
        return _as_result(outcome)

    async def close(self) -> None:
        self._repl = None


def _interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt inside the cell's thread (takes effect between bytecodes)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
        )


def _as_result(outcome: dict[str, Any]) -> CellResult:
    """The cell's outcome, every field of its type (as a worker's ``CellDone`` is)."""
    error, final = outcome.get("error"), outcome.get("final")
    duration = outcome.get("duration_s")
    return CellResult(
        output=_plain(outcome.get("output") or ""),
        error=None if error is None else _plain(error),
        final=None if final is None else _plain(final),
        duration_s=float(duration) if isinstance(duration, int | float) else 0.0,
    )


def _plain(value: Any) -> str:
    try:
        text = value if isinstance(value, str) else str(value)
        return text if type(text) is str else str.__str__(text)
    except Exception:
        return f"<{type(value).__name__} that could not be read as text>"
