"""The loop of one node of the recursion tree: a root-model conversation over its own REPL.

A node asks its model for a turn, runs the code blocks of the reply in its
sandbox, feeds the outputs back, and repeats until an answer is final, the
iterations run out (one last call, the extraction, then asks for the answer in
plain text), ``max_errors`` cells in a row fail, or the budget is spent. The
REPL's calls back to the host are served by the node's
:class:`~recursa.engine.host.Host`; every model request goes through
:meth:`Run.call_model <recursa.engine.run.Run.call_model>`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import citations, prompts
from ..budget import Budget, Ledger
from ..context import Context
from ..errors import BudgetExceeded, RecursaError
from ..models.base import Message, Model, message_chars
from ..parsing import parse_reply
from ..repl import SandboxConfig, make_sandbox
from ..repl.base import CellResult, Sandbox
from ..repl.protocol import MAX_CITATIONS, CitationRef
from ..result import Citation
from ..tools import ToolSet
from ..trace import Cell, ContextShape, NodeEnd, NodeStart, TraceEvent
from .host import Host
from .run import Outcome, Run

if TYPE_CHECKING:
    from ..output import OutputSpec

MAX_VALIDATION_RETRIES = 3
#: Answers without a verified citation sent back under ``require_citations`` before the
#: node ends with ``stopped="unverified"``.
MAX_CITATION_RETRIES = 3
#: The least time a cell is given even at the deadline (so the REPL can report).
MIN_CELL_SECONDS = 0.05
RESET_ANSWER = 'answer = {"content": "", "ready": False}\n'
#: Lists the REPL's variables for the extraction turn, one line each: ``name: type and
#: size = the start of its repr`` (as ``SHOW_VARS`` names them; ``context`` and ``answer``
#: are described elsewhere). It leaves no name behind.
LIST_VARIABLES = """\
def __recursa_variables():
    import reprlib
    short = reprlib.Repr()
    short.maxstring = short.maxother = 160
    short.maxlist = short.maxtuple = short.maxset = short.maxdict = 8
    about = SHOW_VARS()
    names = [k for k in about if k not in ("context", "answer")]
    for name in names[:40]:
        try:
            preview = short.repr(globals()[name])
        except BaseException as exc:
            preview = "<repr failed: " + type(exc).__name__ + ">"
        print(name + ": " + about[name] + " = " + preview)
    if len(names) > 40:
        print("... and", len(names) - 40, "more")
try:
    __recursa_variables()
finally:
    del __recursa_variables
