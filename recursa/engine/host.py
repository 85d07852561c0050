"""Serving a node's REPL: the calls model-written code makes back to the host.

Each request arrives already decoded and type-checked
(:mod:`recursa.repl.protocol`); :meth:`Host.serve` answers it with a JSON
value, or raises, and the REPL then raises ``HostCallError`` with the message.

====================  ==========================================================
request               served by
====================  ==========================================================
``llm_query``         one sub-model call one level down (:meth:`Run.call_model`); with
                      ``tools=``, a function-calling loop (:mod:`recursa.subcall_tools`)
``llm_batch``         many, concurrently, order kept; a failure is ``{"error"}``
``rlm_query``         a child node one level down, on the sub-model or an allowed
                      ``model=`` (``llm_query`` at max depth)
``rlm_batch``         many children, concurrently
``cancel``            end an ``llm_batch(stop_when=...)`` group's calls in flight
``budget``            what is left of each limit (``BUDGET()``)
``tool``              a host function the user granted (``tools=``)
``cite``              check citations against this node's context and keep them
                      for its answer (:meth:`Node.cite`)
====================  ==========================================================
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..budget import Budget
from ..context import Context
from ..errors import ConfigError, RecursaError
from ..models.base import Completion, Message, Model
from ..repl.protocol import (
    BudgetLimits,
    BudgetQuery,
    Cancel,
    Cite,
    HostRequest,
    ImageData,
    LlmBatch,
    LlmQuery,
    ProtocolError,
    RlmBatch,
    RlmQuery,
    ToolCall,
    check_image,
)
from ..subcall_tools import ToolOffering, ToolRun, Trail, granted, run_tool_loop, schemas
from ..trace import Subcall, ToolUse, TracedMessage

if TYPE_CHECKING:
    from .node import Node

#: The error a sub-call of an early-stopped batch ends with.
STOPPED_EARLY = "cancelled: stop_when was met"
Batched = tuple[str, int]  # (batch id, position)


class Host:
    """Answers one node's REPL calls."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._groups: dict[str, set[asyncio.Task[str]]] = {}
        self._cancelled_groups: set[str] = set()

    async def serve(self, request: HostRequest) -> Any:
        """The JSON-able answer to ``request``."""
        match request:
            case LlmQuery(prompt=prompt, model=model, images=images, group=group, tools=tools):
                call = self._llm(prompt, model, images=images, tools=self._granted(tools))
                return await (self._in_group(group, call) if group else call)
            case LlmBatch(prompts=prompts, model=model, tools=tools):
                names = self._granted(tools)
                batch_id, batched = self._batched(prompts)
                return await self._batch(
                    "llm", batch_id, [self._llm(p, model, b, tools=names) for p, b in batched]
                )
            case RlmQuery(prompt=prompt, context=context, budget=limits, model=model):
                return await self._rlm(prompt, context, model=model, budget=limits)
            case RlmBatch(prompts=prompts, contexts=contexts, model=model):
                contexts = contexts if contexts is not None else (None,) * len(prompts)
                batch_id, batched = self._batched(prompts)
                return await self._batch(
                    "rlm", batch_id,
                    [self._rlm(p, c, b, model=model)
                     for (p, b), c in zip(batched, contexts, strict=True)],
                )  # fmt: skip
            case Cancel(group=group):
                self._cancel_group(group)
                return None
            case BudgetQuery():
                return self.node.ledger.remaining()
            case ToolCall(tool=name, args=args, kwargs=kwargs):
                return await self.node.tools.call(name, list(args), kwargs)
            case Cite(citations=refs):
                return await self.node.cite(refs)
        raise ConfigError(f"the REPL asked for an unknown host function {request!r:.60}")

    # -- early-stopped batches ----------------------------------------------------------
    async def _in_group(self, group: str, call: Any) -> str:
        """Run a sub-call that ``cancel`` for its group may stop (early-stopped batches)."""
        if group in self._cancelled_groups:
            call.close()
            raise RecursaError(STOPPED_EARLY)
        task: asyncio.Task[str] = asyncio.ensure_future(call)
        self._groups.setdefault(group, set()).add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if group in self._cancelled_groups and not _current_task_cancelling():
                raise RecursaError(STOPPED_EARLY) from None
            raise
        finally:
            self._groups[group].discard(task)

    def _cancel_group(self, group: str) -> None:
        self._cancelled_groups.add(group)
        for task in self._groups.pop(group, set()):
            task.cancel()

    def _batched(self, prompts: Sequence[str]) -> tuple[str, list[tuple[str, Batched]]]:
        batch_id = self.node.run.tracer.new_id("b")
        return batch_id, [(p, (batch_id, i)) for i, p in enumerate(prompts)]

    async def _batch(self, kind: str, batch_id: str, calls: Sequence[Any]) -> list[Any]:
        """Run a batch's calls (:func:`_gather`), telling live sinks how many are done
        (``batch_start``, ``batch_progress``, ``batch_end``): progress draws a bar from them."""
        tracer, node_id = self.node.run.tracer, self.node.node_id
        done = 0

        def one_done(_: asyncio.Future[Any]) -> None:
            nonlocal done
            done += 1
            tracer.notify("batch_progress", node_id, batch_id=batch_id, done=done)

        tracer.notify("batch_start", node_id, batch_id=batch_id, kind=kind, total=len(calls))
        tasks = [asyncio.ensure_future(call) for call in calls]
        for task in tasks:
            task.add_done_callback(one_done)
        try:
            return await _gather(tasks)
        finally:
            tracer.notify("batch_end", node_id, batch_id=batch_id)

    # -- sub-calls ----------------------------------------------------------------------
    def _granted(self, names: Sequence[str]) -> list[str]:
        """The tools a sub-call names, each one the user granted to sub-calls."""
        return granted(self.node.tools.sub_call, names) if names else []

    async def _llm(
        self,
        prompt: str,
        model_spec: str | None,
        batch: Batched | None = None,
        *,
        images: Sequence[ImageData] = (),
        tools: Sequence[str] = (),
    ) -> str:
        node, run = self.node, self.node.run
        model = run.model_for(model_spec, run.models.sub)
        call_id = run.tracer.new_id("c")
        t0 = time.time()
        answer: str | None = None
        error: str | None = None
        trail = Trail()
        try:
            message: Message = {"role": "user", "content": _content(model, prompt, images)}
            if tools:
                answer = await self._with_tools(model, message, tools, call_id, trail)
            else:
                answer = await run.call_model(
                    model, [message], node=node, depth=node.depth + 1, purpose="sub",
                    call_id=call_id,
                )  # fmt: skip
            return answer
        except (Exception, asyncio.CancelledError) as exc:
            error = str(exc) or type(exc).__name__
            raise
        finally:
            extra: dict[str, Any] = {}
            if tools:
                extra = {"tools": tuple(tools), "tool_steps": trail.steps,
                         "messages": TracedMessage.all(trail.messages)}  # fmt: skip
            node.emit(
                Subcall, call_id=call_id, kind="llm", iteration=node.iterations,
                batch_id=batch[0] if batch else None, index=batch[1] if batch else None,
                prompt=prompt, answer=answer, model=model.spec, t0=t0,
                duration_s=time.time() - t0, error=error, images=len(images), **extra,
            )  # fmt: skip

    async def _with_tools(
        self,
        model: Model,
        first: Message,
        names: Sequence[str],
        call_id: str,
        trail: Trail,
    ) -> str:
        """A sub-call that may use the granted tools ``names``: every model request is a
        metered :meth:`Run.call_model` (its own ``model_call`` event), every tool run a
        ``tool_use`` event; ``trail`` follows its conversation, for the trace."""
        node, run = self.node, self.node.run
        toolset = node.tools.sub_call
        offered = schemas(toolset, names)
        offering = ToolOffering(model, offered)

        async def ask(messages: list[Message]) -> Completion:
            await run.call_model(
                offering, messages, node=node, depth=node.depth + 1, purpose="sub",
                call_id=call_id,
            )  # fmt: skip
            assert offering.last is not None  # call_model returned: the offering replied
            return offering.last

        def traced(use: ToolRun) -> None:
            node.emit(
                ToolUse, call_id=call_id, step=use.step, tool=use.tool,
                arguments=json.dumps(use.arguments, ensure_ascii=False), result=use.result,
                error=use.error, t0=use.t0,
                duration_s=use.duration_s,
            )  # fmt: skip

        return await run_tool_loop(
            first, toolset, offered, native=bool(getattr(model, "supports_tools", False)),
            max_steps=run.settings.sub_call_tool_steps, ask=ask, on_tool=traced, trail=trail,
        )  # fmt: skip

    async def _rlm(
        self,
        prompt: str,
        context: Any,
        batch: Batched | None = None,
        *,
        model: str | None = None,
        budget: BudgetLimits | None = None,
    ) -> str:
        node = self.node
        if node.depth + 1 >= node.run.settings.max_depth:
            return await self._llm(prompt, model, batch)
        # the same check and resolution as llm_query(model=...): only a model the user allowed
        child_model = node.run.model_for(model, node.run.models.sub)
        node.ledger.check()  # a spent budget starts no child (nor its sandbox)
        call_id = node.run.tracer.new_id("c")
        t0 = time.time()
        cap = None if budget is None else Budget(**vars(budget))
        slots = node.run.child_slots(node.depth + 1)
        await slots.acquire()  # at most max_child_sandboxes children at once per depth
        try:
            node.ledger.check()  # spent while this child waited for a slot
        except BaseException:
            slots.release()
            raise
        child = node.child(
            prompt, Context(context if context is not None else prompt), cap, call_id,
            model=child_model,
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
            slots.release()
            child.context.cleanup()
            node.emit(
                Subcall, call_id=call_id, kind="rlm", iteration=node.iterations,
                batch_id=batch[0] if batch else None, index=batch[1] if batch else None,
                prompt=prompt, answer=answer, model=child.model.spec, t0=t0,
                duration_s=time.time() - t0, error=error, child_node_id=child.node_id,
            )  # fmt: skip


async def _gather(calls: Sequence[Any]) -> list[Any]:
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


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _content(model: Model, prompt: str, images: Sequence[ImageData]) -> str | list[dict[str, Any]]:
    """A sub-call's message content: text, or OpenAI-style parts with images.

    The host builds every part itself: one text part from the prompt (always a plain
    ``str``, whatever the REPL passed), and one ``data:`` URL per image from bytes it has
    checked (:func:`~recursa.repl.protocol.check_image`: an allowed image type, valid
    base64, the type's magic bytes). Anything else is refused, so model code can never put
    a URL (which the provider would fetch: data leaving a sandbox with no network) or a
    content part of its own into a provider request.
    """
    text = _plain_text(prompt)
    if not images:
        return text
    if not getattr(model, "supports_images", True):
        raise ConfigError(f"{model.spec} cannot take images")
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for image in images:
        parts.append({"type": "image_url", "image_url": {"url": _data_url(image)}})
    return parts


def _plain_text(prompt: Any) -> str:
    if type(prompt) is not str:
        raise ConfigError(f"a sub-call's prompt must be text, not {type(prompt).__name__}")
    return prompt


def _data_url(image: Any) -> str:
    """The ``data:`` URL of a checked image; :class:`ConfigError` for anything else."""
    if type(image) is not ImageData:
        raise ConfigError("an image must come from the context (Image objects)")
    try:
        mime, data = check_image(image.mime, image.base64, "llm_query")
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None
    return f"data:{mime};base64,{data}"
