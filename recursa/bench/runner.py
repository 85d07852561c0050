"""Run benchmark tasks with several methods and record one JSON line per item and method.

``run_bench`` goes through every task × length × item × method, writes each
result to ``<out>/results.jsonl`` as soon as it is known (flushed), and skips
pairs already there, so an interrupted run resumes where it stopped. A failed
run is a row with ``error`` set and score 0, never a crash of the bench.

Two executors: ``local`` runs items concurrently on one event loop (bounded by
``concurrency``); ``ray`` sends each (item, method) to a Ray task (a local Ray,
or an existing cluster at ``ray_address``). A Ray task rebuilds its item from
``(task, length, seed, index)``; contexts never travel through Ray.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..budget import Budget, Usage
from ..errors import ConfigError
from ..jobrunner import (
    CONFIG_FILE,
    Progress,
    ResultsFile,
    check_same_settings,
    describe,
    ray_module,
    read_rows,
    refuse_running_loop,
    run_on_ray,
)
from ..repl import sandbox_names
from .methods import Method, MethodContext, MethodResult, get_method
from .provenance import environment, task_records
from .scoring import citation_scores
from .tasks import Task, get_task
from .tasks.base import Item, item_id
from .tokens import parse_length

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_LENGTHS",
    "RESULTS_FILE",
    "BenchConfig",
    "BenchSummary",
    "ResultRow",
    "execute",
    "read_results",
    "run_bench",
    "run_one",
]

RESULTS_FILE = "results.jsonl"
TRACE_DIR = "traces"
DEFAULT_LENGTHS: tuple[int, ...] = (8_000, 32_000, 128_000)
MIN_LENGTH = 1_000  # tokens: the smallest context every task can build
ANSWER_CHARS = 2_000  # answers longer than this are cut in results.jsonl

Executor = Literal["local", "ray"]


@dataclass
class ResultRow:
    """One line of ``results.jsonl``: one method's run on one item."""

    task: str
    length: int
    item: str
    index: int
    method: str
    score: float
    cost_usd: float | None
    input_tokens: int
    output_tokens: int
    calls: int
    seconds: float
    trace: str | None
    error: str | None
    stopped: str | None = None
    model: str = ""
    sub_model: str | None = None
    answer: str = ""
    #: where the gold has a location (sniah's needle): the citations' precision and
    #: recall against it (:func:`~recursa.bench.scoring.citation_scores`)
    citation_precision: float | None = None
    citation_recall: float | None = None
    #: the gold answer as text (JSON for a non-string gold), cut like ``answer``
    gold: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRow:
        """A row read back; fields an older recursa did not write get their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**_OLD_ROW_DEFAULTS, **{k: v for k, v in data.items() if k in known}})

    @property
    def key(self) -> tuple[str, str]:
        return self.item, self.method


#: Defaults for the required fields that rows written by older versions may lack.
_OLD_ROW_DEFAULTS: dict[str, Any] = {
    "input_tokens": 0,
    "output_tokens": 0,
    "calls": 0,
    "seconds": 0.0,
    "trace": None,
    "error": None,
}


@dataclass(frozen=True)
class BenchConfig:
    """Everything one benchmark run needs; checked when made."""

    tasks: tuple[Task, ...]
    methods: tuple[Method, ...]
    model: str
    sub_model: str | None = None
    base_url: str | None = None
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    n: int = 20
    out_dir: Path = Path("results")
    concurrency: int = 4
    executor: Executor = "local"
    ray_address: str | None = None
    seed: int = 0
    sandbox: str = "subprocess"
    max_iterations: int = 30
    budget: Budget | None = None
    retry_failed: bool = False
    context_window: int | None = None
    trace_prompts: str = "cut"  # "full": traces keep whole prompts (for trace export)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("no benchmark task given")
        if not self.methods:
            raise ConfigError("no benchmark method given")
        if not self.lengths:
            raise ConfigError("no context length given")
        for name, value in (("n", self.n), ("concurrency", self.concurrency)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.context_window is not None and self.context_window < 1_000:
            raise ConfigError(f"context_window must be at least 1000 tokens, got "
                              f"{self.context_window}")  # fmt: skip
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"unknown executor {self.executor!r} (choose local or ray)")
        if self.sandbox not in (known := sandbox_names()):
            raise ConfigError(f"unknown sandbox {self.sandbox!r} (choose one of: "
                              f"{', '.join(known)})")  # fmt: skip
        for kind, names in (
            ("task", [t.name for t in self.tasks]),
            ("method", [m.name for m in self.methods]),
        ):
            if len(set(names)) != len(names):
                raise ConfigError(f"a benchmark {kind} is given twice: {', '.join(names)}")
        for method in self.methods:
            method.check()
        _check_lengths(self.tasks, self.lengths)
        # Settings a run would refuse, and a model that cannot be used (no key, bad name),
        # are an error now, not in every row.
        ctx = self.method_context()
        ctx.settings()
        ctx.resolve_model()
        if self.sub_model is not None:
            ctx.resolve_sub_model()
        if self.executor == "ray":
            ray_module()

    @property
    def results_path(self) -> Path:
        return self.out_dir / RESULTS_FILE

    def method_context(self) -> MethodContext:
        trace_dir = self.out_dir / TRACE_DIR
        return MethodContext(
            model=self.model,
            sub_model=self.sub_model,
            base_url=self.base_url,
            # Ray workers may run in another directory: give them an absolute path.
            trace_dir=trace_dir.resolve() if self.executor == "ray" else trace_dir,
            sandbox=self.sandbox,
            max_iterations=self.max_iterations,
            budget=self.budget,
            context_window=self.context_window,
            trace_prompts=self.trace_prompts,
        )


def _check_lengths(tasks: Sequence[Task], lengths: Sequence[int]) -> None:
    """Every length is one every task can build (before anything runs)."""
    for length in lengths:
        if length < MIN_LENGTH:
            raise ConfigError(f"length {length:,} is too small: the smallest is "
                              f"{MIN_LENGTH:,} tokens (1k)")  # fmt: skip
        for task in tasks:
            limit = getattr(task, "max_length_tokens", None)
            if callable(limit) and length > (most := limit()):
                raise ConfigError(f"{task.name} can build at most about {most:,} tokens; "
                                  f"{length:,} were asked for")  # fmt: skip


@dataclass
class BenchSummary:
    """What a call of :func:`run_bench` did."""

    results: Path
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    cost_usd: float | None = 0.0
    seconds: float = 0.0


def run_bench(
    tasks: Sequence[str | Task],
    methods: Sequence[str | Method],
    model: str,
    sub_model: str | None = None,
    *,
    base_url: str | None = None,
    lengths: Sequence[int | str] = DEFAULT_LENGTHS,
    n: int = 20,
    out_dir: str | Path = "results",
    concurrency: int = 4,
    executor: Executor = "local",
    ray_address: str | None = None,
    seed: int = 0,
    sandbox: str = "subprocess",
    progress: bool = True,
    max_iterations: int = 30,
    budget: Budget | None = None,
    retry_failed: bool = False,
    context_window: int | None = None,
    trace_prompts: str = "cut",
) -> BenchSummary:
    """Run every task × length × item × method not yet in ``<out_dir>/results.jsonl``.

    ``tasks`` and ``methods`` are registry names or objects. ``budget`` caps each
    run (one item, one method). Rows that failed are run again only with
    ``retry_failed``. ``context_window`` (tokens) is the window the baselines cut
    and chunk to, when not the model's own (128K when the model declares none).
    ``trace_prompts="full"`` keeps whole prompts in the traces, for
    ``recursa trace export --min-score``. Blocks; call it outside an event loop.
    """
    config = BenchConfig(
        tasks=tuple(get_task(t) if isinstance(t, str) else t for t in tasks),
        methods=tuple(get_method(m) if isinstance(m, str) else m for m in methods),
        model=model,
        sub_model=sub_model,
        base_url=base_url,
        lengths=tuple(parse_length(v) for v in lengths),
        n=n,
        out_dir=Path(out_dir),
        concurrency=concurrency,
        executor=executor,
        ray_address=ray_address,
        seed=seed,
        sandbox=sandbox,
        max_iterations=max_iterations,
        budget=budget,
        retry_failed=retry_failed,
        context_window=context_window,
        trace_prompts=trace_prompts,
    )
    return execute(config, progress=progress)


def execute(config: BenchConfig, *, progress: bool = True) -> BenchSummary:
    """Run a checked :class:`BenchConfig` (see :func:`run_bench`)."""
    refuse_running_loop("run_bench")
    _check_same_models(config)
    plan = _plan(config)
    summary = BenchSummary(config.results_path, skipped=plan.skipped)
    started = time.monotonic()
    with (
        ResultsFile(config.results_path) as out,
        Progress("bench", plan.pending, progress) as bar,
    ):

        def record(row: ResultRow) -> None:
            out.write(row.to_dict())
            summary.ran += 1
            summary.failed += row.error is not None
            summary.cost_usd = _add(summary.cost_usd, row.cost_usd)
            cost = "cost n/a" if summary.cost_usd is None else f"${summary.cost_usd:,.2f}"
            bar.advance(f"{summary.failed} failed, {cost}")

        if config.executor == "ray":
            _run_ray(config, plan, record)
        else:
            asyncio.run(_run_local(config, plan, record))
    summary.seconds = time.monotonic() - started
    return summary


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


# -- one run -----------------------------------------------------------------------------


async def run_one(task: Task, item: Item, method: Method, ctx: MethodContext) -> ResultRow:
    """``method`` on ``item``, scored; any failure becomes a row with ``error`` and score 0."""
    started = time.monotonic()
    try:
        result = await method.run(item, ctx)
    except Exception as exc:  # recorded in the row: one bad run must not end the bench
        result = MethodResult("", Usage(), time.monotonic() - started, error=describe(exc))
    score = 0.0
    if result.error is None:
        try:
            score = float(task.score(result.answer, item.gold))
        except Exception as exc:  # a scorer bug is recorded like any other failure
            result.error = f"scoring failed: {describe(exc)}"
    return _row(
        task, item.id, _index(item), item.length_tokens, method, ctx, result, score,
        gold_spans(item), _gold_text(item.gold),
    )  # fmt: skip


def _row(
    task: Task,
    item: str,
    index: int,
    length: int,
    method: Method,
    ctx: MethodContext,
    result: MethodResult,
    score: float,
    gold_spans: list[tuple[int, ...]] | None = None,
    gold: str | None = None,
) -> ResultRow:
    usage = result.usage
    return ResultRow(
        task=task.name,
        length=length,
        item=item,
        index=index,
        method=method.name,
        score=score,
        cost_usd=usage.cost_usd,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        calls=usage.calls,
        seconds=round(result.seconds, 3),
        trace=str(result.trace) if result.trace is not None else None,
        error=result.error,
        stopped=result.stopped,
        model=_spec(ctx.model),
        sub_model=_spec(ctx.sub_model) if ctx.sub_model is not None else None,
        answer=result.answer[:ANSWER_CHARS],
        **_citation_fields(result, gold_spans or []),
        gold=gold,
    )


def _gold_text(gold: Any) -> str:
    text = gold if isinstance(gold, str) else json.dumps(gold, ensure_ascii=False, default=str)
    return text[:ANSWER_CHARS]


def gold_spans(item: Item) -> list[tuple[int, ...]]:
    """Where an item's gold answer is in its context, as character spans: the needle of
    sniah (``needle_offset`` and ``needle`` in its meta), or ``meta["gold_spans"]``
    (``[start, end]``, or ``[item, start, end]`` in a list context: browsecomp-lite's
    evidence documents)."""
    meta = item.meta
    spans = meta.get("gold_spans")
    if isinstance(spans, list):
        return [tuple(int(v) for v in span) for span in spans]
    offset, needle = meta.get("needle_offset"), meta.get("needle")
    if isinstance(offset, int) and isinstance(needle, str):
        return [(offset, offset + len(needle))]
    return []


def _citation_fields(result: MethodResult, spans: list[tuple[int, ...]]) -> dict[str, float | None]:
    precision, recall = citation_scores(result.citations, spans)
    return {"citation_precision": precision, "citation_recall": recall}


def _spec(model: Any) -> str:
    return model if isinstance(model, str) else str(getattr(model, "spec", model))


def _index(item: Item) -> int:
    tail = item.id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


# -- planning and resuming ---------------------------------------------------------------


@dataclass
class _Group:
    """The runs still to do for one task at one length."""

    task: Task
    length: int
    pending: list[tuple[int, Method]] = field(default_factory=list)


@dataclass
class _Plan:
    groups: list[_Group]
    skipped: int

    @property
    def pending(self) -> int:
        return sum(len(g.pending) for g in self.groups)


def read_results(path: Path) -> list[ResultRow]:
    """The rows of a ``results.jsonl``, the last one for each (item, method); lines that
    are not complete JSON (a run killed mid-write) are ignored."""
    rows: dict[tuple[str, str], ResultRow] = {}
    for data in read_rows(path):
        row = ResultRow.from_dict(data)
        rows[row.key] = row
    return list(rows.values())


def _plan(config: BenchConfig) -> _Plan:
    done = {
        row.key
        for row in read_results(config.results_path)
        if row.error is None or not config.retry_failed
    }
    groups: list[_Group] = []
    skipped = 0
    for task in config.tasks:
        for length in config.lengths:
            group = _Group(task, length)
            for index in range(config.n):
                ident = item_id(task.name, length, config.seed, index)
                for method in config.methods:
                    if (ident, method.name) in done:
                        skipped += 1
                    else:
                        group.pending.append((index, method))
            if group.pending:
                groups.append(group)
    return _Plan(groups, skipped)


def _check_same_models(config: BenchConfig) -> None:
    """Refuse to mix results of different models in one directory; record the models."""
    check_same_settings(
        config.out_dir,
        {"model": config.model, "sub_model": config.sub_model},
        {
            "base_url": config.base_url,
            "seed": config.seed,
            "sandbox": config.sandbox,
            "max_iterations": config.max_iterations,
            "environment": environment(),
            "tasks": task_records(config.tasks, earlier=config.out_dir / CONFIG_FILE),
        },
    )


# -- local executor ----------------------------------------------------------------------


async def _run_local(config: BenchConfig, plan: _Plan, record: Callable[[ResultRow], None]) -> None:
    ctx = config.method_context()
    limit = asyncio.Semaphore(config.concurrency)

    async def one(task: Task, item: Item, method: Method) -> None:
        async with limit:
            row = await run_one(task, item, method, ctx)
        record(row)

    # One (task, length) at a time, so only that group's contexts are held in memory.
    for group in plan.groups:
        items = await asyncio.to_thread(group.task.generate, config.n, group.length, config.seed)
        await asyncio.gather(
            *(one(group.task, items[index], method) for index, method in group.pending)
        )


# -- ray executor ------------------------------------------------------------------------


@dataclass(frozen=True)
class _RayJob:
    """What a Ray task needs: small, so no context travels through Ray."""

    task: Task
    method: Method
    length: int
    n: int
    seed: int
    index: int
    ctx: MethodContext


_generated: dict[tuple[str, ...], list[Item]] = {}
_GENERATED_KEPT = 2


def _item_at(task: Task, index: int, n: int, length: int, seed: int) -> Item:
    """Item ``index`` of ``task.generate(n, length, seed)``, generating the list once per
    process (a Ray worker runs many items of the same task and length).

    Tasks arrive unpickled, so they are known by type, settings and arguments.
    """
    settings = sorted(getattr(task, "__dict__", {}).items())
    key = (type(task).__qualname__, task.name, repr(settings), str(n), str(length), str(seed))
    if key not in _generated:
        while len(_generated) >= _GENERATED_KEPT:
            del _generated[next(iter(_generated))]
        _generated[key] = task.generate(n, length, seed)
    return _generated[key][index]


def _ray_job(job: _RayJob) -> dict[str, Any]:
    """Runs inside a Ray worker: make the item, run the method, return the row.

    An item that cannot be made raises (the driver stops on a ConfigError, as the
    local executor does); every failure of the run itself is in the row.
    """
    item = _item_at(job.task, job.index, job.n, job.length, job.seed)
    row = asyncio.run(run_one(job.task, item, job.method, job.ctx))
    return row.to_dict()


def _failed_job(job: _RayJob, exc: BaseException) -> ResultRow:
    result = MethodResult("", Usage(), 0.0, error=describe(exc))
    ident = item_id(job.task.name, job.length, job.seed, job.index)
    return _row(job.task, ident, job.index, job.length, job.method, job.ctx, result, 0.0)


def _jobs(config: BenchConfig, plan: _Plan) -> Iterator[_RayJob]:
    ctx = config.method_context()
    for group in plan.groups:
        for index, method in group.pending:
            yield _RayJob(group.task, method, group.length, config.n, config.seed, index, ctx)


def _run_ray(config: BenchConfig, plan: _Plan, record: Callable[[ResultRow], None]) -> None:
    jobs = _jobs(config, plan)

    def done(job: _RayJob, outcome: dict[str, Any] | BaseException) -> None:
        if isinstance(outcome, BaseException):  # the worker died
            record(_failed_job(job, outcome))
        else:
            record(ResultRow.from_dict(outcome))

    run_on_ray(
        _ray_job,
        lambda: next(jobs, None),
        done,
        concurrency=config.concurrency,
        address=config.ray_address,
    )
