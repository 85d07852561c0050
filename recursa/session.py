"""Persistent sessions: many queries over one REPL, its variables kept between them.

The history is compacted (summarised by the model) when it nears the model's
window. Use it as a context manager, or call :meth:`Session.close`. A session
is used either synchronously or asynchronously, not both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .context import Context, ContextInput
from .engine import Node
from .errors import ConfigError
from .guards import LoopThread, check_query, loop_running, run_blocking
from .notebook import cell_progress

if TYPE_CHECKING:
    from .result import Result
    from .rlm import RLM
    from .trace import Sink

T = TypeVar("T")


class Session:
    """``rlm.session(context)``: ask follow-up questions over the same REPL."""

    def __init__(self, rlm: RLM, context: ContextInput) -> None:
        self.rlm = rlm
        self.context = context if isinstance(context, Context) else Context(context)
        self._node: Node | None = None
        self._runner: asyncio.Runner | None = None
        self._thread: LoopThread | None = None  # inside a running loop (a notebook)
        self._closed = False
        self.results: list[Result] = []

    async def acompletion(
        self,
        query: str,
        *,
        output_type: Any = None,
        sinks: Sequence[Sink] = (),
        progress: bool = True,
    ) -> Result:
        """Ask ``query`` over the session's REPL. In a Jupyter kernel the cell shows the
        question's live progress (:mod:`recursa.notebook`) unless ``progress=False``."""
        if self._closed:
            raise ConfigError("this session is closed")
        check_query(query)
        with cell_progress(progress) as shown:
            return await self._ask(query, output_type, [*sinks, *shown])

    async def _ask(self, query: str, output_type: Any, sinks: Sequence[Sink]) -> Result:
        run = self.rlm.new_run(sinks)
        if self._node is None:
            self._node = Node.root(run, query, self.context)
        node = self._node
        node.attach(run)  # each query is its own run: trace, ledger
        output = None
        if output_type is not None:
            from .output import OutputSpec  # imports pydantic: only for typed answers

            output = OutputSpec(output_type)
        asked = len(node.messages)
        try:
            result = await run.execute(node, lambda: node.ask(query, output))
        except asyncio.CancelledError:
            # a cancelled question (Ctrl-C in `recursa chat`) leaves no half-turn behind:
            # the next question continues the conversation as it was, variables kept
            node.rewind(asked)
            raise
        self.results.append(result)
        return result

    async def avariables(self) -> dict[str, str]:
        """The REPL's variables and their types and sizes (``SHOW_VARS()``); empty before
        the first question started the REPL."""
        node = self._node
        if node is None or not node.started:
            return {}
        sandbox = await node.open()
        shown = await sandbox.run("print(__import__('json').dumps(SHOW_VARS()))\n", timeout=10)
        try:
            found = json.loads(shown.output) if shown.error is None else {}
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    def variables(self) -> dict[str, str]:
        """Blocking :meth:`avariables`."""
        return self._blocking(self.avariables())

    def completion(
        self,
        query: str,
        *,
        output_type: Any = None,
        sinks: Sequence[Sink] = (),
        progress: bool = True,
    ) -> Result:
        """Blocking variant; the session keeps one event loop for its sandbox (inside a
        running loop, as in a notebook, a private one on a worker thread)."""
        asked = self.acompletion(query, output_type=output_type, sinks=sinks, progress=progress)
        return self._blocking(asked)

    def _blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the session's own loop (its sandbox lives there)."""
        if self._thread is None and self._runner is None:
            if loop_running():
                self._thread = LoopThread("recursa-session")
            else:
                self._runner = asyncio.Runner()
        if self._thread is not None:
            return self._thread.run(coro)
        assert self._runner is not None
        return self._runner.run(coro)

    async def aclose(self) -> None:
        self._closed = True
        node, self._node = self._node, None
        if node is not None:
            await node.close()
        self.context.cleanup()

    def close(self) -> None:
        if self._thread is not None:
            thread, self._thread = self._thread, None
            try:
                thread.run(self.aclose())
            finally:
                thread.close()
        elif self._runner is not None:
            self._runner.run(self.aclose())
            self._runner.close()
            self._runner = None
        elif not self._closed:
            run_blocking(self.aclose())

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
