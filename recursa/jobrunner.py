"""What ``recursa bench`` and ``recursa batch`` share to run many independent jobs.

Both write one JSON line per finished job to a results file, flushed at once, so a
crash loses nothing finished and a rerun skips what is there; both refuse to mix
the results of different settings in one directory; both show progress; both can
send jobs to Ray tasks, at most ``concurrency`` at a time. Those pieces live here
once: :class:`ResultsFile`, :func:`read_rows`, :func:`check_same_settings`,
:class:`Progress`, :func:`ray_module` and :func:`run_on_ray`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, Any, TypeVar

from .errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "Progress",
    "ResultsFile",
    "check_same_settings",
    "describe",
    "ray_module",
    "read_rows",
    "refuse_running_loop",
    "run_on_ray",
]

#: Where a results directory records the settings its rows were made with.
CONFIG_FILE = "config.json"

J = TypeVar("J")
R = TypeVar("R")


def describe(exc: BaseException) -> str:
    """``"ModelError: ..."``: how a failed job's error is written in its row."""
    return f"{type(exc).__name__}: {exc}"


def refuse_running_loop(caller: str) -> None:
    """A blocking runner called inside an event loop would block it: refuse with why."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigError(f"{caller}() was called inside an event loop; call it from a thread")


# -- the results file --------------------------------------------------------------------


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a results file, oldest first; lines that are not complete
    JSON objects (a run killed mid-write) are passed over."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                yield data


class ResultsFile:
    """A results file opened for appending; each row is flushed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def __enter__(self) -> ResultsFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        broken_tail = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as fh:
                fh.seek(-1, 2)
                broken_tail = fh.read(1) != b"\n"
        self._fh = self.path.open("a", encoding="utf-8")
        if broken_tail:  # a line cut by a crash: end it so the next row starts cleanly
            self._fh.write("\n")
        return self

    def write(self, row: Mapping[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def check_same_settings(
    out_dir: Path, fixed: Mapping[str, Any], recorded: Mapping[str, Any]
) -> None:
    """Refuse a directory whose ``config.json`` holds other ``fixed`` values (rows of
    different settings must not mix); then record ``fixed`` and ``recorded`` there.

    Creates ``out_dir``; a refusal writes nothing.
    """
    path = out_dir / CONFIG_FILE
    if path.exists():
        try:
            theirs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            theirs = {}
        for key, value in fixed.items():
            if isinstance(theirs, dict) and key in theirs and theirs[key] != value:
                raise ConfigError(
                    f"{out_dir} holds results for {key} {theirs[key]!r}, not {value!r}; "
                    "give another --out directory"
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**fixed, **recorded}, indent=2) + "\n", encoding="utf-8")


# -- progress ----------------------------------------------------------------------------


class Progress:
    """Progress on stderr: a rich bar on a terminal, one plain line per job elsewhere,
    nothing when disabled or when there is nothing to do."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        from rich.console import Console

        self.label = label
        self.total = total
        self._done = 0
        self._started = time.monotonic()
        self._console = Console(stderr=True, soft_wrap=True)
        self._enabled = enabled and total > 0
        self._bar: Any = None
        self._task: Any = None
        if self._enabled and self._console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn(f"[bold]{label}[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._task = self._bar.add_task("", total=total)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, description: str) -> None:
        """One more job done; ``description`` says how the whole run stands."""
        self._done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=description)
        elif self._enabled:
            seconds = time.monotonic() - self._started
            self._console.print(
                f"recursa: {self.label} {self._done}/{self.total} · {description} · {seconds:.1f}s",
                highlight=False,
            )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- Ray -------------------------------------------------------------------------------


def ray_module() -> ModuleType:
    """The ``ray`` package, or a one-line error that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "the ray executor needs the ray package: pip install 'recursa[ray]'"
        ) from exc
    module: ModuleType = ray
    return module


def _config_error(exc: BaseException) -> ConfigError | None:
    """The ConfigError a Ray task raised (Ray wraps it, usually as a subclass of it)."""
    for candidate in (exc, getattr(exc, "cause", None)):
        if isinstance(candidate, ConfigError):
            return candidate
    return None


def run_on_ray(
    task: Callable[[J], R],
    take: Callable[[], J | None],
    done: Callable[[J, R | BaseException], None],
    *,
    concurrency: int,
    address: str | None = None,
) -> None:
    """Run ``task(job)`` as Ray tasks, at most ``concurrency`` at once, until ``take``
    has no job to start and none is in flight.

    ``take()`` is asked for the next job whenever a slot is free; ``None`` means none
    can start now (it is asked again after the next job ends). ``done(job, outcome)``
    gets what a task returned, or what it raised (a worker that died); a ConfigError
    raised in a task stops the whole run, as it would in one process. Starts a local
    Ray unless one is running (or joins ``address``), and shuts down only what it
    started; on an error the jobs in flight are cancelled, not left running unseen.
    """
    ray = ray_module()
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init()
        started_here = True
    remote = ray.remote(task)
    in_flight: dict[Any, J] = {}
    try:
        while True:
            while len(in_flight) < concurrency and (job := take()) is not None:
                in_flight[remote.remote(job)] = job
            if not in_flight:
                return
            finished, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in finished:
                job = in_flight.pop(ref)
                try:
                    outcome: R | BaseException = ray.get(ref)
                except Exception as exc:  # the task raised, or its worker died
                    if (error := _config_error(exc)) is not None:
                        raise ConfigError(str(error)) from exc
                    outcome = exc
                done(job, outcome)
    except BaseException:
        for ref in in_flight:  # do not leave paid-for runs going whose rows nobody writes
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
