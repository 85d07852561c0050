"""The state of one completion, and the one metered path every model request takes.

A :class:`Run` is shared by every node of the recursion tree: the frozen
:class:`~recursa.settings.Settings`, the :class:`~recursa.models.source.ModelSource`
it was handed, the :class:`~recursa.budget.Ledger`, the tracer, the per-model
concurrency limits and the connections held open until the run ends.
:meth:`Run.call_model` is the only place a model is asked anything, at any
depth: budget checks, the semaphore, accounting and the ``model_call`` event
live there once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..budget import Ledger, Usage
from ..errors import RecursaError
from ..models import pricing
from ..models.base import Message, Model, estimate_tokens, message_text
from ..models.source import ModelSource
from ..result import NO_SANDBOX, Result, Stopped
from ..settings import Settings
from ..tools import ToolSet
from ..trace import (
    ContextShape,
    JsonlSink,
    ModelCall,
    ModelInfo,
    RunEnd,
    RunStart,
    Sink,
    TracedMessage,
    Tracer,
)

if TYPE_CHECKING:
    from .node import Node

Purpose = Literal["turn", "sub"]


@dataclass
class Outcome:
    """How a node ended: its answer, why it stopped early (if it did), the validated
    output for typed answers, and the error that made it fail."""

    answer: str
    stopped: Stopped | None
    output: Any = None
    error: str | None = None


class Run:
    """Everything the nodes of one completion share."""

    def __init__(
        self,
        settings: Settings,
        models: ModelSource,
        *,
        tools: ToolSet | None = None,
        sub_tools: ToolSet | None = None,
        sinks: Sequence[Sink] = (),
    ) -> None:
        self.settings = settings
        self.models = models
        self.tools = tools or ToolSet()
        self.sub_tools = sub_tools or ToolSet()
        self.run_id = uuid.uuid4().hex[:12]
        self.ledger = Ledger(settings.budget)
        self.trace_path = settings.trace_path(self.run_id)
        file_sinks: list[Sink] = (
            [JsonlSink(self.trace_path, settings.trace_max_chars)] if self.trace_path else []
        )
        self.tracer = Tracer(self.run_id, [*file_sinks, *sinks])
        self.depth_reached = 0
        self.isolation = NO_SANDBOX  # until the root's sandbox has started
        self._named: dict[str, Model] = {}
        self._resources = contextlib.AsyncExitStack()
        self._held: set[int] = set()
        self._limits: dict[str, asyncio.Semaphore] = {}

    # -- models ------------------------------------------------------------------------
    def model_for(self, spec: str | None, default: Model) -> Model:
        """``default``, or the model a sub-call names (resolved once per run)."""
        if spec is None or spec == default.spec:
            return default
        if spec not in self._named:
            self._named[spec] = self.models.resolve(spec)
        return self._named[spec]

    async def _hold(self, model: Model) -> None:
        """Keep a model's connections open until the run ends, then release them."""
        if id(model) not in self._held:
            self._held.add(id(model))
            if isinstance(model, contextlib.AbstractAsyncContextManager):
                await self._resources.enter_async_context(model)

    async def call_model(
        self,
        model: Model,
        messages: Sequence[Message],
        *,
        node: Node,
        depth: int,
        purpose: Purpose,
        call_id: str,
        iteration: int | None = None,
    ) -> str:
        """One model request, charged to the node's ledger (and so to every ancestor's).

        A request cancelled in flight (``llm_batch(stop_when=...)``) is charged for
        its prompt: the provider has already read it.
        """
        await self._hold(model)
        node.ledger.begin_call()
        limit = self._limits.setdefault(
            model.spec, asyncio.Semaphore(self.settings.max_concurrency)
        )
        t0 = time.time()
        self.tracer.notify("call_start", node.node_id, call_id=call_id, model=model.spec)
        record = {
            "call_id": call_id,
            "purpose": purpose,
            "iteration": iteration,
            "model": model.spec,
            "t0": t0,
            "depth": depth,
        }
        async with limit:
            try:
                completion = await model.complete(messages)
            except asyncio.CancelledError:
                prompt_tokens = estimate_tokens(message_text(messages))
                cost = pricing.cost(model.spec, prompt_tokens, 0)
                usage = Usage(prompt_tokens, 0, 0, 1, cost)
                node.ledger.charge(model.spec, depth, usage)
                node.emit(
                    ModelCall,
                    **record,
                    duration_s=time.time() - t0,
                    usage=usage,
                    error="cancelled",
                )
                raise
            except RecursaError as exc:
                node.emit(
                    ModelCall,
                    **record,
                    duration_s=time.time() - t0,
                    usage=Usage(),
                    error=str(exc),
                )
                raise
        usage = Usage(
            completion.input_tokens,
            completion.output_tokens,
            completion.cached_tokens,
            1,
            completion.cost_usd,
        )
        node.ledger.charge(model.spec, depth, usage)
        self.depth_reached = max(self.depth_reached, depth)
        extra: dict[str, Any] = {}
        if purpose == "turn":
            extra = {
                "messages": TracedMessage.all(node.untraced_messages()),
                "response": completion.text,
            }
        node.emit(
            ModelCall,
            **record,
            duration_s=time.time() - t0,
            usage=usage,
            cached=completion.cache_hit,
            **extra,
        )
        return completion.text

    # -- the run -------------------------------------------------------------------------
    async def execute(self, root: Node, solve: Callable[[], Awaitable[Outcome]]) -> Result:
        """Run ``solve()`` (the root node's work) between the run_start and run_end events."""
        started = time.monotonic()
        models = self.models
        self.tracer.emit(
            RunStart(
                node_id=root.node_id, parent_id=None, depth=0, run_id=self.run_id,
                query=root.query, model=models.root.spec, sub_model=models.sub.spec,
                **self.settings.to_record(),
                context=ContextShape.of(root.context.info),
                models={m.spec: ModelInfo.of(m) for m in (models.root, models.sub)},
            )
        )  # fmt: skip
        try:
            async with self._resources:
                outcome = await solve()
        except BaseException as exc:
            self._end(root, Outcome("", "error", error=f"{type(exc).__name__}: {exc}"), started)
            raise
        result = Result(
            answer=outcome.answer,
            usage=self.ledger.report(),
            iterations=root.iterations,
            depth_reached=self.depth_reached,
            stopped=outcome.stopped,
            isolation=self.isolation,
            duration_s=time.monotonic() - started,
            run_id=self.run_id,
            trace=self.trace_path,
            error=outcome.error,
            output=outcome.output,
        )
        self._end(root, outcome, started)
        return result

    def _end(self, root: Node, outcome: Outcome, started: float) -> None:
        report = self.ledger.report()
        self.tracer.emit(
            RunEnd(
                node_id=root.node_id, parent_id=None, depth=0, run_id=self.run_id,
                answer=outcome.answer, usage=report, cost_usd=report.cost_usd,
                iterations=root.iterations, depth_reached=self.depth_reached,
                stopped=outcome.stopped, error=outcome.error,
                duration_s=time.monotonic() - started, isolation=self.isolation,
            )
        )  # fmt: skip
        self.tracer.close()


__all__ = ["Outcome", "Purpose", "Run"]
