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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import prompts
from .budget import Budget, Ledger, Usage, UsageReport
from .context import Context, ContextInput
from .errors import BudgetExceeded, ConfigError, RecursaError
from .models.base import Message, Model
from .models.registry import ModelOptions, resolve
from .parsing import parse_reply
from .repl import SANDBOXES, SandboxConfig, make_sandbox
from .repl.base import CellResult, Sandbox
from .trace import JsonlSink, Sink, Tracer

Stopped = Literal["budget", "iterations", "timeout", "error"]
DEFAULT_TRACE_DIR = Path("recursa-runs")


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
    child RLMs. ``trace`` is a JSONL path, ``True`` for a file under
    ``./recursa-runs/``, or ``None``.
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
        trace: str | Path | bool | None = None,
        trace_max_chars: int = 10_000,
        request_timeout: float = 300.0,
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
            raise ConfigError(
                f"unknown sandbox {sandbox!r} (choose one of: {', '.join(SANDBOXES)})"
            )
        self.options = ModelOptions(base_url=base_url, api_key=api_key, timeout=request_timeout)
        self.model = resolve(model, self.options)
        self.sub_model = resolve(sub_model, self.options) if sub_model is not None else self.model
        self.max_depth = max_depth
        self.max_iterations = max_iterations
        self.budget = budget
        self.sandbox = sandbox
        self.cell_timeout = cell_timeout
        self.max_output_chars = max_output_chars
        self.max_concurrency = max_concurrency
        self.trace = trace
        self.trace_max_chars = trace_max_chars

    def completion(
        self, query: str, context: ContextInput, *, sinks: Sequence[Sink] = ()
    ) -> Result:
        """Answer ``query`` over ``context``. Blocks; see :meth:`acompletion`."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.acompletion(query, context, sinks=sinks))
        raise ConfigError("completion() was called inside an event loop: use await acompletion()")

    async def acompletion(
        self, query: str, context: ContextInput, *, sinks: Sequence[Sink] = ()
    ) -> Result:
        """Answer ``query`` over ``context`` (a str, Path, list[str] or dict)."""
        if not query or not query.strip():
            raise ConfigError("the query is empty")
        ctx = context if isinstance(context, Context) else Context(context)
        run = _Run(self, list(sinks))
        try:
            return await run.execute(query, ctx)
        finally:
            ctx.cleanup()

    def _trace_path(self, run_id: str) -> Path | None:
        if self.trace is None or self.trace is False:
            return None
        if self.trace is True:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            return DEFAULT_TRACE_DIR / f"{stamp}-{run_id}.jsonl"
        return Path(self.trace)


class _Run:
    """State shared by every node of one completion."""

    def __init__(self, rlm: RLM, sinks: list[Sink]) -> None:
        self.rlm = rlm
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
        self.isolation = ""

    def model_for(self, spec: str | None, default: Model) -> Model:
        """``default``, or the model a sub-call names (resolved once per run)."""
        if spec is None or spec == default.spec:
            return default
        if spec not in self.models:
            self.models[spec] = resolve(spec, self.rlm.options)
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
        """One model request, charged to the node's ledger (and so to every ancestor's)."""
        await self._hold(model)
        node.ledger.begin_call()
        limit = self.limits.setdefault(model.spec, asyncio.Semaphore(self.rlm.max_concurrency))
        t0 = time.time()
        self.tracer.notify("call_start", node.node_id, call_id=call_id, model=model.spec)
        async with limit:
            try:
                completion = await model.complete(messages)
            except RecursaError as exc:
                node.emit(
                    "model_call",
                    call_id=call_id,
                    purpose=purpose,
                    iteration=iteration,
                    model=model.spec,
                    t0=t0,
                    duration_s=time.time() - t0,
                    depth=depth,
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
            call_id=call_id,
            purpose=purpose,
            iteration=iteration,
            model=model.spec,
            t0=t0,
            duration_s=time.time() - t0,
            depth=depth,
            usage=usage.to_dict(),
            **extra,
        )
        return completion.text

    async def execute(self, query: str, context: Context) -> Result:
        rlm = self.rlm
        started = time.monotonic()
        root = _Node(self, query, context, depth=0, parent=None, ledger=self.ledger)
        self.tracer.emit(
            "run_start",
            root.node_id,
            None,
            0,
            query=query,
            model=rlm.model.spec,
            sub_model=rlm.sub_model.spec,
            max_depth=rlm.max_depth,
            max_iterations=rlm.max_iterations,
            budget=_budget_dict(rlm.budget),
            sandbox=rlm.sandbox,
            context=context.info.to_dict(),
        )
        error: str | None = None
        try:
            async with self.resources:
                outcome = await root.solve()
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._end(root, "", None, error, started, iterations=root.iterations)
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
        )
        self._end(root, result.answer, result.stopped, error, started, iterations=root.iterations)
        return result

    def _end(
        self,
        root: _Node,
        answer: str,
        stopped: str | None,
        error: str | None,
        started: float,
        *,
        iterations: int,
    ) -> None:
        report = self.ledger.report()
        self.tracer.emit(
            "run_end",
            root.node_id,
            None,
            0,
            answer=answer,
            usage=report.to_dict(),
            cost_usd=report.cost_usd,
            iterations=iterations,
            depth_reached=self.depth_reached,
            stopped=stopped,
            error=error,
            duration_s=time.monotonic() - started,
        )
        self.tracer.close()


def _budget_dict(budget: Budget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {
        "usd": budget.usd,
        "tokens": budget.tokens,
        "seconds": budget.seconds,
        "calls": budget.calls,
    }


@dataclass
class _Outcome:
    answer: str
    stopped: Stopped | None


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
    node_id: str = ""
    iterations: int = 0
    messages: list[Message] = field(default_factory=list)
    _traced: int = 0
    _sandbox: Sandbox | None = None

    def __post_init__(self) -> None:
        self.node_id = self.run.tracer.new_id("n")

    @property
    def model(self) -> Model:
        return self.run.rlm.model if self.depth == 0 else self.run.rlm.sub_model

    def emit(self, type: Any, **fields: Any) -> None:
        depth = fields.pop("depth", self.depth)
        parent_id = self.parent.node_id if self.parent else None
        self.run.tracer.emit(type, self.node_id, parent_id, depth, **fields)

    def untraced_messages(self) -> list[Message]:
        new = self.messages[self._traced :]
        self._traced = len(self.messages)
        return new

    # -- the loop ----------------------------------------------------------------
    async def solve(self) -> _Outcome:
        rlm = self.run.rlm
        started = time.monotonic()
        self.emit(
            "node_start",
            query=self.query,
            context=self.context.info.to_dict(),
            model=self.model.spec,
            parent_call_id=self.parent_call_id,
        )
        sandbox = make_sandbox(rlm.sandbox)
        self._sandbox = sandbox
        outcome = _Outcome("", "error")
        error: str | None = None
        try:
            await sandbox.start(
                SandboxConfig(
                    context=self.context,
                    host=self._host,
                    subcalls=rlm.max_depth > 0,
                    max_output_chars=rlm.max_output_chars,
                )
            )
            if self.parent is None:
                self.run.isolation = sandbox.isolation
            outcome = await self._loop(sandbox)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            await sandbox.close()
            self.emit(
                "node_end",
                answer=outcome.answer,
                iterations=self.iterations,
                stopped=outcome.stopped if error is None else "error",
                usage=Usage.to_dict(self.ledger.report()),
                duration_s=time.monotonic() - started,
                error=error,
            )
        return outcome

    def _system_prompt(self) -> str:
        rlm = self.run.rlm
        if getattr(self.model, "prompt_style", "full") == "compact":
            from .prompts_compact import compact_system_prompt  # type: ignore[import-not-found]

            text: str = compact_system_prompt(
                self.context.info, subcalls=rlm.max_depth > 0, max_depth=rlm.max_depth
            )
            return text
        return prompts.system_prompt(
            self.context.info,
            max_depth=rlm.max_depth,
            depth=self.depth,
            sub_window=rlm.sub_model.context_window,
        )

    async def _loop(self, sandbox: Sandbox) -> _Outcome:
        rlm = self.run.rlm
        self.messages = [
            {"role": "system", "content": self._system_prompt()},
            {"role": "user", "content": prompts.first_turn(self.query)},
        ]
        for iteration in range(1, rlm.max_iterations + 1):
            self.iterations = iteration
            try:
                reply = await self._turn(iteration)
            except BudgetExceeded:
                return _Outcome(await self._best_answer(sandbox), "budget")
            parsed = parse_reply(reply)
            if not parsed.cells:
                if parsed.final is not None:
                    answer = await self._resolve_final(
                        sandbox, parsed.final.kind, parsed.final.value
                    )
                    if answer is not None:
                        return _Outcome(answer, None)
                    continue
                self.messages.append({"role": "user", "content": prompts.NO_CODE_NUDGE})
                continue
            results: list[CellResult] = []
            for index, code in enumerate(parsed.cells):
                result = await self._cell(sandbox, code, iteration, index)
                results.append(result)
                if result.final is not None:
                    return _Outcome(result.final, None)
            if parsed.final is not None and parsed.final.kind == "var":
                # "```repl\nresult = ...\n```\nFINAL_VAR(result)": the code ran first.
                answer = await self._resolve_final(sandbox, "var", parsed.final.value)
                if answer is not None:
                    return _Outcome(answer, None)
            if self.ledger_exhausted():
                return _Outcome(await self._best_answer(sandbox), "budget")
            remaining = rlm.max_iterations - iteration
            self.messages.append(
                {"role": "user", "content": prompts.cell_feedback(results, remaining)}
            )
        return await self._last_turn(sandbox)

    async def _turn(self, iteration: int) -> str:
        call_id = self.run.tracer.new_id("c")
        text = await self.run.call_model(
            self.model,
            self.messages,
            node=self,
            depth=self.depth,
            purpose="turn",
            call_id=call_id,
            iteration=iteration,
        )
        self.messages.append({"role": "assistant", "content": text})
        return text

    async def _last_turn(self, sandbox: Sandbox) -> _Outcome:
        self.messages.append({"role": "user", "content": prompts.LAST_TURN})
        try:
            reply = await self._turn(self.iterations + 1)
        except BudgetExceeded:
            return _Outcome(await self._best_answer(sandbox), "budget")
        parsed = parse_reply(reply)
        if parsed.final is not None:
            answer = await self._resolve_final(sandbox, parsed.final.kind, parsed.final.value)
            if answer is not None:
                return _Outcome(answer, "iterations")
        return _Outcome(parsed.prose.strip() or reply.strip(), "iterations")

    async def _cell(self, sandbox: Sandbox, code: str, iteration: int, index: int) -> CellResult:
        t0 = time.time()
        result = await sandbox.run(code, timeout=self.run.rlm.cell_timeout)
        self.emit(
            "cell",
            iteration=iteration,
            index=index,
            code=code,
            output=result.output,
            error=result.error,
            t0=t0,
            duration_s=time.time() - t0,
            final=result.final,
            timed_out=result.timed_out,
            restarted=result.restarted,
        )
        return result

    async def _resolve_final(self, sandbox: Sandbox, kind: str, value: str) -> str | None:
        """A FINAL written as text. FINAL_VAR(name) is looked up in the REPL; if that
        fails the model is told why and the run goes on (``None``)."""
        if kind == "text":
            return value
        result = await self._cell(sandbox, f"FINAL_VAR({value!r})\n", self.iterations, -1)
        if result.final is not None:
            return result.final
        self.messages.append({"role": "user", "content": prompts.cell_feedback([result], 0)})
        return None

    async def _best_answer(self, sandbox: Sandbox) -> str:
        """What the REPL's ``answer`` dict holds when the run must stop early."""
        result = await sandbox.run('print(answer.get("content", ""), end="")\n', timeout=10)
        return result.output if result.error is None else ""

    def ledger_exhausted(self) -> bool:
        try:
            self.ledger.check()
        except BudgetExceeded:
            return True
        return False

    # -- calls from the REPL -------------------------------------------------------
    async def _host(self, name: str, payload: dict[str, Any]) -> Any:
        if name == "llm_query":
            return await self._llm(payload["prompt"], payload.get("model"))
        if name == "llm_batch":
            return await self._batch(
                [self._llm(p, payload.get("model"), batch) for p, batch in self._batched(payload)]
            )
        if name == "rlm_query":
            return await self._rlm(payload["prompt"], payload.get("context"))
        if name == "rlm_batch":
            contexts = payload.get("contexts") or [None] * len(payload["prompts"])
            if len(contexts) != len(payload["prompts"]):
                raise ConfigError("rlm_batch: prompts and contexts differ in length")
            return await self._batch(
                [
                    self._rlm(p, c, batch)
                    for (p, batch), c in zip(self._batched(payload), contexts, strict=True)
                ]
            )
        if name == "budget":
            return self.ledger.remaining()
        raise ConfigError(f"the REPL asked for an unknown host function {name!r}")

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
        self, prompt: str, model_spec: str | None, batch: tuple[str, int] | None = None
    ) -> str:
        model = self.run.model_for(model_spec, self.run.rlm.sub_model)
        call_id = self.run.tracer.new_id("c")
        t0 = time.time()
        answer: str | None = None
        error: str | None = None
        try:
            answer = await self.run.call_model(
                model,
                [{"role": "user", "content": prompt}],
                node=self,
                depth=self.depth + 1,
                purpose="sub",
                call_id=call_id,
            )
            return answer
        except Exception as exc:
            error = str(exc)
            raise
        finally:
            self.emit(
                "subcall",
                call_id=call_id,
                kind="llm",
                iteration=self.iterations,
                batch_id=batch[0] if batch else None,
                index=batch[1] if batch else None,
                prompt=prompt,
                answer=answer,
                model=model.spec,
                t0=t0,
                duration_s=time.time() - t0,
                error=error,
            )

    async def _rlm(self, prompt: str, context: Any, batch: tuple[str, int] | None = None) -> str:
        rlm = self.run.rlm
        if self.depth + 1 >= rlm.max_depth:
            return await self._llm(prompt, None, batch)
        call_id = self.run.tracer.new_id("c")
        t0 = time.time()
        child = _Node(
            self.run,
            prompt,
            Context(context if context is not None else prompt),
            depth=self.depth + 1,
            parent=self,
            ledger=self.ledger.child(),
            parent_call_id=call_id,
        )
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
                "subcall",
                call_id=call_id,
                kind="rlm",
                iteration=self.iterations,
                batch_id=batch[0] if batch else None,
                index=batch[1] if batch else None,
                prompt=prompt,
                answer=answer,
                model=child.model.spec,
                t0=t0,
                duration_s=time.time() - t0,
                error=error,
                child_node_id=child.node_id,
            )
