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
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..budget import Ledger, Reservation, Usage
from ..errors import BudgetExceeded, ConfigError, RecursaError
from ..models import pricing
from ..models.base import (
    Completion,
    Message,
    Model,
    request_deadline,
    stream_text,
    tool_call_chars,
)
from ..models.source import ModelSource, Sibling
from ..result import NO_SANDBOX, Citation, Result, Stopped
from ..sampling import Sampling
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
    citations: list[Citation] = field(default_factory=list)


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
        self._child_slots: dict[int, asyncio.Semaphore] = {}
        self._settlement = asyncio.Event()  # set (and replaced) when a reservation ends

    def child_slots(self, depth: int) -> asyncio.Semaphore:
        """The slots for child sandboxes at ``depth`` (``max_child_sandboxes`` each).
        One pool per depth: a child waiting for its own children holds its slot, so a
        single pool shared by every depth could deadlock."""
        return self._child_slots.setdefault(
            depth, asyncio.Semaphore(self.settings.max_child_sandboxes)
        )

    # -- models ------------------------------------------------------------------------
    def model_for(self, spec: str | None, default: Model) -> Model:
        """``default``, or the model a sub-call names (resolved once per run).

        Model code may only spend on the models the user chose: the root, the sub-model
        and ``Settings.allowed_models``; any other spec raises :class:`ConfigError`
        (the REPL sees it) before anything is resolved. The replay models of a
        recording (:class:`Sibling`) name their siblings freely: they reach no provider.
        """
        if spec is None or spec == default.spec:
            return default
        if spec not in self._named:
            allowed = self.allowed_models()
            if spec not in allowed and not isinstance(self.models.sub, Sibling):
                raise ConfigError(
                    f"model {spec!r} is not allowed: model code may call "
                    f"{', '.join(sorted(allowed))} (allow more with "
                    "allowed_models= or --allow-model)"
                )
            self._named[spec] = self.models.resolve(spec)
        return self._named[spec]

    def allowed_models(self) -> set[str]:
        """The specs model code may name: the root, the sub-model, the allowlist."""
        return {self.models.root.spec, self.models.sub.spec, *self.settings.allowed_models}

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

        The call waits for its model's semaphore, then reserves its worst case (the
        prompt plus the most output it may ask for, priced: the model's cap, or the
        user's ``max_tokens`` if lower) on the ledger, and asks the provider for no more
        output than it reserved (``max_tokens``), sampling as :meth:`sampling_for` says;
        the actual usage settles the reservation. A call that does not fit raises
        :class:`BudgetExceeded`. The budget's ``seconds`` is a deadline for the wait and
        the request (retries included): a call still running then is cancelled and
        raises :class:`BudgetExceeded`. A request cancelled in flight (the deadline,
        ``llm_batch(stop_when=...)``) is charged for its prompt: the provider has
        already read it.

        Live sinks are told when the call is queued (``call_queued``), sent
        (``call_start``, once it holds a slot) and over (``call_end``, however it ended):
        what the progress display counts as queued and running. Where a live sink has
        ``text_deltas = True``, a node's turns stream (see :class:`TextRelay`).
        """
        notify = self.tracer.notify
        notify("call_queued", node.node_id, call_id=call_id, model=model.spec)
        try:
            return await self._metered_call(
                model, messages, node=node, depth=depth, purpose=purpose,
                call_id=call_id, iteration=iteration,
            )  # fmt: skip
        finally:
            notify("call_end", node.node_id, call_id=call_id, model=model.spec)

    async def _metered_call(
        self,
        model: Model,
        messages: Sequence[Message],
        *,
        node: Node,
        depth: int,
        purpose: Purpose,
        call_id: str,
        iteration: int | None,
    ) -> str:
        """:meth:`call_model`'s work: the slot, the reservation, the request, the event."""
        await self._hold(model)
        limit = self._limits.setdefault(
            model.spec, asyncio.Semaphore(self.settings.max_concurrency)
        )
        prices = self.settings.prices
        price = pricing.lookup_for(model, prices)
        per_token = None if price is None else (price.input / 1e6, price.output / 1e6)
        prompt_tokens = prompt_estimate(messages)
        sampling = self.sampling_for(depth, purpose)
        # the most output the call may ask for: the user's max_tokens, within the model's cap
        cap = max_output_tokens(model, prompt_tokens)
        if sampling.max_tokens is not None:
            cap = min(cap, sampling.max_tokens)
        deadline = node.ledger.deadline()
        t0 = time.time()
        record = {
            "call_id": call_id,
            "purpose": purpose,
            "iteration": iteration,
            "model": model.spec,
            "t0": t0,
            "depth": depth,
        }
        timeout = asyncio.timeout_at(
            None
            if deadline is None
            else asyncio.get_running_loop().time() + deadline - time.monotonic()
        )
        reservation: Reservation | None = None
        try:
            async with timeout:
                reservation = await self._reserve(
                    limit, node.ledger, prompt_tokens, cap, per_token, model.spec
                )
                # the reserved cap under a token or USD limit; the user's, else none
                ask = reservation.max_output_tokens
                if ask is None and sampling.max_tokens is not None:
                    ask = cap
                self.tracer.notify("call_start", node.node_id, call_id=call_id, model=model.spec)
                relay = (
                    TextRelay(self.tracer, node.node_id, call_id, depth)
                    if purpose == "turn" and self.wants_text
                    else None
                )
                try:
                    with (
                        request_deadline(deadline),
                        stream_text(relay) if relay is not None else contextlib.nullcontext(),
                    ):
                        completion = await model.complete(
                            messages, max_tokens=ask, sampling=sampling
                        )
                except asyncio.CancelledError:
                    cost = pricing.cost(
                        model.spec, prompt_tokens, 0, overrides=prices,
                        base_url=pricing.endpoint(model),
                    )  # fmt: skip
                    usage = Usage(prompt_tokens, 0, 0, 1, cost)
                    node.ledger.settle(reservation, depth, usage)
                    node.emit(
                        ModelCall,
                        **record,
                        duration_s=time.time() - t0,
                        usage=usage,
                        error="deadline" if timeout.expired() else "cancelled",
                    )
                    raise
                except BaseException as exc:
                    node.ledger.release(reservation)
                    if isinstance(exc, RecursaError):
                        node.emit(
                            ModelCall,
                            **record,
                            duration_s=time.time() - t0,
                            usage=Usage(),
                            error=str(exc),
                        )
                    raise
                else:
                    usage = Usage(
                        completion.input_tokens,
                        completion.output_tokens,
                        completion.cached_tokens,
                        1,
                        self._cost(model, completion),
                    )
                    node.ledger.settle(reservation, depth, usage)
                    if relay is not None and not relay.told and completion.text:
                        relay(completion.text)  # the model did not stream: all at once
                finally:
                    limit.release()
                    self._settled()
        except TimeoutError:
            if not timeout.expired():
                raise
            node.ledger.check()  # marks the deadline spent
            raise BudgetExceeded("seconds") from None
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

    @property
    def wants_text(self) -> bool:
        """Whether a live sink wants the text of turns as it is written (``text_deltas``)."""
        return any(
            getattr(sink, "live", False) and getattr(sink, "text_deltas", False)
            for sink in self.tracer.sinks
        )

    def sampling_for(self, depth: int, purpose: Purpose) -> Sampling:
        """How a call samples: the root model's turns (depth 0) by
        ``Settings.model_settings``; sub-calls (``llm_query``, ``llm_batch``) and the
        turns of child nodes (depth 1 and below) by ``Settings.sub_sampling``."""
        if purpose == "turn" and depth == 0:
            return self.settings.model_settings
        return self.settings.sub_sampling

    async def _reserve(
        self,
        limit: asyncio.Semaphore,
        ledger: Ledger,
        prompt_tokens: int,
        max_output: int,
        price: tuple[float, float] | None,
        spec: str,
    ) -> Reservation:
        """Take a slot of the model's semaphore, then the call's reservation (held on
        return: the caller releases the slot). Reserving after the slot means queued
        calls hold nothing and none starts once the budget is spent; a call that would
        fit once the calls in flight settle gives its slot back and waits for one."""
        while True:
            await limit.acquire()
            settled = self._settlement
            try:
                reservation = ledger.try_reserve(prompt_tokens, max_output, price, model=spec)
            except BaseException:
                limit.release()
                raise
            if not isinstance(reservation, str):
                return reservation
            limit.release()
            await settled.wait()

    def _settled(self) -> None:
        """A call settled or released its reservation: wake the calls waiting for room."""
        self._settlement.set()
        self._settlement = asyncio.Event()

    def _cost(self, model: Model, completion: Completion) -> float | None:
        """A call's cost: the user's price where one was given (a response cache hit stays
        free), else what the model reported."""
        prices = self.settings.prices
        cost = completion.cost_usd
        if completion.cache_hit:  # free where the model is priced, unknown where it is not
            return cost if cost is not None else 0.0 if model.spec in prices else None
        if model.spec in prices or cost is None:
            return pricing.cost(
                model.spec,
                completion.input_tokens,
                completion.output_tokens,
                completion.cached_tokens,
                overrides=prices,
                base_url=pricing.endpoint(model),
            )
        return cost

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
        if self.trace_path is not None:  # where a stopped run can be resumed from
            self.tracer.notify("trace_file", root.node_id, path=str(self.trace_path))
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
            citations=list(outcome.citations),
            skipped=[{"name": s.name, "reason": s.reason} for s in root.context.skipped],
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
                citations=tuple(outcome.citations) or None,
            )
        )  # fmt: skip
        self.tracer.close()


