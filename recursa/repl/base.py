"""The sandbox contract: where model-written code runs.

A sandbox holds one persistent REPL (see :mod:`recursa.repl.runtime`). The host
starts it with the context and the names the model may use, runs cells in it,
and serves the calls the REPL makes back (sub-calls, tools) through one async
callback. Every backend states honestly how isolated it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .protocol import HostRequest

if TYPE_CHECKING:
    from ..context import Context

#: Serves one call the REPL makes to the host, already decoded and checked by
#: :func:`recursa.repl.protocol.decode_request` (every backend does it, so the callback
#: only ever sees well-typed requests; one that does not decode never reaches it: the
#: REPL gets a ``HostCallError`` saying why). The request is one of
#: (:mod:`recursa.repl.protocol`):
#:
#: ``LlmQuery(prompt, model, images, group)``
#:     ``llm_query(...)``: one plain model call; returns its text. ``group`` is set for
#:     the sub-calls of ``llm_batch(..., stop_when=...)``, which a ``Cancel`` may end.
#: ``LlmBatch(prompts, model)``
#:     ``llm_batch(prompts)``: concurrent calls; returns a list in prompt order, a failed
#:     item as ``{"error": message}``.
#: ``RlmQuery(prompt, context, budget, model)``
#:     ``rlm_query(...)``: a child RLM one level deeper, with its own optional cap
#:     (``BudgetLimits``) and model; returns its answer.
#: ``RlmBatch(prompts, contexts, model)``
#:     ``rlm_batch(...)`` / ``rlm_query_batched(...)``: children, concurrently; a list
#:     like ``LlmBatch``'s.
#: ``Cancel(group)``
#:     ``stop_when`` was met: end the ``LlmQuery`` calls of ``group`` still in flight
#:     (they fail with a "cancelled" error); returns None.
#: ``BudgetQuery()``
#:     ``BUDGET()``: what is left of each limit, a dict of JSON numbers (None: unlimited).
#: ``ToolCall(tool, args, kwargs)``
#:     a host tool (``SandboxConfig.tools``); returns its result.
#: ``Cite(citations)``
#:     ``cite(...)`` / ``FINAL(..., cite=[...])``: evidence for the node's answer, checked by
#:     the host against its context; returns ``{verified, reason, start, end, source}`` each.
#:
#: The result must be a JSON value. Raising an exception makes the REPL raise
#: ``HostCallError`` with its message. A call whose cell is interrupted is cancelled.
HostCallback = Callable[[HostRequest], Awaitable[Any]]


@dataclass(frozen=True)
class ToolSpec:
    """A host function shown in the REPL under ``name``."""

    name: str
    signature: str = "(*args, **kwargs)"
    doc: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "signature": self.signature, "doc": self.doc}


@dataclass(frozen=True)
class SandboxConfig:
    """What a REPL needs to start."""

    context: Context
    host: HostCallback
    subcalls: bool = True
    tools: Sequence[ToolSpec] = ()
    max_output_chars: int = 20_000


@dataclass
class CellResult:
    """The outcome of one cell, as the model will be told it."""

    output: str
    error: str | None = None
    final: str | None = None
    duration_s: float = 0.0
    timed_out: bool = False
    restarted: bool = False  # the worker was replaced: variables were lost
    notes: list[str] = field(default_factory=list)


class Sandbox(Protocol):
    """Runs cells of one REPL. ``isolation`` names the level actually in force."""

    @property
    def isolation(self) -> str: ...

    async def start(self, config: SandboxConfig) -> None: ...

    async def run(self, code: str, *, timeout: float) -> CellResult: ...

    async def close(self) -> None: ...
