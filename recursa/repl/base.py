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

if TYPE_CHECKING:
    from ..context import Context

#: Serves a REPL's call to the host: ``name`` is "llm_query", "llm_batch", "rlm_query",
#: "rlm_batch", "budget" or "tool"; the payload and the result are JSON values.
#: Raising an exception makes the REPL raise ``HostCallError`` with its message.
HostCallback = Callable[[str, dict[str, Any]], Awaitable[Any]]


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