"""
#: The most characters of variable listing the extraction turn shows.
MAX_VARIABLES_CHARS = 6_000


@dataclass
class Node:
    """One node: its query, context, conversation, sandbox and ledger (its branch's share
    of the run's). Build the root with :meth:`root`; children come from :meth:`child`."""

    run: Run
    query: str
    context: Context
    depth: int
    parent: Node | None
    ledger: Ledger
    parent_call_id: str | None = None
    node_id: str = ""
    iterations: int = 0
    messages: list[Message] = field(default_factory=list)
    output: OutputSpec | None = None
    _traced: int = 0
    _sandbox: Sandbox | None = None
    _starting: asyncio.Task[Sandbox] | None = None
    _invalid_answers: int = 0
    _model: Model | None = None  # a child's rlm_query(model=...); None: by depth
    _failed_cells: int = 0  # consecutive, for max_errors
    _ran_code: bool = False
    _cited: dict[CitationRef, Citation] = field(default_factory=dict)  # this ask's, checked
    _search_budget: citations.SearchBudget = field(default_factory=citations.SearchBudget)
    _uncited_answers: int = 0
    host: Host = field(init=False)

    def __post_init__(self) -> None:
        self.node_id = self.run.tracer.new_id("n")
        self.host = Host(self)

    @classmethod
    def root(cls, run: Run, query: str, context: Context) -> Node:
        """The root node of ``run``, charged to the run's ledger."""
        return cls(run, query, context, depth=0, parent=None, ledger=run.ledger)

    def child(
        self,
        query: str,
        context: Context,
        budget: Budget | None,
        call_id: str,
        model: Model | None = None,
    ) -> Node:
        """A child RLM one level down, with its own REPL, (optionally) its own cap, and
        its model: ``model`` (already checked by ``Run.model_for``) or the sub-model."""
        return Node(
            self.run, query, context, depth=self.depth + 1, parent=self,
            ledger=self.ledger.child(budget), parent_call_id=call_id, _model=model,
        )  # fmt: skip

    def attach(self, run: Run) -> None:
        """Carry this root node (its REPL and conversation) over to a new run: each query
        of a :class:`~recursa.session.Session` is its own run, with its own trace and ledger."""
        self.run, self.ledger = run, run.ledger

    @property
    def model(self) -> Model:
        if self._model is not None:
            return self._model
        return self.run.models.root if self.depth == 0 else self.run.models.sub

    @property
    def tools(self) -> ToolSet:
        return self.run.tools if self.depth == 0 else self.run.sub_tools

    def emit(self, event: type[TraceEvent], **fields: Any) -> None:
        """Write an event of this node (``depth`` defaults to the node's own)."""
        fields.setdefault("depth", self.depth)
        parent_id = self.parent.node_id if self.parent else None
        self.run.tracer.emit(event(node_id=self.node_id, parent_id=parent_id, **fields))

    @property
    def started(self) -> bool:
        """Whether this node's sandbox is running (it has variables to show)."""
        return self._sandbox is not None

    def rewind(self, count: int) -> None:
        """Forget the conversation past its first ``count`` messages (a session's
        question that was cancelled), keeping the system prompt."""
        has_system = bool(self.messages) and self.messages[0]["role"] == "system"
        keep = max(count, 1 if has_system else 0)
        del self.messages[keep:]
        self._traced = min(self._traced, keep)

    def untraced_messages(self) -> list[Message]:
        """The messages added since the last traced turn (a trace records each only once)."""
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
            sandbox = make_sandbox(self.run.settings.sandbox)
            self._starting = asyncio.ensure_future(self._start_sandbox(sandbox))

    async def _start_sandbox(self, sandbox: Sandbox) -> Sandbox:
        settings = self.run.settings
        await sandbox.start(
            SandboxConfig(
                context=self.context,
                host=self.host.serve,
                subcalls=settings.max_depth > 0,
                tools=self.tools.specs(),
                max_output_chars=settings.max_output_chars,
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
        """Stop the sandbox (or its start, if it is still starting)."""
        starting, self._starting = self._starting, None
        if starting is not None and self._sandbox is None:
            starting.cancel()  # a start that finished anyway still hands its sandbox over
            (started,) = await asyncio.gather(starting, return_exceptions=True)
            if not isinstance(started, BaseException):
                self._adopt(started)
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await sandbox.close()

    async def solve(self, output: OutputSpec | None = None) -> Outcome:
        """Answer this node's query in a fresh sandbox, then close it."""
        try:
            return await self.ask(self.query, output)
        finally:
            await self.close()

    async def ask(self, query: str, output: OutputSpec | None = None) -> Outcome:
        """Answer ``query`` in this node's (possibly already used) REPL and conversation;
        with ``output`` the answer must validate against it."""
        self.query = query
        self.output = output
        started = time.monotonic()
        self.emit(
            NodeStart, query=query, context=ContextShape.of(self.context.info),
            model=self.model.spec, parent_call_id=self.parent_call_id,
        )  # fmt: skip
        outcome = Outcome("", "error")
        error: str | None = None
        try:
            if self._sandbox is None and self._starting is None:
                self.messages = [{"role": "system", "content": self._system_prompt()}]
                self._start_soon()
            elif len(self.messages) > 1:  # a follow-up query in a session
                await (await self.open()).run(RESET_ANSWER, timeout=10)
            self.iterations = 0
            self._failed_cells = 0
            self._cited, self._uncited_answers = {}, 0
            self._search_budget = citations.SearchBudget()
            self.messages.append({"role": "user", "content": self._first_turn(query)})
            outcome = await self._loop()
            outcome.citations = self.citations
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.emit(
                NodeEnd, answer=outcome.answer, iterations=self.iterations,
                stopped=outcome.stopped if error is None else "error",
                usage=self.ledger.report(),
                duration_s=time.monotonic() - started, error=error or outcome.error,
                citations=tuple(self.citations) or None,
            )  # fmt: skip
        return outcome

    # -- citations ---------------------------------------------------------------------
    @property
    def citations(self) -> list[Citation]:
        """This query's citations so far, each checked against this node's context."""
        return list(self._cited.values())

    async def cite(self, refs: tuple[CitationRef, ...]) -> list[dict[str, Any]]:
        """Check ``refs`` (untrusted, from the REPL) against the context, read here, and
        keep them for the answer; the same citation twice is kept once. At most
        :data:`MAX_CITATIONS` per query. Returns what the REPL is told of each."""
        new = [r for r in dict.fromkeys(refs) if r not in self._cited]
        self._check_room(new)
        checked = await asyncio.to_thread(
            citations.verify, self.context, new, budget=self._search_budget
        )
        self._check_room([r for r in new if r not in self._cited])  # others cited meanwhile
        self._cited.update(zip(new, checked, strict=True))
        return [
            {"verified": c.verified, "reason": c.reason, "start": c.start, "end": c.end,
             "source": c.source}
            for c in (self._cited[r] for r in refs)
        ]  # fmt: skip

    def _check_room(self, new: list[CitationRef]) -> None:
        if len(self._cited) + len(new) > MAX_CITATIONS:
            raise RecursaError(
                f"cite: at most {MAX_CITATIONS} citations per answer "
                f"({len(self._cited)} kept so far); cite the passages that matter"
            )

    def _citation_problem(self) -> str | None:
        """Why the answer is not yet backed under ``require_citations`` (root only)."""
        if not self.run.settings.require_citations or self.depth > 0:
            return None
        if any(c.verified for c in self._cited.values()):
            return None
        if not self._cited:
            return "the answer has no citation"
        lines = "; ".join(f'"{c.quote[:80]}": {c.reason}' for c in list(self._cited.values())[:5])
        return f"no citation of the answer was verified ({lines})"

    def _system_prompt(self) -> str:
        """The built-in system prompt for this node's model and depth, or the user's
        ``system_prompt`` filled in with the same pieces."""
        settings = self.run.settings
        if getattr(self.model, "prompt_style", "full") == "compact":
            from ..prompts_compact import compact_system_prompt

            text: str = compact_system_prompt(
                self.context.info, subcalls=settings.max_depth > 0,
                max_depth=settings.max_depth, template=settings.system_prompt,
                tools=self.tools.specs(), sub_call_tools=self.tools.sub_call.specs(),
            )  # fmt: skip
            return text
        return prompts.system_prompt(
            self.context.info,
            max_depth=settings.max_depth,
            depth=self.depth,
            sub_window=self.run.models.sub.context_window,
            tools=self.tools.specs(),
            template=settings.system_prompt,
            sub_call_tools=self.tools.sub_call.specs(),
        )

    def _first_turn(self, query: str) -> str:
        text = prompts.first_turn(query)
        if self.output is not None:
            text += "\n\n" + self.output.instructions()
        return text

    # -- the loop ----------------------------------------------------------------------
    async def _loop(self) -> Outcome:
        max_iterations = self.run.settings.max_iterations
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
                if self._too_many_errors():
                    return await self._stop_for_errors()
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
                        if self._too_many_errors():
                            return await self._stop_for_errors()
            if final is not None:
                accepted = self._accept(final)
                if isinstance(accepted, Outcome):
                    return accepted
                results.append(CellResult("", error=accepted))
            if self._budget_spent():
                return await self._stop_for_budget()
            if iteration == max_iterations:
                return await self._last_turn(results)
            if not results:
                self.messages.append({"role": "user", "content": prompts.NO_CODE_NUDGE})
                continue
            feedback = prompts.cell_feedback(results, max_iterations - iteration)
            self.messages.append({"role": "user", "content": feedback})
        return await self._last_turn([])

    def _accept(self, answer: str) -> Outcome | str:
        """The outcome for a final answer, or the validation error to show the model."""
        if self.output is None:
            return self._cited_outcome(Outcome(answer, None))
        from ..output import AnswerInvalid  # typed answers only: it imports pydantic

        try:
            value, text = self.output.validate(answer)
        except AnswerInvalid as exc:
            self._invalid_answers += 1
            if self._invalid_answers > MAX_VALIDATION_RETRIES:
                return Outcome(answer, "error", error=f"final answer invalid: {exc}")
            return f"{exc}\nFix the answer and finish again."
        return self._cited_outcome(Outcome(text, None, output=value))

    def _cited_outcome(self, outcome: Outcome) -> Outcome | str:
        """``outcome`` if its citations satisfy ``require_citations``; else the reason to
        show the model, or (retries spent) the outcome ``stopped="unverified"``."""
        problem = self._citation_problem()
        if problem is None:
            return outcome
        self._uncited_answers += 1
        if self._uncited_answers > MAX_CITATION_RETRIES:
            outcome.stopped, outcome.error = "unverified", problem
            return outcome
        return f"{problem}.\n{prompts.CITE_AGAIN}"

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
        limit = self.run.settings.compact_after_chars
        if limit is None:
            window = self.model.context_window
            limit = int(window * 4 * 0.6) if window else 400_000
        if len(self.messages) < 4 or message_chars(self.messages) < limit:
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

    async def _last_turn(self, results: list[CellResult]) -> Outcome:
        """The iterations ran out: one more model call, the extraction, asks for the answer
        in plain text. It is shown the last cells' outputs, the REPL's variables and what
        ``answer["content"]`` holds, and the query again. Its reply is never run: a code
        block is no answer, so a reply that is only code (or empty) leaves the REPL's held
        answer. The node still ends with ``stopped="iterations"``."""
        held = await self._held_answer() if self._ran_code else ""
        variables = await self._variables() if self._ran_code else ""
        turn = prompts.extraction_turn(self.query, results, variables, held)
        self.messages.append({"role": "user", "content": turn})
        try:
            await self._compact_if_long()
            reply = await self._turn(self.iterations + 1)
        except BudgetExceeded:
            return await self._stop_for_budget()
        parsed = parse_reply(reply)
        answer = parsed.prose.strip()
        if parsed.final is not None:
            if parsed.final.kind == "text":
                answer = parsed.final.value
            else:
                lookup = await self._cell(
                    f"FINAL_VAR({parsed.final.value!r})\n", self.iterations + 1, -1
                )
                answer = lookup.final if lookup.final is not None else ""
        if not answer.strip():  # only code, or nothing: the REPL's held answer, if any
            answer = held.strip()
        return self._accept_last(answer)

    async def _variables(self) -> str:
        """The REPL's variables, one line each (:data:`LIST_VARIABLES`), or ``""``."""
        sandbox = await self.open()
        result = await sandbox.run(LIST_VARIABLES, timeout=10)
        if result.error is not None:
            return ""
        text = result.output
        if len(text) > MAX_VARIABLES_CHARS:
            text = text[:MAX_VARIABLES_CHARS] + "\n[... more variables cut]"
        return text

    def _accept_last(self, answer: str) -> Outcome:
        accepted = self._accept(answer)
        if isinstance(accepted, Outcome):
            accepted.stopped = accepted.stopped or "iterations"
            return accepted
        problem = self._citation_problem()
        if problem is not None and accepted.startswith(problem):  # no turn left to cite
            return Outcome(answer, "unverified", error=f"{problem} (the iterations ran out)")
        return Outcome(answer, "iterations", error=accepted)

    async def _cell(self, code: str, iteration: int, index: int) -> CellResult:
        sandbox = await self.open()
        t0 = time.time()
        result = _within(await sandbox.run(code, timeout=self._cell_timeout()),
                         self.run.settings.max_output_chars)  # fmt: skip
        self.emit(
            Cell, iteration=iteration, index=index, code=code, output=result.output,
            error=result.error, t0=t0, duration_s=time.time() - t0,
            final=result.final is not None,
            timed_out=result.timed_out, restarted=result.restarted,
        )  # fmt: skip
        self._ran_code = True
        failed = result.error is not None or result.timed_out
        self._failed_cells = self._failed_cells + 1 if failed else 0
        return result

    def _too_many_errors(self) -> bool:
        """``max_errors`` cells in a row have failed (an error, or the timeout)."""
        limit = self.run.settings.max_errors
        return limit is not None and self._failed_cells >= limit

    def _cell_timeout(self) -> float:
        """The cell timeout, cut to what the budget's ``seconds`` leaves: a cell running at
        the deadline is interrupted (its variables kept, so the best answer survives)."""
        timeout = self.run.settings.cell_timeout
        left = self.ledger.seconds_left()
        return timeout if left is None else max(MIN_CELL_SECONDS, min(timeout, left))

    async def _stop_for_budget(self) -> Outcome:
        """The best answer available when the budget is spent: the REPL's ``answer``."""
        return Outcome(await self._held_answer(), "budget")

    async def _stop_for_errors(self) -> Outcome:
        """``max_errors`` failed cells in a row: the REPL's ``answer``, as on a budget stop."""
        return Outcome(await self._held_answer(), "errors")

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


#: Room for the notes an honest runtime adds after output it already cut at the limit.
NOTES_SLACK = 1_000


def _within(result: CellResult, limit: int) -> CellResult:
    """``result`` with its output and error cut to ``limit`` characters each. Honest
    runtimes cut them already; this holds for any backend, a forged frame included."""
    for name in ("output", "error"):
        text = getattr(result, name)
        if text is not None and len(text) > limit + NOTES_SLACK:
            cut = f"\n[... cut: {len(text) - limit:,} more characters]"
            setattr(result, name, text[:limit] + cut)
    return result
