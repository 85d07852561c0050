"""Ways to answer a benchmark item: the RLM and the RLM paper's baselines, by name.

==================  ==================================================================
``base``            the whole context in one prompt, cut to the model's window
``rlm``             recursa's RLM with ``max_depth=1``: ``llm_query`` sub-calls (the paper's
                    setting)
``rlm-nosub``       the RLM with ``max_depth=0``: a REPL but no sub-calls (the paper's
                    ablation)
``summary``         iterative summarisation: a running summary over chunks that fit the
                    window, then one answer from it (the paper's summary agent)
``codeact-bm25``    a ReAct loop whose one tool is BM25 search over chunks of the context
                    (the paper's CodeAct + BM25 baseline, without the code tool)
==================  ==================================================================

Every method charges each model call to a :class:`~recursa.budget.Ledger`, so
usage (tokens, calls, cost from :mod:`recursa.models.pricing`, ``None`` when a
model is unpriced) is counted the same way for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from ..budget import Budget, Ledger, Usage
from ..errors import BudgetExceeded, ConfigError, RecursaError
from ..models.base import Message, Model
from ..models.registry import ModelOptions, resolve
from ..result import Citation
from ..settings import Settings
from ..trace import Event
from .tasks.base import Item
from .tokens import CHARS_PER_TOKEN

__all__ = [
    "DEFAULT_WINDOW_TOKENS",
    "METHODS",
    "BaseMethod",
    "CodeActBM25Method",
    "Method",
    "MethodContext",
    "MethodResult",
    "RLMMethod",
    "SummaryMethod",
    "context_text",
    "cut_text",
    "get_method",
    "split_text",
]

#: The window assumed for a model that does not declare one (tokens).
DEFAULT_WINDOW_TOKENS = 128_000
#: Tokens kept free in a prompt for instructions, notes and the reply.
RESERVE_TOKENS = 4_096


@dataclass(frozen=True)
class MethodContext:
    """What a method needs besides the item: models, where traces go, limits.

    ``model`` and ``sub_model`` are ``"provider/name"`` strings (resolved by each
    run, so a context can be shipped to another process) or ready models.
    ``context_window`` (tokens) overrides the model's own window for ``base``,
    ``summary`` and ``codeact-bm25``; without either, 128K tokens are assumed.
    ``budget`` caps each run (one item with one method).
    """

    model: str | Model
    sub_model: str | Model | None = None
    base_url: str | None = None
    trace_dir: Path | None = None
    sandbox: str = "subprocess"
    max_iterations: int = 30
    budget: Budget | None = None
    context_window: int | None = None
    request_timeout: float = 300.0
    trace_prompts: str = "cut"

    def settings(self, **changes: Any) -> Settings:
        """The run settings of this context, ``changes`` (a method's ``max_depth``, a
        run's ``trace``) applied: the one place bench settings become run settings."""
        return Settings(
            model=self.model,
            sub_model=self.sub_model,
            base_url=self.base_url,
            request_timeout=self.request_timeout,
            max_iterations=self.max_iterations,
            budget=self.budget,
            sandbox=self.sandbox,
            trace_prompts=self.trace_prompts,
            **changes,
        )

    def resolve_model(self) -> Model:
        return resolve(self.model, self._options())

    def resolve_sub_model(self) -> Model:
        spec = self.sub_model if self.sub_model is not None else self.model
        return resolve(spec, self._options())

    def window(self, model: Model) -> int:
        """The window in tokens that ``model`` is given in this context."""
        return self.context_window or model.context_window or DEFAULT_WINDOW_TOKENS

    def trace_path(self, item: Item, method: str) -> Path | None:
        if self.trace_dir is None:
            return None
        return self.trace_dir / f"{item.id}.{method}.jsonl"

    def _options(self) -> ModelOptions:
        return ModelOptions(base_url=self.base_url, timeout=self.request_timeout)


@dataclass
class MethodResult:
    """One method's answer to one item and what it cost.

    ``error`` is set when the run failed (its answer then does not count);
    ``stopped`` is ``"budget"`` (or the RLM's reason) when it ended early.
    """

    answer: str
    usage: Usage
    seconds: float
    trace: Path | None = None
    error: str | None = None
    stopped: str | None = None
    #: the RLM's citations, checked against the item's context (baselines cite nothing)
    citations: tuple[Citation, ...] = ()


class Method(Protocol):
    """A way to answer benchmark items."""

    @property
    def name(self) -> str:
        """The registry key, e.g. ``"rlm"``."""
        ...

    def check(self) -> None:
        """Raise :class:`ConfigError` if this method cannot run here (a missing package)."""
        ...

    async def run(self, item: Item, ctx: MethodContext) -> MethodResult:
        """Answer ``item``; model failures come back in ``MethodResult.error``."""
        ...


# -- shared helpers ----------------------------------------------------------------------


def context_text(context: str | Sequence[str]) -> str:
    """The context as one string: documents joined by blank lines."""
    return context if isinstance(context, str) else "\n\n".join(context)


def cut_text(text: str, max_chars: int) -> str:
    """``text``, or its first ``max_chars`` characters and a note saying where it was cut."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}\n[context cut at {max_chars:,} of {len(text):,} characters]"


def split_text(text: str, max_chars: int) -> list[str]:
    """``text`` in pieces of at most ``max_chars``, cut at a line end, else a sentence end,
    else a space, when one lies in the second half of the piece."""
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    pieces: list[str] = []
    start = 0
    while len(text) - start > max_chars:
        end = start + max_chars
        half = start + max_chars // 2
        cut = -1
        for sep in ("\n", ". ", " "):
            at = text.rfind(sep, half, end)
            if at >= 0:
                cut = at + len(sep)
                break
        if cut <= start:
            cut = end
        pieces.append(text[start:cut])
        start = cut
    if start < len(text) or not pieces:
        pieces.append(text[start:])
    return pieces


def _units(context: str | Sequence[str], max_chars: int) -> list[str]:
    """The context's documents (or the one string), each split to fit ``max_chars``."""
    docs = [context] if isinstance(context, str) else list(context)
    return [piece for doc in docs for piece in split_text(doc, max_chars)]


def _pack(units: Sequence[str], max_chars: int) -> list[str]:
    """Consecutive units joined by blank lines into chunks of at most ``max_chars``."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for unit in units:
        extra = len(unit) + (2 if current else 0)
        if current and size + extra > max_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
            extra = len(unit)
        current.append(unit)
        size += extra
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def _prompt_chars(window_tokens: int) -> int:
    """Characters of context that fit a window after the reserve for the rest."""
    reserve = min(RESERVE_TOKENS, window_tokens // 4)
    return max(1_000, (window_tokens - reserve) * CHARS_PER_TOKEN)


class _Calls:
    """Makes model calls and charges each to one ledger."""

    def __init__(self, budget: Budget | None) -> None:
        self.ledger = Ledger(budget)
        self._stack = contextlib.AsyncExitStack()

    async def open(self, model: Model) -> Model:
        """Keep ``model``'s connections open until the run ends."""
        if isinstance(model, contextlib.AbstractAsyncContextManager):
            await self._stack.enter_async_context(model)
        return model

    async def ask(self, model: Model, messages: Sequence[Message], *, depth: int = 0) -> str:
        self.ledger.begin_call()
        completion = await model.complete(messages)
        usage = Usage(
            completion.input_tokens,
            completion.output_tokens,
            completion.cached_tokens,
            1,
            completion.cost_usd,
        )
        self.ledger.charge(model.spec, depth, usage)
        return completion.text

    async def close(self) -> None:
        await self._stack.aclose()


async def _run_calls(
    budget: Budget | None, body: Callable[[_Calls], Awaitable[str]]
) -> MethodResult:
    """Run a baseline's ``body``; a spent budget or a failed call ends it with what it has."""
    calls = _Calls(budget)
    started = time.monotonic()
    answer, error, stopped = "", None, None
    try:
        answer = await body(calls)
    except BudgetExceeded:
        stopped = "budget"
    except RecursaError as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        await calls.close()
    return MethodResult(
        answer, calls.ledger.report(), time.monotonic() - started, error=error, stopped=stopped
    )


def _user(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


# -- base --------------------------------------------------------------------------------

BASE_PROMPT = """{context}

Answer the question about the text above.

Question: {query}"""


@dataclass(frozen=True)
class BaseMethod:
    """The whole context in one prompt, cut (with a note) to the model's window."""

    name: str = "base"

    def check(self) -> None:
        pass

    async def run(self, item: Item, ctx: MethodContext) -> MethodResult:
        async def body(calls: _Calls) -> str:
            model = await calls.open(ctx.resolve_model())
            limit = max(0, _prompt_chars(ctx.window(model)) - len(item.query))
            shown = cut_text(context_text(item.context), limit)
            prompt = BASE_PROMPT.format(context=shown, query=item.query)
            return await calls.ask(model, _user(prompt))

        return await _run_calls(ctx.budget, body)


# -- rlm ---------------------------------------------------------------------------------


class _RunEndUsage:
    """A trace sink that keeps the usage of the run's ``run_end`` event (written even when
    the run raises), so a failed run is still charged."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] | None = None

    def __call__(self, event: Event) -> None:
        if event.get("type") == "run_end" and isinstance(event.get("usage"), dict):
            self.usage = event["usage"]

    def close(self) -> None:
        pass

    def report(self) -> Usage:
        u = self.usage or {}
        return Usage(
            int(u.get("input_tokens", 0)),
            int(u.get("output_tokens", 0)),
            int(u.get("cached_tokens", 0)),
            int(u.get("calls", 0)),
            u.get("cost_usd", 0.0),
        )


@dataclass(frozen=True)
class RLMMethod:
    """recursa's RLM over the item's context; ``max_depth=1`` is the paper's setting."""

    name: str = "rlm"
    max_depth: int = 1

    def check(self) -> None:
        pass

    async def run(self, item: Item, ctx: MethodContext) -> MethodResult:
        from ..rlm import RLM

        started = time.monotonic()
        trace = ctx.trace_path(item, self.name)
        rlm = RLM.from_settings(ctx.settings(max_depth=self.max_depth, trace=trace))
        capture = _RunEndUsage()
        try:
            result = await rlm.acompletion(item.query, item.context, sinks=[capture])
        except RecursaError as exc:
            return MethodResult(
                "",
                capture.report(),
                time.monotonic() - started,
                trace=trace,
                error=f"{type(exc).__name__}: {exc}",
            )
        return MethodResult(
            result.answer,
            result.usage,
            result.duration_s,
            trace=result.trace,
            error=result.error,
            stopped=result.stopped,
            citations=tuple(result.citations),
        )


# -- summary -----------------------------------------------------------------------------

SUMMARY_PROMPT = """You are reading a long text one chunk at a time, keeping notes that \
will let you answer a question about it afterwards. You cannot go back to earlier chunks: \
only your notes carry over.

Question: {query}

Your notes so far:
{notes}

Chunk {index} of {total}:
{chunk}

Write your updated notes. Keep everything from the notes so far that may matter for the \
question and add what this chunk adds: exact names, numbers, dates and identifiers, and \
running counts when the question needs counting. At most about {words} words. Reply with \
the notes only."""

SUMMARY_ANSWER_PROMPT = """These are your notes from reading a long text, chunk by chunk:
{notes}

Using the notes, answer the question.

Question: {query}"""


@dataclass(frozen=True)
class SummaryMethod:
    """Iterative summarisation (the paper's summary agent).

    The context is split into chunks that fit the summariser's window
    (``chunk_tokens``, by default the window less a reserve); each call turns the
    previous notes and the next chunk into new notes, focused on the query. The
    sub-model summarises (the paper used GPT-5-nano for this) and the root model
    answers from the final notes.
    """

    name: str = "summary"
    chunk_tokens: int | None = None
    notes_words: int = 500

    def check(self) -> None:
        pass

    async def run(self, item: Item, ctx: MethodContext) -> MethodResult:
        async def body(calls: _Calls) -> str:
            model = await calls.open(ctx.resolve_model())
            summariser = await calls.open(ctx.resolve_sub_model())
            if self.chunk_tokens is not None:
                size = self.chunk_tokens * CHARS_PER_TOKEN
            else:
                size = max(1_000, _prompt_chars(ctx.window(summariser)) - len(item.query))
            chunks = _pack(_units(item.context, size), size)
            notes = "(none yet)"
            for index, chunk in enumerate(chunks, 1):
                prompt = SUMMARY_PROMPT.format(
                    query=item.query,
                    notes=notes,
                    index=index,
                    total=len(chunks),
                    chunk=chunk,
                    words=self.notes_words,
                )
                notes = await calls.ask(summariser, _user(prompt), depth=1)
            final = SUMMARY_ANSWER_PROMPT.format(notes=notes, query=item.query)
            return await calls.ask(model, _user(final))

        return await _run_calls(ctx.budget, body)


# -- codeact-bm25 ------------------------------------------------------------------------

CODEACT_SYSTEM = """You answer a question about a long text that you cannot read directly. \
The text ({chars:,} characters) is split into {passages:,} passages, indexed for BM25 \
keyword search.

End every reply with exactly one action on a line of its own:
SEARCH(keywords)
    search the passages; you get back the {top_k} best matching ones
ANSWER: your final answer
    finish; put your whole answer after "ANSWER:"

Think step by step. Search as often as you need, with different keywords; you have \
{steps} replies in all."""

CODEACT_LAST = "You have no searches left. Reply now with ANSWER: and your final answer."
CODEACT_NUDGE = "End your reply with one action: SEARCH(keywords) or ANSWER: your answer."

_ACTION_RE = re.compile(r"^[ \t*_>`#-]*(SEARCH\((?P<search>.*)\)|ANSWER\s*:)", re.M | re.I)


def parse_action(reply: str) -> tuple[str, str] | None:
    """The reply's last action: ``("search", keywords)`` or ``("answer", text)``."""
    matches = list(_ACTION_RE.finditer(reply))
    if not matches:
        return None
    last = matches[-1]
    if last.group("search") is not None:
        return "search", last.group("search").strip().strip("\"'")
    return "answer", reply[last.end() :].strip().strip("*").strip()


def _bm25s() -> ModuleType:
    try:
        import bm25s
    except ImportError as exc:
        raise ConfigError(
            "the codeact-bm25 method needs the bm25s package: pip install 'recursa[bench]'"
        ) from exc
    module: ModuleType = bm25s
    return module


class BM25Index:
    """BM25 (``bm25s``) over a list of passages."""

    def __init__(self, passages: Sequence[str]) -> None:
        self._bm25s = _bm25s()
        self.passages = list(passages)
        tokens = self._bm25s.tokenize(self.passages, stopwords="en", show_progress=False)
        self._retriever = self._bm25s.BM25()
        self._retriever.index(tokens, show_progress=False)

    def search(self, query: str, k: int) -> list[int]:
        """Indices of the ``k`` best passages for ``query``, best first (none if no
        keyword of the query is in any passage)."""
        words = self._bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        if not words or not words[0] or not self.passages:
            return []
        k = min(k, len(self.passages))
        ids, scores = self._retriever.retrieve(words, k=k, show_progress=False)
        return [int(i) for i, s in zip(ids[0], scores[0], strict=True) if float(s) > 0]


@dataclass(frozen=True)
class CodeActBM25Method:
    """A ReAct loop with one tool, ``SEARCH(keywords)`` (BM25 over passages of about
    ``chunk_tokens``; documents of a list context stay apart), ended by ``ANSWER:``."""

    name: str = "codeact-bm25"
    chunk_tokens: int = 500
    top_k: int = 5
    max_steps: int = 10

    def check(self) -> None:
        _bm25s()

    async def run(self, item: Item, ctx: MethodContext) -> MethodResult:
        async def body(calls: _Calls) -> str:
            model = await calls.open(ctx.resolve_model())
            passages = _units(item.context, self.chunk_tokens * CHARS_PER_TOKEN)
            index = await asyncio.to_thread(BM25Index, passages)
            limit = _prompt_chars(ctx.window(model))
            system = CODEACT_SYSTEM.format(
                chars=sum(len(p) for p in passages),
                passages=len(passages),
                top_k=self.top_k,
                steps=self.max_steps,
            )
            messages: list[Message] = [
                {"role": "system", "content": system},
                {"role": "user", "content": f"Question: {item.query}"},
            ]
            for _ in range(self.max_steps):
                reply = await calls.ask(model, messages)
                messages.append({"role": "assistant", "content": reply})
                action = parse_action(reply)
                if action is not None and action[0] == "answer":
                    return action[1]
                feedback = CODEACT_NUDGE if action is None else self._results(index, action[1])
                messages.append({"role": "user", "content": feedback})
                if sum(len(str(m["content"])) for m in messages) > limit:
                    break
            messages.append({"role": "user", "content": CODEACT_LAST})
            reply = await calls.ask(model, messages)
            action = parse_action(reply)
            return action[1] if action is not None and action[0] == "answer" else reply.strip()

        return await _run_calls(ctx.budget, body)

    def _results(self, index: BM25Index, keywords: str) -> str:
        hits = index.search(keywords, self.top_k)
        if not hits:
            return f"SEARCH({keywords}): no passage matches these keywords."
        shown = "\n\n".join(f"[passage {i}]\n{index.passages[i]}" for i in hits)
        return f"SEARCH({keywords}): the {len(hits)} best passages\n\n{shown}"


# -- registry ----------------------------------------------------------------------------

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        BaseMethod(),
        RLMMethod(),
        RLMMethod(name="rlm-nosub", max_depth=0),
        SummaryMethod(),
        CodeActBM25Method(),
    )
}


def get_method(name: str) -> Method:
    """The registered method called ``name``; a :class:`ConfigError` lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(METHODS)
        raise ConfigError(f"unknown benchmark method {name!r}; known methods: {known}") from None
