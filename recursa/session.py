"""Persistent sessions: many queries over one REPL, its variables kept between them.

The history is compacted (summarised by the model) when it nears the model's
window. Use it as a context manager, or call :meth:`Session.close`. A session
is used either synchronously or asynchronously, not both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .context import Context, ContextInput
from .engine import Node
from .errors import ConfigError
from .guards import check_query, no_running_loop

if TYPE_CHECKING:
    from .result import Result
    from .rlm import RLM
    from .trace import Sink


class Session:
    """``rlm.session(context)``: ask follow-up questions over the same REPL."""

    def __init__(self, rlm: RLM, context: ContextInput) -> None:
        self.rlm = rlm
        self.context = context if isinstance(context, Context) else Context(context)
        self._node: Node | None = None
        self._runner: asyncio.Runner | None = None
        self._closed = False
        self.results: list[Result] = []

    async def acompletion(
        self, query: str, *, output_type: Any = None, sinks: Sequence[Sink] = ()
    ) -> Result:
        if self._closed:
            raise ConfigError("this session is closed")
        check_query(query)
        run = self.rlm.new_run(sinks)
        if self._node is None:
            self._node = Node.root(run, query, self.context)
        node = self._node
        node.attach(run)  # each query is its own run: trace, ledger
        output = None
        if output_type is not None:
            from .output import OutputSpec  # imports pydantic: only for typed answers

            output = OutputSpec(output_type)
        result = await run.execute(node, lambda: node.ask(query, output))
        self.results.append(result)
        return result

    def completion(
        self, query: str, *, output_type: Any = None, sinks: Sequence[Sink] = ()
    ) -> Result:
        """Blocking variant; the session keeps one event loop for its sandbox."""
        no_running_loop("Session.completion")
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(self.acompletion(query, output_type=output_type, sinks=sinks))

    async def aclose(self) -> None:
        self._closed = True
        node, self._node = self._node, None
        if node is not None:
            await node.close()
        self.context.cleanup()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self.aclose())
            self._runner.close()
            self._runner = None
        elif not self._closed:
            asyncio.run(self.aclose())

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
