"""The Recursive Language Model: configuration, one completion, and the loop of each node.

A completion is a tree. The root node's model writes code against ``context``
in a sandbox; the code's sub-calls are served here: ``llm_query`` is one model
request one level down, ``rlm_query`` a child node with its own sandbox and
loop (until ``max_depth``, where it falls back to ``llm_query``). Every request
anywhere is charged to one :class:`~recursa.budget.Ledger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import prompts
from .budget import Budget, Ledger, Usage, UsageReport
from .context import Context, ContextInput
from .errors import BudgetExceeded, ConfigError, RecursaError
from .models import pricing
from .models.base import Message, Model, estimate_tokens, message_text
from .models.cache import CacheOption, open_cache, with_cache
from .models.registry import ModelOptions, resolve
from .output import AnswerInvalid, OutputSpec
from .parsing import parse_reply
from .repl import SANDBOXES, SandboxConfig, make_sandbox
from .repl.base import CellResult, Sandbox
from .replay import ReplayModel
from .resume import ResumingModel, load_recording
from .tools import Tool, ToolSet
from .trace import DEFAULT_MAX_CHARS, JsonlSink, Sink, Tracer

if TYPE_CHECKING:
    from .session import Session

Stopped = Literal["budget", "iterations", "timeout", "error"]
DEFAULT_TRACE_DIR = Path("recursa-runs")
MAX_VALIDATION_RETRIES = 3
RESET_ANSWER = 'answer = {"content": "", "ready": False}\n'


@dataclass
class Result:
    """The outcome of one completion."""

    answer: str
    usage: UsageReport
    iterations: int
    depth_reached: int
    stopped: Stopped | None
    isolation: str
    duration_s: float
    run_id: str
    trace: Path | None = None
    error: str | None = None
    output: Any = None  # the validated object, when an output_type was given

    @property
    def cost_usd(self) -> float | None:
        """Total cost in USD; ``None`` when some model in the tree is unpriced."""
        return self.usage.cost_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "iterations": self.iterations,
            "depth_reached": self.depth_reached,
            "stopped": self.stopped,
            "trace": str(self.trace) if self.trace else None,
            "isolation": self.isolation,
            "duration_s": round(self.duration_s, 3),
            "run_id": self.run_id,
            "error": self.error,
        }


class RLM:
    """A configured Recursive Language Model; call :meth:`completion` as often as you like.

    ``model`` and ``sub_model`` are ``"provider/name"`` strings or :class:`Model`
    objects. ``max_depth=0`` gives the REPL no sub-call functions; ``1`` (the
    paper's setting) gives ``llm_query``; ``2`` and more let ``rlm_query`` start
    child RLMs. ``tools`` are host functions shown in the root's REPL
    (``sub_tools`` in children's). ``trace`` is a JSONL path, ``True`` for a file
    under ``./recursa-runs/``, or ``None``.
    """

    def __init__(
        self,
        model: str | Model,
        sub_model: str | Model | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_depth: int = 1,
        max_iterations: int = 30,
        budget: Budget | None = None,
        sandbox: str = "subprocess",
        cell_timeout: float = 120.0,
        max_output_chars: int = 20_000,
        max_concurrency: int = 32,
        tools: Mapping[str, Tool] | None = None,
        sub_tools: Mapping[str, Tool] | None = None,
        trace: str | Path | bool | None = None,
        trace_max_chars: int = DEFAULT_MAX_CHARS,
        request_timeout: float = 300.0,
        compact_after_chars: int | None = None,
        cache: CacheOption = None,
    ) -> None:
        if max_depth < 0:
            raise ConfigError(f"max_depth must be >= 0, got {max_depth}")
        for name, value in (
            ("max_iterations", max_iterations),
            ("cell_timeout", cell_timeout),
            ("max_output_chars", max_output_chars),
            ("max_concurrency", max_concurrency),
            ("request_timeout", request_timeout),
        ):
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if sandbox not in SANDBOXES:
            known = ", ".join(SANDBOXES)
            raise ConfigError(f"unknown sandbox {sandbox!r} (choose one of: {known})")
        self.options = ModelOptions(base_url=base_url, api_key=api_key, timeout=request_timeout)
        self.cache = open_cache(cache)
        self.model = with_cache(resolve(model, self.options), self.cache)
        self.sub_model = (
            with_cache(resolve(sub_model, self.options), self.cache)
            if sub_model is not None
            else self.model
        )
        self.max_depth = max_depth
        self.max_iterations = max_iterations
        self.budget = budget
        self.sandbox = sandbox
        self.cell_timeout = cell_timeout
        self.max_output_chars = max_output_chars
        self.max_concurrency = max_concurrency
        self.tools = ToolSet(tools)
        self.sub_tools = ToolSet(sub_tools)
        self.trace = trace
        self.trace_max_chars = trace_max_chars
        self.compact_after_chars = compact_after_chars

    def completion(
        self,
        query: str,
        context: ContextInput,
        *,
        output_type: Any = None,
        sinks: Sequence[Sink] = (),
        resume: str | Path | None = None,
    ) -> Result:
        """Answer ``query`` over ``context``. Blocks; see :meth:`acompletion`."""
        _no_running_loop("completion")
        return asyncio.run(
            self.acompletion(query, context, output_type=output_type, sinks=sinks, resume=resume)
        )

    async def acompletion(
        self,
        query: str,
        context: ContextInput,
        *,
        output_type: Any = None,
        sinks: Sequence[Sink] = (),
        resume: str | Path | None = None,
    ) -> Result:
        """Answer ``query`` over ``context`` (a str, Path, list[str] or dict).

        With ``output_type`` (a pydantic model or any type pydantic validates, or a
        JSON Schema dict) the final answer must validate; ``result.output`` holds it.
        ``resume`` is the trace of a stopped run of the same query and context: what it
        recorded is replayed at no cost (rebuilding the REPL), then the run goes on live.
        """
        _check_query(query)
        ctx = context if isinstance(context, Context) else Context(context)
        run = _Run(self, list(sinks), resume=resume)
        root = _Node(run, query, ctx, depth=0, parent=None, ledger=run.ledger)
        root.output = OutputSpec(output_type) if output_type is not None else None
        try:
            return await run.execute(root, root.solve)
        finally:
            ctx.cleanup()

    def session(self, context: ContextInput) -> Session:
        """A conversation over one REPL: many queries, variables kept between them."""
        from .session import Session

        return Session(self, context)

    def _trace_path(self, run_id: str) -> Path | None:
        if self.trace is None or self.trace is False:
            return None
        if self.trace is True:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            return DEFAULT_TRACE_DIR / f"{stamp}-{run_id}.jsonl"
        return Path(self.trace)


def _no_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigError(f"{name}() was called inside an event loop: use the async variant")


def _check_query(query: str) -> None:
    if not query or not query.strip():
        raise ConfigError("the query is empty")


class _Run:
    """State shared by every node of one completion."""

    def __init__(self, rlm: RLM, sinks: list[Sink], resume: str | Path | None = None) -> None:
        self.rlm = rlm
        self.recording = None if resume is None else load_recording(resume)
        self.model = self._resuming(rlm.model)
        self.sub_model = self.model if rlm.sub_model is rlm.model else self._resuming(rlm.sub_model)
        self.run_id = uuid.uuid4().hex[:12]
        self.ledger = Ledger(rlm.budget)
        self.trace_path = rlm._trace_path(self.run_id)
        file_sinks: list[Sink] = (
            [JsonlSink(self.trace_path, rlm.trace_max_chars)] if self.trace_path else []
        )
        self.tracer = Tracer(self.run_id, file_sinks + sinks)
        self.models: dict[str, Model] = {}
        self.resources = contextlib.AsyncExitStack()
        self._held: set[int] = set()
        self.limits: dict[str, asyncio.Semaphore] = {}
        self.depth_reached = 0
        self.isolation = NO_SANDBOX  # until the root's sandbox has started

    def _resuming(self, model: Model) -> Model:
        return model if self.recording is None else ResumingModel(model, self.recording)

    def model_for(self, spec: str | None, default: Model) -> Model:
        """``default``, or the model a sub-call names (resolved once per run)."""
        if spec is None or spec == default.spec:
            return default
        if spec not in self.models:
            if isinstance(default, ReplayModel):  # a replay never reaches a real model
                self.models[spec] = default.sibling(spec)
            else:
                model = resolve(spec, self.rlm.options)
                self.models[spec] = self._resuming(with_cache(model, self.rlm.cache))
        return self.models[spec]

    async def _hold(self, model: Model) -> None:
        """Keep a model's connections open until the run ends, then release them."""
        if id(model) not in self._held:
            self._held.add(id(model))
            if isinstance(model, contextlib.AbstractAsyncContextManager):
                await self.resources.enter_async_context(model)

    async def call_model(
        self,
        model: Model,
        messages: Sequence[Message],
        *,
        node: _Node,
        depth: int,
        purpose: Literal["turn", "sub"],
        call_id: str,
        iteration: int | None = None,
    ) -> str:
        """One model request, charged to the node's ledger (and so to every ancestor's).

        A request cancelled in flight (``llm_batch(stop_when=...)``) is charged for
        its prompt: the provider has already read it.
        """
        await self._hold(model)
        node.ledger.begin_call()
        limit = self.limits.setdefault(model.spec, asyncio.Semaphore(self.rlm.max_concurrency))
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
                    "model_call",
                    **record,
                    duration_s=time.time() - t0,
                    usage=usage.to_dict(),
                    error="cancelled",
                )
                raise
            except RecursaError as exc:
                node.emit(
                    "model_call",
                    **record,
                    duration_s=time.time() - t0,
                    usage=Usage().to_dict(),
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
            extra = {"messages": node.untraced_messages(), "response": completion.text}
        node.emit(
            "model_call",
            **record,
            duration_s=time.time() - t0,
            usage=usage.to_dict(),
            cached=completion.cache_hit,
            **extra,
        )
        return completion.text

    async def execute(self, root: _Node, solve: Callable[[], Awaitable[_Outcome]]) -> Result:
        """Run ``solve()`` (a root node's work) between run_start and run_end events."""
        rlm = self.rlm
        started = time.monotonic()
        self.tracer.emit(
            "run_start", root.node_id, None, 0,
            query=root.query, model=rlm.model.spec, sub_model=rlm.sub_model.spec,
            max_depth=rlm.max_depth, max_iterations=rlm.max_iterations,
            budget=_budget_dict(rlm.budget), sandbox=rlm.sandbox,
            context=root.context.info.to_dict(),
            models={m.spec: {"context_window": m.context_window,
                             "prompt_style": getattr(m, "prompt_style", "full")}
                    for m in (rlm.model, rlm.sub_model)},
        )  # fmt: skip
        try:
            async with self.resources:
                outcome: _Outcome = await solve()
        except BaseException as exc:
            self._end(root, _Outcome("", "error", error=f"{type(exc).__name__}: {exc}"), started)
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

    def _end(self, root: _Node, outcome: _Outcome, started: float) -> None:
        report = self.ledger.report()
        self.tracer.emit(
            "run_end", root.node_id, None, 0,
            answer=outcome.answer, usage=report.to_dict(), cost_usd=report.cost_usd,
            iterations=root.iterations, depth_reached=self.depth_reached,
            stopped=outcome.stopped, error=outcome.error,
            duration_s=time.monotonic() - started, isolation=self.isolation,
        )  # fmt: skip
        self.tracer.close()


#: ``result.isolation`` of a run whose root never needed its sandbox (it answered
#: without code, so the start behind the first turn was cancelled).
NO_SANDBOX = "not started: no code ran"


def _budget_dict(budget: Budget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"usd": budget.usd, "tokens": budget.tokens, "seconds": budget.seconds,
            "calls": budget.calls}  # fmt: skip


@dataclass
class _Outcome:
    answer: str
    stopped: Stopped | None
    output: Any = None
    error: str | None = None


@dataclass
class _Node:
    """One node of the recursion tree: a root-model conversation over its own REPL."""

    run: _Run
    query: str
    context: Context
    depth: int
    parent: _Node | None
    ledger: Ledger
    parent_call_id: str | None = None
    output: OutputSpec | None = None
    node_id: str = ""
    iterations: int = 0
    messages: list[Message] = field(default_factory=list)
    _traced: int = 0
    _sandbox: Sandbox | None = None
    _starting: asyncio.Task[Sandbox] | None = None
    _invalid_answers: int = 0
    _groups: dict[str, set[asyncio.Task[str]]] = field(default_factory=dict)
    _cancelled_groups: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.node_id = self.run.tracer.new_id("n")

    @property
    def rlm(self) -> RLM:
        return self.run.rlm

    @property
    def model(self) -> Model:
        return self.run.model if self.depth == 0 else self.run.sub_model

    @property
    def tools(self) -> ToolSet:
        return self.rlm.tools if self.depth == 0 else self.rlm.sub_tools

    def emit(self, type: Any, **fields: Any) -> None:
        depth = fields.pop("depth", self.depth)
        parent_id = self.parent.node_id if self.parent else None
        self.run.tracer.emit(type, self.node_id, parent_id, depth, **fields)

    def untraced_messages(self) -> list[Message]:
        new = self.messages[self._traced :]
        self._traced = len(self.messages)
        return new

    # -- lifecycle -------------------------------------------------------------------
    def _start_soon(self) -> None:
        """Start the sandbox in the background. The first model turn needs no REPL, so
        it is asked while the worker starts; a start that fails cancels it."""
        if self._sandbox is None and self._starting is None:
            # made here, so its module is imported on this thread, not beside a model
            # SDK being imported on another (see SDKModel)
            sandbox = make_sandbox(self.rlm.sandbox)
            self._starting = asyncio.ensure_future(self._start_sandbox(sandbox))

    async def _start_sandbox(self, sandbox: Sandbox) -> Sandbox:
        await sandbox.start(
            SandboxConfig(
                context=self.context,
                host=self._host,
                subcalls=self.rlm.max_depth > 0,
                tools=self.tools.specs(),
                max_output_chars=self.rlm.max_output_chars,
            )
        )
        return sandbox

    async def open(self) -> Sandbox:
        """This node's sandbox, once it has started (it starts once per node)."""
        if self._sandbox is None:
            self._start_soon()
            assert self._starting is not None
            self._adopt(await self._starting)
        assert self._sandbox is not None
        return self._sandbox

    def _adopt(self, sandbox: Sandbox) -> None:
        self._starting, self._sandbox = None, sandbox
        if self.parent is None:
            self.run.isolation = sandbox.isolation

    async def close(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None and self._sandbox is None:
            starting.cancel()  # a start that finished anyway still hands its sandbox over
            (started,) = await asyncio.gather(starting, return_exceptions=True)
            if not isinstance(started, BaseException):
                self._adopt(started)
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await sandbox.close()

    async def solve(self) -> _Outcome:
        """Answer this node's query in a fresh sandbox, then close it."""
        try:
            return await self.ask(self.query)
        finally:
            await self.close()

    async def ask(self, query: str) -> _Outcome:
        """Answer ``query`` in this node's (possibly already used) REPL and conversation."""
        self.query = query
        started = time.monotonic()
        self.emit(
            "node_start", query=query, context=self.context.info.to_dict(),
            model=self.model.spec, parent_call_id=self.parent_call_id,
        )  # fmt: skip
        outcome = _Outcome("", "error")
        error: str | None = None
        try:
            if self._sandbox is None and self._starting is None:
                self.messages = [{"role": "system", "content": self._system_prompt()}]
                self._start_soon()
            elif len(self.messages) > 1:  # a follow-up query in a session
                await (await self.open()).run(RESET_ANSWER, timeout=10)
            self.iterations = 0
            self.messages.append({"role": "user", "content": self._first_turn(query)})
            outcome = await self._loop()
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.emit(
                "node_end", answer=outcome.answer, iterations=self.iterations,
                stopped=outcome.stopped if error is None else "error",
                usage=Usage.to_dict(self.ledger.report()),
                duration_s=time.monotonic() - started, error=error or outcome.error,
            )  # fmt: skip
        return outcome

    def _system_prompt(self) -> str:
        if getattr(self.model, "prompt_style", "full") == "compact":
            from .prompts_compact import compact_system_prompt

            text: str = compact_system_prompt(
                self.context.info, subcalls=self.rlm.max_depth > 0, max_depth=self.rlm.max_depth
            )
            return text
        return prompts.system_prompt(
            self.context.info,
            max_depth=self.rlm.max_depth,
            depth=self.depth,
            sub_window=self.rlm.sub_model.context_window,
            tools=self.tools.specs(),
        )

    def _first_turn(self, query: str) -> str:
        text = prompts.first_turn(query)
        if self.output is not None:
            text += "\n\n" + self.output.instructions()
        return text

    # -- the loop ----------------------------------------------------------------------
    async def _loop(self) -> _Outcome:
        max_iterations = self.rlm.max_iterations
        for iteration in range(1, max_iterations + 1):
            self.iterations = iteration
            try:
                await self._compact_if_long()
                reply = await self._turn(iteration)
            except BudgetExceeded:
                return await self._stop_for_budget()
            parsed = parse_reply(reply)
            results: list[CellResult] = []
            final: str | None = None
            for index, code in enumerate(parsed.cells):
                result = await self._cell(code, iteration, index)
                results.append(result)
                if result.final is not None:
                    final = result.final
                    break
            # A FINAL written as text: FINAL(...) only counts in a reply without code (it
            # was written before any output was seen); FINAL_VAR(name) after the code ran.
            if final is None and parsed.final is not None:
                if parsed.final.kind == "text" and not parsed.cells:
                    final = parsed.final.value
                elif parsed.final.kind == "var":
                    lookup = await self._cell(f"FINAL_VAR({parsed.final.value!r})\n", iteration, -1)
                    final = lookup.final
                    if final is None:
                        results.append(lookup)
            if final is not None:
                accepted = self._accept(final)
                if isinstance(accepted, _Outcome):
                    return accepted
                results.append(CellResult("", error=accepted))
            if self._budget_spent():
                return await self._stop_for_budget()
            if not results:
                self.messages.append({"role": "user", "content": prompts.NO_CODE_NUDGE})
                continue
            feedback = prompts.cell_feedback(results, max_iterations - iteration)
            self.messages.append({"role": "user", "content": feedback})
        return await self._last_turn()

    def _accept(self, answer: str) -> _Outcome | str:
        """The outcome for a final answer, or the validation error to show the model."""
        if self.output is None:
            return _Outcome(answer, None)
        try:
            value, text = self.output.validate(answer)
        except AnswerInvalid as exc:
            self._invalid_answers += 1
            if self._invalid_answers > MAX_VALIDATION_RETRIES:
                return _Outcome(answer, "error", error=f"final answer invalid: {exc}")
            return f"{exc}\nFix the answer and finish again."
        return _Outcome(text, None, output=value)

    async def _turn(self, iteration: int | None) -> str:
        call_id = self.run.tracer.new_id("c")
        text = await self._unless_start_fails(
            self.run.call_model(
                self.model, self.messages, node=self, depth=self.depth, purpose="turn",
                call_id=call_id, iteration=iteration,
            )
        )  # fmt: skip
        self.messages.append({"role": "assistant", "content": text})
        return text

    async def _unless_start_fails(self, call: Coroutine[Any, Any, str]) -> str:
        """``call``'s result; if the sandbox, starting meanwhile, fails first, the call is
        cancelled and the start's error raised."""
        starting = self._starting
        if starting is None or starting.done():
            return await call
        task = asyncio.ensure_future(call)
        try:
            await asyncio.wait({task, starting}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not starting.cancelled() and starting.exception():
                starting.result()
            return await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _compact_if_long(self) -> None:
        """Summarise the history when it nears the model's window (long sessions)."""
        limit = self.rlm.compact_after_chars
        if limit is None:
            window = self.model.context_window
            limit = int(window * 4 * 0.6) if window else 400_000
        if len(self.messages) < 4 or len(message_text(self.messages)) < limit:
            return
        pending = self.messages[-1]
        self.messages[-1] = {"role": "user", "content": prompts.COMPACT_REQUEST}
        summary = await self._turn(None)
        self.messages = [
            self.messages[0],
            {"role": "user", "content": f"{prompts.COMPACTED_PREFIX}\n{summary}"},
            {"role": "assistant", "content": prompts.COMPACTED_ACK},
            pending,
        ]
        self._traced = len(self.messages) - 1

    async def _last_turn(self) -> _Outcome:
        self.messages.append({"role": "user", "content": prompts.LAST_TURN})
        try:
            reply = await self._turn(self.iterations + 1)
        except BudgetExceeded:
            return await self._stop_for_budget()
        parsed = parse_reply(reply)
        answer = parsed.prose.strip() or reply.strip()
        for index, code in enumerate(parsed.cells):  # asked for no code, but models write it
            result = await self._cell(code, self.iterations + 1, index)
            if result.final is not None:
                return self._accept_last(result.final)
        if parsed.final is None and parsed.cells:
            answer = (await self._held_answer()).strip() or answer
        if parsed.final is not None:
            if parsed.final.kind == "text":
                answer = parsed.final.value
            else:
                lookup = await self._cell(
                    f"FINAL_VAR({parsed.final.value!r})\n", self.iterations, -1
                )
                answer = lookup.final if lookup.final is not None else answer
        return self._accept_last(answer)

    def _accept_last(self, answer: str) -> _Outcome:
        accepted = self._accept(answer)
        if isinstance(accepted, _Outcome):
            accepted.stopped = accepted.stopped or "iterations"
            return accepted
        return _Outcome(answer, "iterations", error=accepted)

    async def _cell(self, code: str, iteration: int, index: int) -> CellResult:
        sandbox = await self.open()
        t0 = time.time()
        result = await sandbox.run(code, timeout=self.rlm.cell_timeout)
        self.emit(
            "cell", iteration=iteration, index=index, code=code, output=result.output,
            error=result.error, t0=t0, duration_s=time.time() - t0,
            final=result.final is not None,
            timed_out=result.timed_out, restarted=result.restarted,
        )  # fmt: skip
        return result

    async def _stop_for_budget(self) -> _Outcome:
        """The best answer available when the budget is spent: the REPL's ``answer``."""
        return _Outcome(await self._held_answer(), "budget")

    async def _held_answer(self) -> str:
        """What the REPL's ``answer["content"]`` holds (set but not marked ready)."""
        sandbox = await self.open()
        result = await sandbox.run('print(answer.get("content", ""), end="")\n', timeout=10)
        return result.output if result.error is None else ""

    def _budget_spent(self) -> bool:
        try:
            self.ledger.check()
        except BudgetExceeded:
            return True
        return False

    # -- calls from the REPL -------------------------------------------------------------
    async def _host(self, name: str, payload: dict[str, Any]) -> Any:
        if name == "llm_query":
            group = payload.get("group")
            call = self._llm(payload["prompt"], payload.get("model"), images=payload.get("images"))
            return await (self._in_group(group, call) if group else call)
        if name == "llm_batch":
            return await self._batch(
                [self._llm(p, payload.get("model"), batch) for p, batch in self._batched(payload)]
            )
        if name == "rlm_query":
            return await self._rlm(payload["prompt"], payload.get("context"),
                                   budget=payload.get("budget"))  # fmt: skip
        if name == "rlm_batch":
            contexts = payload.get("contexts") or [None] * len(payload["prompts"])
            if len(contexts) != len(payload["prompts"]):
                raise ConfigError("rlm_batch: prompts and contexts differ in length")
            return await self._batch(
                [self._rlm(p, c, batch)
                 for (p, batch), c in zip(self._batched(payload), contexts, strict=True)]
            )  # fmt: skip
        if name == "cancel":
            self._cancel_group(payload["group"])
            return None
        if name == "budget":
            return self.ledger.remaining()
        if name == "tool":
            return await self.tools.call(payload["name"], payload.get("args") or [],
                                         payload.get("kwargs") or {})  # fmt: skip
        raise ConfigError(f"the REPL asked for an unknown host function {name!r}")

    async def _in_group(self, group: str, call: Any) -> str:
        """Run a sub-call that ``cancel`` for its group may stop (early-stopped batches)."""
        if group in self._cancelled_groups:
            call.close()
            raise RecursaError("cancelled: stop_when was met")
        task: asyncio.Task[str] = asyncio.ensure_future(call)
        self._groups.setdefault(group, set()).add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if group in self._cancelled_groups and not _current_task_cancelling():
                raise RecursaError("cancelled: stop_when was met") from None
            raise
        finally:
            self._groups[group].discard(task)

    def _cancel_group(self, group: str) -> None:
        self._cancelled_groups.add(group)
        for task in self._groups.pop(group, set()):
            task.cancel()

    def _batched(self, payload: dict[str, Any]) -> list[tuple[str, tuple[str, int]]]:
        batch_id = self.run.tracer.new_id("b")
        return [(p, (batch_id, i)) for i, p in enumerate(payload["prompts"])]

    @staticmethod
    async def _batch(calls: Sequence[Any]) -> list[Any]:
        """Run concurrently, keep order; a failed item becomes ``{"error": message}``."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        out: list[Any] = []
        for r in results:
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r
                out.append({"error": str(r) or type(r).__name__})
            else:
                out.append(r)
        return out

    async def _llm(
        self,
        prompt: str,
        model_spec: str | None,
        batch: tuple[str, int] | None = None,
        *,
        images: list[dict[str, str]] | None = None,
    ) -> str:
        model = self.run.model_for(model_spec, self.run.sub_model)
        call_id = self.run.tracer.new_id("c")
        t0 = time.time()
        answer: str | None = None
        error: str | None = None
        try:
            message: Message = {"role": "user", "content": _content(model, prompt, images)}
            answer = await self.run.call_model(
                model, [message], node=self, depth=self.depth + 1, purpose="sub",
                call_id=call_id,
            )  # fmt: skip
            return answer
        except (Exception, asyncio.CancelledError) as exc:
            error = str(exc) or type(exc).__name__
            raise
        finally:
            self.emit(
                "subcall", call_id=call_id, kind="llm", iteration=self.iterations,
                batch_id=batch[0] if batch else None, index=batch[1] if batch else None,
                prompt=prompt, answer=answer, model=model.spec, t0=t0,
                duration_s=time.time() - t0, error=error, images=len(images or []),
            )  # fmt: skip

    async def _rlm(
        self,
        prompt: str,
        context: Any,
        batch: tuple[str, int] | None = None,
        *,
        budget: dict[str, Any] | None = None,
    ) -> str:
        if self.depth + 1 >= self.rlm.max_depth:
            return await self._llm(prompt, None, batch)
        call_id = self.run.tracer.new_id("c")
        t0 = time.time()
        child = _Node(
            self.run, prompt, Context(context if context is not None else prompt),
            depth=self.depth + 1, parent=self,
            ledger=self.ledger.child(Budget(**budget) if budget else None),
            parent_call_id=call_id,
        )  # fmt: skip
        answer: str | None = None
        error: str | None = None
        try:
            outcome = await child.solve()
            answer = outcome.answer
            return answer
        except Exception as exc:
            error = str(exc)
            raise
        finally:
            child.context.cleanup()
            self.emit(
                "subcall", call_id=call_id, kind="rlm", iteration=self.iterations,
                batch_id=batch[0] if batch else None, index=batch[1] if batch else None,
                prompt=prompt, answer=answer, model=child.model.spec, t0=t0,
                duration_s=time.time() - t0, error=error, child_node_id=child.node_id,
            )  # fmt: skip


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _content(
    model: Model, prompt: str, images: list[dict[str, str]] | None
) -> str | list[dict[str, Any]]:
    """A sub-call's message content: text, or OpenAI-style parts with images."""
    if not images:
        return prompt
    if not getattr(model, "supports_images", True):
        raise ConfigError(f"{model.spec} cannot take images")
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    for image in images:
        mime, data = image["__recursa_image__"], image["base64"]
        parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
    return parts
