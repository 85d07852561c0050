"""One RLM run per line of a JOBS.jsonl file, resumable, locally or on Ray.

:func:`load_jobs` reads and checks the whole file before anything runs (a bad line
is one :class:`~recursa.errors.ConfigError` naming its line). :func:`run_batch`
writes ``<out>/results.jsonl`` (one row per job, flushed as each ends, so a crash
loses nothing finished), ``<out>/traces/<id>.jsonl`` and ``<out>/summary.json``.
A rerun skips the jobs already there (failed ones too, unless ``retry_failed``);
jobs skipped for the total budget run again.

The total budget (``total``: USD and tokens for this invocation) composes with each
job's own: a job starts with its own budget capped by an equal share of what is
left once the jobs in flight have their caps held, so the jobs together can never
spend more than the total (each run keeps to its cap, see :mod:`recursa.budget`).
Once the total is spent, the jobs not started are recorded as skipped.

Executors: ``local`` runs ``concurrency`` jobs at once on one event loop
(``RLM.acompletion``); ``ray`` sends each job to a Ray task. A job carries only
its paths: each task reads its context on its own node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .budget import Budget, Usage
from .errors import ConfigError
from .events import RunEnd, parse_event
from .jobrunner import (
    Progress,
    ResultsFile,
    check_same_settings,
    describe,
    ray_module,
    read_rows,
    refuse_running_loop,
    run_on_ray,
)
from .models import pricing
from .models.base import ModelOptions
from .models.registry import resolve
from .rlm import RLM
from .settings import Settings
from .trace import Event

__all__ = [
    "JOB_OPTIONS",
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "BatchConfig",
    "BatchSummary",
    "Job",
    "JobRow",
    "load_jobs",
    "read_job_rows",
    "run_batch",
]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
TRACE_DIR = "traces"

Executor = Literal["local", "ray"]
Status = Literal["answered", "stopped", "failed", "skipped"]

#: What a job line may set besides ``id``, ``query`` and ``context``.
JOB_OPTIONS = ("model", "sub_model", "max_depth", "max_iterations", "budget", "output_schema")
_REQUIRED = ("id", "query", "context")
_BUDGET_KEYS = ("usd", "tokens", "seconds", "calls")
#: A job id names its trace file: letters, digits, ``.``, ``_`` and ``-``.
_ID = re.compile(r"[\w-][\w.-]{0,127}")


# -- jobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One line of JOBS.jsonl, checked. ``context`` holds absolute paths: one, or the
    list the line gave (handed to the RLM as it was given)."""

    id: str
    query: str
    context: Path | tuple[Path, ...]
    origin: str = ""  # "FILE:LINE", where errors about the job point
    changes: Mapping[str, Any] = field(default_factory=dict)  # Settings fields
    budget: Budget | None = None
    output_schema: dict[str, Any] | None = None

    def context_input(self) -> Path | list[Path]:
        return self.context if isinstance(self.context, Path) else list(self.context)