class TextRelay:
    """Tells live sinks a turn's text as the model writes it: a ``model_delta`` notice
    per piece (``text``; ``restart=True`` when the request broke off and the reply
    starts over), never written to the trace. A model that does not stream is relayed
    once, whole, after its reply, so a listener sees every turn."""

    def __init__(self, tracer: Tracer, node_id: str, call_id: str, depth: int) -> None:
        self.tracer = tracer
        self.node_id = node_id
        self.call_id = call_id
        self.depth = depth
        self.told = False  # whether the current attempt has told any text

    def __call__(self, piece: str, *, restart: bool = False) -> None:
        self.told = bool(piece) or (self.told and not restart)
        fields: dict[str, Any] = {"call_id": self.call_id, "depth": self.depth, "text": piece}
        if restart:
            fields["restart"] = True
        self.tracer.notify("model_delta", self.node_id, **fields)


def prompt_estimate(messages: Sequence[Message]) -> int:
    """The prompt tokens a call reserves: 4 characters a token of everything sent, a
    content part (an image's data URL) counted whole, as a provider may count it, and a
    tool-using sub-call's ``tool_calls`` (names and arguments) too."""
    chars = 0
    for m in messages:
        content = m["content"]
        chars += len(content) + 1 if isinstance(content, str) else len(json.dumps(content))
        chars += tool_call_chars(m)
    return max(1, (chars + 3) // 4)  # as models.base.estimate_tokens


def max_output_tokens(model: Model, prompt_tokens: int = 0) -> int:
    """The most output one request may ask of ``model``: its own ``max_output_tokens``
    if it has one, else the request cap of :func:`recursa.models.pricing.max_output_tokens`;
    no more than its known context window leaves after the prompt (a server refuses a
    request whose prompt plus ``max_tokens`` exceeds it)."""
    own = getattr(model, "max_output_tokens", None)
    if isinstance(own, int) and not isinstance(own, bool) and own > 0:
        cap = own
    else:
        cap = pricing.max_output_tokens(model.spec)
    window = model.context_window
    if window:
        cap = min(cap, max(256, window - prompt_tokens))
    return cap


__all__ = ["Outcome", "Purpose", "Run", "max_output_tokens", "prompt_estimate"]