def load_jobs(path: Path) -> list[Job]:
    """Every job of a JOBS.jsonl file, or a ConfigError ``"FILE:LINE: why"`` for the first
    bad line: not JSON, a missing or unknown key, a repeated id, a context path that
    does not exist. Relative paths are relative to the file's folder. Blank lines are
    passed over."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    jobs: list[Job] = []
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            job = _job(json.loads(line), f"{path}:{number}", path.parent)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        except ConfigError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        if job.id in lines:
            raise ConfigError(f"{path}:{number}: id {job.id!r} is already used on line "
                              f"{lines[job.id]}")  # fmt: skip
        lines[job.id] = number
        jobs.append(job)
    if not jobs:
        raise ConfigError(f"{path}: no jobs (one JSON object a line)")
    return jobs


def _job(data: Any, origin: str, folder: Path) -> Job:
    if not isinstance(data, dict):
        raise ConfigError("a job must be a JSON object")
    if unknown := sorted(set(data) - {*_REQUIRED, *JOB_OPTIONS}):
        raise ConfigError(f"unknown key {unknown[0]!r} (a job takes: "
                          f"{', '.join((*_REQUIRED, *JOB_OPTIONS))})")  # fmt: skip
    if missing := [key for key in _REQUIRED if key not in data]:
        raise ConfigError(f"missing {missing[0]!r}")
    ident, query = data["id"], data["query"]
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise ConfigError(f"id {ident!r} must be 1-128 letters, digits, '.', '_' or '-'")
    if not isinstance(query, str) or not query.strip():
        raise ConfigError("query must be non-empty text")
    changes: dict[str, Any] = {}
    for key, kind in (("model", str), ("sub_model", str), ("max_depth", int),
                      ("max_iterations", int)):  # fmt: skip
        if key in data:
            value = data[key]
            if not isinstance(value, kind) or isinstance(value, bool) or value == "":
                raise ConfigError(f"{key} must be {'text' if kind is str else 'an integer'}")
            changes[key] = value
    schema = data.get("output_schema")
    if schema is not None and not isinstance(schema, dict):
        raise ConfigError("output_schema must be a JSON Schema object")
    return Job(
        id=ident,
        query=query,
        context=_context(data["context"], folder),
        origin=origin,
        changes=changes,
        budget=_budget(data.get("budget")),
        output_schema=schema,
    )


def _context(value: Any, folder: Path) -> Path | tuple[Path, ...]:
    listed = isinstance(value, list)
    items = value if listed else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ConfigError("context must be a path or a non-empty list of paths")
    paths = tuple((folder / item).resolve() for item in items)
    for given, path in zip(items, paths, strict=True):
        if not path.exists():
            raise ConfigError(f"context {given}: no such file or directory")
    return paths if listed else paths[0]


def _budget(value: Any) -> Budget | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"budget must be an object with {', '.join(_BUDGET_KEYS)}")
    if unknown := sorted(set(value) - set(_BUDGET_KEYS)):
        raise ConfigError(f"unknown budget key {unknown[0]!r} (known: {', '.join(_BUDGET_KEYS)})")
    for key, limit in value.items():
        if not isinstance(limit, (int, float)) or isinstance(limit, bool):
            raise ConfigError(f"budget {key} must be a number")
    tokens, calls = value.get("tokens"), value.get("calls")
    return Budget(
        usd=value.get("usd"),
        tokens=None if tokens is None else int(tokens),
        seconds=value.get("seconds"),
        calls=None if calls is None else int(calls),
    )


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class BatchConfig:
    """Everything one batch needs; checked when made, before anything is written.

    ``settings`` are the run settings every job shares (a job line may change some,
    see :data:`JOB_OPTIONS`); ``total`` caps the whole batch (``usd`` and ``tokens``).
    """

    jobs: tuple[Job, ...]
    settings: Settings
    out_dir: Path
    concurrency: int = 4
    executor: Executor = "local"
    ray_address: str | None = None
    total: Budget | None = None
    retry_failed: bool = False

    def __post_init__(self) -> None:
        if not self.jobs:
            raise ConfigError("no jobs given")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"unknown executor {self.executor!r} (choose local or ray)")
        if self.total is not None and (self.total.seconds, self.total.calls) != (None, None):
            raise ConfigError("a batch's total budget takes usd and tokens only")
        if not isinstance(self.settings.model, str):
            raise ConfigError("a batch's models must be provider/name strings")
        _check_jobs(self.settings, self.jobs, self.total)
        if self.executor == "ray":
            ray_module()

    @property
    def results_path(self) -> Path:
        return self.out_dir / RESULTS_FILE

    @property
    def trace_dir(self) -> Path:
        # Ray workers may run in another directory: an absolute path works everywhere.
        return (self.out_dir / TRACE_DIR).resolve()

    def fixed_settings(self) -> dict[str, Any]:
        """The settings a results directory belongs to: a rerun must not change them."""
        s = self.settings
        return {"model": s.model, "sub_model": s.sub_model, "base_url": s.base_url,
                "max_depth": s.max_depth, "max_iterations": s.max_iterations}  # fmt: skip


def _check_jobs(settings: Settings, jobs: Sequence[Job], total: Budget | None) -> None:
    """Each job's settings are valid and its models usable (a key is set, the name is
    known, a price where a USD budget must meter it): an error now, naming the line,
    rather than one failed row per job."""
    options = ModelOptions(
        base_url=settings.base_url, api_key=settings.api_key, timeout=settings.request_timeout
    )
    checked: set[tuple[str, bool]] = set()
    for job in jobs:
        metered = any(b is not None and b.usd is not None for b in (total, job.budget))
        try:
            job_settings = settings.replace(**job.changes)
            for spec in (job_settings.model, job_settings.sub_model):
                if isinstance(spec, str) and (spec, metered) not in checked:
                    model = resolve(spec, options)
                    if metered and pricing.lookup_for(model, settings.prices) is None:
                        raise ConfigError(
                            f"{spec} has no known price, so a USD budget cannot meter it: "
                            f"give one with --price {spec}=IN,OUT (USD per million tokens)"
                        )
                    checked.add((spec, metered))
        except ConfigError as exc:
            raise ConfigError(f"{job.origin}: {exc}") from None


# -- results ---------------------------------------------------------------------------


@dataclass
class JobRow:
    """One line of ``results.jsonl``: one job's outcome.

    ``status``: ``answered``; ``stopped`` (a budget or the iterations ran out; the
    best answer is kept); ``failed`` (``error`` says why); ``skipped`` (not started:
    the batch's total budget was spent; ``error`` says so).
    """

    id: str
    status: Status
    query: str
    answer: str = ""
    stopped: str | None = None
    error: str | None = None
    usage: dict[str, int] = field(default_factory=lambda: _usage_fields(Usage()))
    cost_usd: float | None = 0.0
    duration_s: float = 0.0
    trace: str | None = None
    output: Any = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRow:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def usage_report(self) -> Usage:
        u = self.usage
        return Usage(u.get("input_tokens", 0), u.get("output_tokens", 0),
                     u.get("cached_tokens", 0), u.get("calls", 0), self.cost_usd)  # fmt: skip


def read_job_rows(path: Path) -> list[JobRow]:
    """The rows of a batch's ``results.jsonl``, the last one for each job id."""
    rows: dict[str, JobRow] = {}
    for data in read_rows(path):
        if isinstance(data.get("id"), str) and isinstance(data.get("status"), str):
            row = JobRow.from_dict(data)
            rows[row.id] = row
    return list(rows.values())


def _usage_fields(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens, "calls": usage.calls}  # fmt: skip


# -- one job ---------------------------------------------------------------------------


class _RunEndCapture:
    """A trace sink that keeps the ``run_end`` event (written even when the run raises),
    so a failed job is still charged for what it spent."""

    def __init__(self) -> None:
        self.end: RunEnd | None = None

    def __call__(self, event: Event) -> None:
        if event.get("type") == "run_end" and isinstance(parsed := parse_event(event), RunEnd):
            self.end = parsed

    def usage(self) -> Usage:
        return self.end.usage if self.end is not None else Usage()


@dataclass(frozen=True)
class _Start:
    """A job as it starts: its budget after the batch's cap, and its trace file."""

    job: Job
    budget: Budget | None
    trace: Path
    capped: bool  # the batch's total set or lowered the job's budget


async def _run_job(rlm: RLM, start: _Start) -> JobRow:
    """One job to its row; any failure of the run is in the row, never raised."""
    job, began = start.job, time.monotonic()
    capture = _RunEndCapture()
    try:
        result = await rlm.acompletion(
            job.query, job.context_input(), output_type=job.output_schema, sinks=[capture]
        )
    except Exception as exc:  # recorded in the row: one bad job must not end the batch
        usage = capture.usage()
        return JobRow(
            id=job.id, status="failed", query=job.query, error=describe(exc),
            usage=_usage_fields(usage), cost_usd=usage.cost_usd,
            duration_s=round(time.monotonic() - began, 3), trace=_existing(start.trace),
        )  # fmt: skip
    status: Status = "answered"
    error = result.error
    if result.stopped == "error":
        status = "failed"
    elif result.stopped == "budget" and start.capped and result.usage.calls == 0:
        status = "skipped"  # what was left of the total could not pay for a first call
        error = "not started: what is left of the batch's total budget is too little"
    elif result.stopped is not None:
        status = "stopped"
    return JobRow(
        id=job.id, status=status, query=job.query, answer=result.answer,
        stopped=result.stopped, error=error, usage=_usage_fields(result.usage),
        cost_usd=result.cost_usd, duration_s=round(result.duration_s, 3),
        trace=_existing(start.trace),
        output=result.output if job.output_schema is not None else None,
    )  # fmt: skip


def _existing(path: Path) -> str | None:
    return str(path) if path.exists() else None


def _job_rlm(base: RLM, start: _Start) -> RLM:
    return base.with_settings(**start.job.changes, budget=start.budget, trace=start.trace)


# -- planning and the total budget -----------------------------------------------------


class _Allowance:
    """The batch's total budget: what finished jobs spent, and the caps held by the jobs
    in flight (each run keeps within its cap, so spent + held never passes the total)."""

    def __init__(self, total: Budget | None) -> None:
        self.total = total or Budget()
        self.spent = Usage()
        self._held: dict[str, Budget | None] = {}

    def spent_limit(self) -> str | None:
        """``"usd"`` or ``"tokens"`` once that total is spent, else ``None``."""
        t = self.total
        if t.usd is not None and (self.spent.cost_usd or 0.0) >= t.usd:
            return "usd"
        if t.tokens is not None and self.spent.total_tokens >= t.tokens:
            return "tokens"
        return None

    def cap(self, own: Budget | None, ways: int) -> Budget | Literal["wait"] | None:
        """``own`` capped by a ``ways``-th of what is left of the total after the caps
        held; ``"wait"`` when the jobs in flight hold all of it."""
        t, own = self.total, own or Budget()
        usd, tokens = own.usd, own.tokens
        if t.usd is not None:
            held = sum((b.usd or 0.0) for b in self._held.values() if b is not None)
            left = t.usd - (self.spent.cost_usd or 0.0) - held
            if left <= 0:
                return "wait"
            usd = min(usd if usd is not None else math.inf, left / ways)
        if t.tokens is not None:
            held_tokens = sum((b.tokens or 0) for b in self._held.values() if b is not None)
            left_tokens = t.tokens - self.spent.total_tokens - held_tokens
            if left_tokens < 1:
                return "wait"
            tokens = min(tokens if tokens is not None else left_tokens,
                         max(1, left_tokens // ways))  # fmt: skip
        capped = dataclasses.replace(own, usd=usd, tokens=tokens)
        return None if capped == Budget() else capped

    def hold(self, ident: str, cap: Budget | None) -> None:
        self._held[ident] = cap

    def settle(self, ident: str, usage: Usage) -> None:
        self._held.pop(ident, None)
        self.spent.add(usage)


class _Queue:
    """The jobs still to run, in file order, started as slots and the total allow.

    ``record`` gets every row: of the jobs that ran, and of those skipped because the
    total was spent.
    """

    def __init__(
        self, config: BatchConfig, pending: Sequence[Job], record: Callable[[JobRow], None]
    ) -> None:
        self.config = config
        self.pending = deque(pending)
        self.allowance = _Allowance(config.total)
        self.record = record
        self.in_flight = 0

    def take(self) -> _Start | None:
        """The next job to start, or ``None``: none left, or none can start until a job
        in flight ends."""
        while self.pending:
            if (limit := self.allowance.spent_limit()) is not None:
                job = self.pending.popleft()
                self.record(JobRow(id=job.id, status="skipped", query=job.query,
                                   error=f"not started: the batch's total {limit} budget "
                                   "is spent"))  # fmt: skip
                continue
            ways = min(self.config.concurrency - self.in_flight, len(self.pending))
            cap = self.allowance.cap(self.pending[0].budget, ways)
            if cap == "wait":
                return None
            job = self.pending.popleft()
            self.allowance.hold(job.id, cap)
            self.in_flight += 1
            trace = self.config.trace_dir / f"{job.id}.jsonl"
            return _Start(job, cap, trace, capped=cap != job.budget)
        return None

    def finish(self, start: _Start, row: JobRow) -> None:
        self.in_flight -= 1
        self.allowance.settle(start.job.id, row.usage_report)
        self.record(row)


def _pending(config: BatchConfig) -> tuple[list[Job], int]:
    """The jobs to run (not yet in results.jsonl, or failed with ``retry_failed``, or
    skipped for the budget) and how many are already done."""
    done = {
        row.id
        for row in read_job_rows(config.results_path)
        if row.status in ("answered", "stopped")
        or (row.status == "failed" and not config.retry_failed)
    }
    pending = [job for job in config.jobs if job.id not in done]
    return pending, len(config.jobs) - len(pending)


# -- running ---------------------------------------------------------------------------


@dataclass
class BatchSummary:
    """What one call of :func:`run_batch` did (``summary.json``)."""

    results: Path
    jobs: int = 0
    answered: int = 0
    stopped: int = 0
    failed: int = 0
    skipped: int = 0
    already_done: int = 0
    cost_usd: float | None = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    seconds: float = 0.0

    def add(self, row: JobRow) -> None:
        setattr(self, row.status, getattr(self, row.status) + 1)
        usage = row.usage_report
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.calls += usage.calls
        if self.cost_usd is not None and usage.cost_usd is not None:
            self.cost_usd += usage.cost_usd
        else:  # an unpriced job makes the total unknown
            self.cost_usd = None

    def progress_text(self) -> str:
        cost = "cost n/a" if self.cost_usd is None else f"${self.cost_usd:,.4f}"
        return f"{self.failed} failed, {self.skipped} skipped, {cost}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["results"] = str(self.results)
        data["seconds"] = round(self.seconds, 3)
        return data


def run_batch(config: BatchConfig, *, progress: bool = True) -> BatchSummary:
    """Run the jobs of a checked :class:`BatchConfig` not yet done in its directory.

    Blocks; call it outside an event loop (the local executor runs its own).
    """
    refuse_running_loop("run_batch")
    check_same_settings(
        config.out_dir,
        config.fixed_settings(),
        {"sandbox": config.settings.sandbox_name, "jobs": len(config.jobs)},
    )
    pending, already_done = _pending(config)
    summary = BatchSummary(config.results_path, jobs=len(config.jobs), already_done=already_done)
    started = time.monotonic()
    with (
        ResultsFile(config.results_path) as out,
        Progress("batch", len(pending), progress) as bar,
    ):

        def record(row: JobRow) -> None:
            out.write(row.to_dict())
            summary.add(row)
            bar.advance(summary.progress_text())

        queue = _Queue(config, pending, record)
        try:
            if config.executor == "ray":
                _run_ray(config, queue)
            else:
                asyncio.run(_run_local(config, queue))
        finally:
            summary.seconds = time.monotonic() - started
            (config.out_dir / SUMMARY_FILE).write_text(
                json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8"
            )
    return summary


async def _run_local(config: BatchConfig, queue: _Queue) -> None:
    base = RLM.from_settings(config.settings)
    running: dict[asyncio.Task[JobRow], _Start] = {}
    try:
        while True:
            while len(running) < config.concurrency and (start := queue.take()) is not None:
                running[asyncio.create_task(_run_job(_job_rlm(base, start), start))] = start
            if not running:
                return
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                queue.finish(running.pop(task), task.result())
    finally:
        for task in running:  # interrupted: end the runs in flight cleanly
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


@dataclass(frozen=True)
class _RayTask:
    """What a Ray task gets: settings and paths, never a context."""

    settings: Settings
    start: _Start


def _ray_task(task: _RayTask) -> dict[str, Any]:
    """Runs inside a Ray worker: the job's run on its own event loop, its row back."""
    rlm = _job_rlm(RLM.from_settings(task.settings), task.start)
    return asyncio.run(_run_job(rlm, task.start)).to_dict()


def _run_ray(config: BatchConfig, queue: _Queue) -> None:
    def take() -> _RayTask | None:
        start = queue.take()
        return None if start is None else _RayTask(config.settings, start)

    def done(task: _RayTask, outcome: dict[str, Any] | BaseException) -> None:
        job = task.start.job
        if isinstance(outcome, BaseException):  # the worker died
            row = JobRow(id=job.id, status="failed", query=job.query, error=describe(outcome))
        else:
            row = JobRow.from_dict(outcome)
        queue.finish(task.start, row)

    run_on_ray(_ray_task, take, done, concurrency=config.concurrency, address=config.ray_address)
