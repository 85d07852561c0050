"""The default sandbox: each REPL in its own isolated worker process.

A worker is ``sys.executable -I -S -B worker.py`` started from a private directory
(``tempfile.mkdtemp``, removed on close) with a scrubbed environment, resource limits
and, where the kernel allows, fresh namespaces: no network, a filesystem that holds
only the Python installation (read-only), the private directory and nothing else, and
its own process tree (see :mod:`recursa.repl.isolation` for the levels). The context
reaches it as an inherited read-only file descriptor that it memory-maps: never
pickled, never pushed through the channel. The channel is a private ``socketpair``.

A cell that outlives its timeout gets a SIGINT (variables kept); one that ignores it
is killed after a grace period and a fresh worker takes over (variables lost). A
worker that dies (segfault, out of memory, ``os._exit``) is reported in the cell's
error and replaced. ``close()`` leaves no process and no directory behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, SandboxError
from . import isolation
from .base import CellResult, SandboxConfig
from .channel import (
    HEADER_BYTES,
    FrameError,
    WorkerGone,
    WorkerLink,
    decode,
    frame_length,
    read_frame,
)
from .isolation import Candidate, Layout, Level

log = logging.getLogger(__name__)

GiB = 1 << 30
EXIT_CONTEXT_FAILED = 71  # worker.py: the context could not be loaded
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker (None: leave the inherited limit)."""

    memory_bytes: int | None = 4 * GiB  # RLIMIT_AS: address space
    cpu_seconds: int | None = 3600  # RLIMIT_CPU: the worker's whole life, all cells
    processes: int | None = 64  # RLIMIT_NPROC: tasks (processes and threads)
    file_size_bytes: int | None = 1 * GiB  # RLIMIT_FSIZE: largest file it may write
    open_files: int | None = 256  # RLIMIT_NOFILE

    def to_dict(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)


class ProcessGroup:
    """A process we started and the process group it leads (``start_new_session``).

    It is killed without ever hitting a reused pid: the group is signalled only
    while its leader is known to be alive (through a pidfd where the kernel has them;
    the leader's pid, hence the group id, cannot be reused before it is reaped).
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.fd: int | None = None
        if hasattr(os, "pidfd_open") and proc.returncode is None:
            with contextlib.suppress(OSError):
                self.fd = os.pidfd_open(proc.pid)

    def leader_alive(self) -> bool:
        if self.fd is not None:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)  # readable once the leader exits
            return not poller.poll(0)
        return self.proc.returncode is None

    def kill(self) -> None:
        if not self.leader_alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if hasattr(os, "killpg"):
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


@dataclass(eq=False)
class WorkerProcess:
    """The host's handle on one running worker."""

    proc: asyncio.subprocess.Process
    group: ProcessGroup
    link: WorkerLink
    pid: int  # the REPL process as the host sees it: where SIGINT goes
    wrapped: bool  # the direct child wraps the REPL: exit code 128+N means signal N
    log_path: Path
    limits: dict[str, Any] = field(default_factory=dict)
    pidfd: int | None = None

    @property
    def dead(self) -> bool:
        return self.link.gone is not None or self.proc.returncode is not None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int, limit: int = 1500) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(max(offset, self.log_size() - limit))
                return fh.read(limit).decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            elif self.proc.returncode is None:
                os.kill(self.pid, sig)

    async def interrupt(self) -> None:
        if sys.platform != "win32":
            self.send_signal(signal.SIGINT)

    async def kill(self) -> None:
        """Kill the REPL and everything it started; reap; close the channel."""
        if sys.platform != "win32":
            self.send_signal(signal.SIGKILL)
        self.group.kill()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        finally:
            await self.link.aclose()
            self.group.close()
            if self.pidfd is not None:
                with contextlib.suppress(OSError):
                    os.close(self.pidfd)
                self.pidfd = None

    async def exit_description(self) -> str:
        """Why the worker ended, once its channel has closed."""
        if self.link.broken and self.proc.returncode is None:
            await self.kill()
            return f"broke the channel ({self.link.gone}) and was killed"
        try:
            code = await asyncio.wait_for(self.proc.wait(), 2)
        except TimeoutError:
            await self.kill()
            return f"stopped answering ({self.link.gone})"
        return describe_exit(code, wrapped=self.wrapped, limits=self.limits)


def describe_exit(code: int, *, wrapped: bool, limits: dict[str, Any]) -> str:
    if code < 0:
        sig = -code
    elif wrapped and 128 < code < 128 + 65:
        sig = code - 128
    else:
        return f"exited (code {code})"
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = str(sig)
    why = {
        "SIGSEGV": "a crash in native code",
        "SIGBUS": "a crash in native code",
        "SIGILL": "a crash in native code",
        "SIGFPE": "a crash in native code",
        "SIGABRT": "aborted",
        "SIGKILL": "killed, for example for running out of memory",
        "SIGXCPU": f"its CPU-time limit of {limits.get('cpu_seconds', '?')} s ran out",
        "SIGXFSZ": "its file-size limit was reached",
    }.get(name)
    return f"died (signal {name}{': ' + why if why else ''})"


def crash_summary(log_text: str) -> str:
    """The useful part of faulthandler's report: the fatal error and the cell's frames."""
    lines: list[str] = []
    for raw in log_text.splitlines():
        line = raw.strip()
        if line.startswith("Fatal Python error"):
            lines = [line, "Stack (most recent call first):"]
        elif (
            lines
            and line.startswith("File ")
            and not any(name in line for name in ("worker.py", "runtime.py"))
        ):
            lines.append(f"  {line}")
    return "\n".join(lines[:22]) if len(lines) > 2 else "\n".join(lines[:1])


@dataclass
class _Leftovers:
    """What the finalizer must clean if close() never runs (kept apart from the sandbox)."""

    groups: list[ProcessGroup] = field(default_factory=list)
    base: Path | None = None

    def clean(self) -> None:
        for group in self.groups:
            group.kill()
        self.groups.clear()
        if self.base is not None:
            _rmtree(self.base)
            self.base = None


def _rmtree(path: Path) -> None:
    def make_writable(func: Any, p: str, exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)

    shutil.rmtree(path, onerror=make_writable)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


class WorkerSandbox:
    """What every worker-process sandbox shares: cells, timeouts, crashes, restarts, close.

    Subclasses implement :meth:`_spawn` (start a worker, wait for its hello) and
    :attr:`isolation`.
    """

    #: How long an interrupted cell may take to stop before its worker is killed.
    grace_seconds: float = 2.0

    def __init__(self) -> None:
        self._config: SandboxConfig | None = None
        self._worker: WorkerProcess | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._leftovers = _Leftovers()
        self._finalizer = weakref.finalize(self, self._leftovers.clean)

    @property
    def isolation(self) -> str:
        raise NotImplementedError

    async def _spawn(self) -> WorkerProcess:
        raise NotImplementedError

    async def start(self, config: SandboxConfig) -> None:
        raise NotImplementedError

    # -- cells ----------------------------------------------------------------------------
    async def run(self, code: str, *, timeout: float) -> CellResult:
        if self._config is None:
            raise SandboxError("the sandbox was not started")
        if self._closed:
            raise SandboxError("the sandbox is closed")
        async with self._lock:
            notes: list[str] = []
            restarted = False
            worker = self._worker
            if worker is None or worker.dead:
                if worker is not None:
                    why = await worker.exit_description()
                    notes.append(
                        f"The sandbox worker {why} after the previous cell; a fresh worker "
                        "was started and all variables were lost."
                    )
                    restarted = True
                worker = await self._replace_worker()
            offset = worker.log_size()
            future = worker.link.run(code)
            try:
                msg = await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                return await self._after_timeout(worker, future, timeout, offset, notes)
            except WorkerGone:
                return await self._after_crash(worker, offset, notes)
            except asyncio.CancelledError:
                await worker.interrupt()  # the abandoned cell stops; its result is dropped
                worker.link.cancel_calls()
                raise
            result = _as_result(msg)
            result.restarted = restarted
            result.notes[:0] = notes
            return result

    async def _after_timeout(
        self,
        worker: WorkerProcess,
        future: asyncio.Future[dict[str, Any]],
        timeout: float,
        offset: int,
        notes: list[str],
    ) -> CellResult:
        await worker.interrupt()
        worker.link.cancel_calls()  # no more spending on sub-calls of an interrupted cell
        try:
            msg = await asyncio.wait_for(asyncio.shield(future), self.grace_seconds)
        except TimeoutError:
            await self._replace_worker()
            return CellResult(
                "",
                error=(
                    f"cell timed out after {timeout:g}s and did not stop within "
                    f"{self.grace_seconds:g}s of an interrupt; the sandbox worker was killed "
                    "and a fresh one started: all variables were lost"
                ),
                timed_out=True,
                restarted=True,
                notes=notes,
            )
        except WorkerGone:
            return await self._after_crash(worker, offset, notes)
        result = _as_result(msg)
        result.notes[:0] = notes
        if msg.get("interrupted") or result.error:
            result.timed_out = True
            head = f"cell interrupted after {timeout:g}s (cell timeout); variables kept"
            result.error = f"{head}\n{result.error}" if result.error else head
        return result

    async def _after_crash(
        self, worker: WorkerProcess, offset: int, notes: list[str]
    ) -> CellResult:
        why = await worker.exit_description()
        summary = crash_summary(worker.log_since(offset, limit=20_000))
        await self._replace_worker()
        error = (
            f"the sandbox worker {why} while running this cell; a fresh worker was started "
            "and all variables were lost"
        )
        if summary:
            error += f"\n{summary}"
        return CellResult("", error=error, restarted=True, notes=notes)

    async def _replace_worker(self) -> WorkerProcess:
        if self._closed:
            raise SandboxError("the sandbox was closed")
        old, self._worker = self._worker, None
        if old is not None:
            await old.kill()
            self._forget(old)
        worker = await self._spawn()
        self._worker = worker
        self._leftovers.groups.append(worker.group)
        return worker

    def _forget(self, worker: WorkerProcess) -> None:
        with contextlib.suppress(ValueError):
            self._leftovers.groups.remove(worker.group)

    async def close(self) -> None:
        """Kill the worker and remove the private directory. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        worker, self._worker = self._worker, None
        try:
            if worker is not None:
                await worker.kill()
                self._forget(worker)
        finally:
            self._leftovers.clean()
            self._finalizer.detach()


def _as_result(msg: dict[str, Any]) -> CellResult:
    return CellResult(
        output=str(msg.get("output") or ""),
        error=msg.get("error"),
        final=msg.get("final"),
        duration_s=float(msg.get("duration_s") or 0.0),
    )


# -- choosing the isolation level ---------------------------------------------------------
_chosen: dict[Level | None, Candidate] = {}  # requested level -> what worked, per process
_failed: dict[Candidate, str] = {}  # what could not be built here, and why
_warned = False


class _SetupFailed(SandboxError):
    """The worker could not build this isolation level (another may work)."""


def _requested_level(isolation_arg: str | None) -> Level | None:
    value = isolation_arg if isolation_arg is not None else os.environ.get(isolation.ENV_VAR, "")
    value = value.strip().lower()
    if value in ("", "auto"):
        return None
    for level in isolation.LEVELS:
        if value == level:
            return level
    raise ConfigError(
        f"unknown sandbox isolation {value!r}: use auto, " + ", ".join(isolation.LEVELS)
    )


class SubprocessSandbox(WorkerSandbox):
    """The REPL in an isolated worker process (the default sandbox).

    ``isolation``: "auto" (default: the strongest level that works here), or force one
    of "bubblewrap", "unshare", "process"; the ``RECURSA_SANDBOX_ISOLATION``
    environment variable does the same. ``limits``: the worker's resource limits.
    """

    start_timeout: ClassVar[float] = 60.0

    def __init__(
        self,
        *,
        isolation: str | None = None,
        limits: Limits | None = None,
        grace_seconds: float = 2.0,
        channel: str = "socket",
    ) -> None:
        super().__init__()
        self._requested = _requested_level(isolation)
        self.limits = limits or Limits()
        self.grace_seconds = grace_seconds
        if channel not in ("socket", "stdio"):
            raise ConfigError("channel must be 'socket' or 'stdio'")
        self._channel = "stdio" if sys.platform == "win32" else channel
        self._candidate: Candidate | None = None
        self._layout: Layout | None = None
        self._context: tuple[Path, str] | None = None
        self._isolation = ""
        self.context_load_s = 0.0  # how long the last worker took to load the context

    @property
    def isolation(self) -> str:
        if self._isolation:
            return self._isolation
        return f"{self._requested or 'auto'} (not started)"

    @property
    def private_dir(self) -> Path | None:
        """The worker's private directory on the host (None before start and after close)."""
        return self._layout.base if self._layout and self._layout.base.exists() else None

    async def start(self, config: SandboxConfig) -> None:
        if self._config is not None:
            raise SandboxError("the sandbox was already started")
        self._config = config
        try:
            path, fmt = await asyncio.to_thread(config.context.file)
            self._context = (path, fmt)
            self._layout = _make_layout()
            self._leftovers.base = self._layout.base
            self._worker = await self._start_first_working()
            self._leftovers.groups.append(self._worker.group)
        except BaseException:
            self._closed = True
            self._leftovers.clean()
            raise

    async def _start_first_working(self) -> WorkerProcess:
        global _warned
        requested = self._requested
        if self._channel == "stdio":
            requested = "process"
        known = _chosen.get(requested)
        failures: list[str] = []
        for candidate in [known] if known else isolation.candidates(requested):
            if candidate in _failed and candidate != known:
                failures.append(f"{_name(candidate)}: {_failed[candidate]}")
                continue
            self._candidate = candidate
            try:
                worker = await self._spawn()
            except _SetupFailed as exc:
                if candidate == known:  # it worked before: not a property of this machine
                    raise SandboxError(f"could not start a sandbox worker: {exc}") from None
                _failed[candidate] = str(exc)
                failures.append(f"{_name(candidate)}: {exc}")
                continue
            _chosen[requested] = candidate
            if candidate[0] == "process" and requested is None and not _warned:
                _warned = True
                log.warning(
                    "recursa: the sandbox runs with resource limits only: no namespaces "
                    "could be created here, so model-written code can read your files, use "
                    "the network and signal your processes (%s)",
                    "; ".join(failures) or sys.platform,
                )
            return worker
        raise SandboxError("could not start a sandbox worker: " + "; ".join(failures))

    async def _spawn(self) -> WorkerProcess:
        assert self._candidate is not None and self._layout is not None
        assert self._context is not None and self._config is not None
        level, run_as = self._candidate
        layout = self._layout
        _set_owner(layout, run_as)
        inside = level != "process"
        home = isolation.INSIDE_HOME if inside else str(layout.home)
        lib = isolation.INSIDE_LIB if inside else str(layout.lib)
        cfg = self._config
        config: dict[str, Any] = {
            "context": {"format": self._context[1]},
            "cwd": home,
            "runtime": f"{lib}/runtime.py",
            # uid 0 (as the kernel sees it) is exempt from RLIMIT_NPROC
            "limits": {**self.limits.to_dict(), "uid0": _kernel_uid(run_as) == 0},
            "namespaced": inside,
            "sys_path": list(isolation.site_packages()),
            "repl": {
                "subcalls": cfg.subcalls,
                "tools": [t.to_dict() for t in cfg.tools],
                "max_output_chars": cfg.max_output_chars,
            },
            "host_pid": os.getpid(),
            "die_with_parent": level == "process",
        }
        env = isolation.worker_env(home, isolation.INSIDE_TMP if inside else str(layout.tmp))
        worker_py = f"{lib}/worker.py"
        plan = isolation.mount_plan(layout) if inside else []
        if level == "unshare":
            config["unshare"] = isolation.unshare_spec(layout, plan, run_as=run_as)
            worker_py = str(layout.lib / "worker.py")  # it starts outside its new root
        popen: dict[str, Any] = {"env": env, "cwd": str(layout.home)}
        if run_as and not (level == "unshare" and isolation.running_as_root()):
            popen.update(user=run_as[0], group=run_as[1], extra_groups=[])
        if sys.platform == "win32":
            popen["creationflags"] = 0x00000200  # CREATE_NEW_PROCESS_GROUP
        else:
            popen["start_new_session"] = True

        def argv() -> list[str]:
            command = [sys.executable, "-I", "-S", "-B", worker_py, json.dumps(config)]
            if level == "bubblewrap":
                bwrap = isolation.bwrap_path()
                if bwrap is None:
                    raise _SetupFailed("bwrap is not installed")
                return isolation.bwrap_command(bwrap, plan, command)
            if level == "unshare" and not sys.platform.startswith("linux"):
                raise _SetupFailed("namespaces need Linux")
            return command

        if self._channel == "stdio":
            return await self._spawn_stdio(level, config, argv, popen)
        return await self._spawn_socket(level, run_as, config, argv, popen)

    async def _spawn_socket(
        self,
        level: Level,
        run_as: tuple[int, int] | None,
        config: dict[str, Any],
        argv: Any,
        popen: dict[str, Any],
    ) -> WorkerProcess:
        assert self._context is not None and self._layout is not None
        parent, child = socket.socketpair()
        if hasattr(socket, "SO_PASSCRED"):  # the hello carries the REPL's pid as we see it
            parent.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        context_fd = -1
        try:
            context_fd = os.open(self._context[0], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            config["channel"] = {"fd": child.fileno()}
            config["context"]["fd"] = context_fd
            started = time.perf_counter()
            with self._layout.log.open("ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *argv(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    pass_fds=(child.fileno(), context_fd),
                    **popen,
                )
            group = ProcessGroup(proc)
        except OSError as exc:
            parent.close()
            raise _SetupFailed(f"cannot start the worker: {exc}") from None
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
            if context_fd >= 0:
                os.close(context_fd)
        try:
            hello, pid = await asyncio.wait_for(_read_hello(parent), self.start_timeout)
        except BaseException as exc:
            parent.close()
            await _reap(proc, group, grace=2.0 if isinstance(exc, WorkerGone) else 0.0)
            if isinstance(exc, WorkerGone | FrameError | TimeoutError):
                raise self._start_error(proc, exc, time.perf_counter() - started) from None
            raise
        if hasattr(socket, "SO_PASSCRED"):
            parent.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        return self._hello(level, run_as, group, reader, writer, hello, pid or proc.pid)

    async def _spawn_stdio(
        self, level: Level, config: dict[str, Any], argv: Any, popen: dict[str, Any]
    ) -> WorkerProcess:
        assert self._context is not None and self._layout is not None
        config["channel"] = {"stdio": True}
        config["context"]["path"] = str(self._context[0])
        started = time.perf_counter()
        with self._layout.log.open("ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *argv(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                **popen,
            )
        group = ProcessGroup(proc)
        assert proc.stdout is not None and proc.stdin is not None
        try:
            hello = await asyncio.wait_for(read_frame(proc.stdout), self.start_timeout)
            if hello is None:
                raise WorkerGone("the worker closed its channel before saying hello")
        except BaseException as exc:
            proc.stdin.close()
            await _reap(proc, group, grace=2.0 if isinstance(exc, WorkerGone) else 0.0)
            if isinstance(exc, WorkerGone | FrameError | TimeoutError):
                raise self._start_error(proc, exc, time.perf_counter() - started) from None
            raise
        return self._hello(level, None, group, proc.stdout, proc.stdin, hello, proc.pid)

    def _hello(
        self,
        level: Level,
        run_as: tuple[int, int] | None,
        group: ProcessGroup,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: dict[str, Any],
        pid: int,
    ) -> WorkerProcess:
        assert self._config is not None and self._layout is not None
        link = WorkerLink(reader, writer, self._config.host)
        pidfd = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(pid)
        limits = hello.get("limits") or {}
        self._isolation = isolation.describe(
            level,
            run_as=run_as,
            no_process_limit=str(limits.get("processes_not_enforced") or ""),
        )
        self.context_load_s = float(hello.get("context_s") or 0.0)
        return WorkerProcess(
            group.proc, group, link, pid, wrapped=level != "process",
            log_path=self._layout.log, limits=limits, pidfd=pidfd,
        )  # fmt: skip

    def _start_error(
        self, proc: asyncio.subprocess.Process, exc: BaseException, elapsed: float
    ) -> Exception:
        assert self._layout is not None
        tail = _tail(self._layout.log)
        if isinstance(exc, TimeoutError):
            return SandboxError(f"the sandbox worker did not start within {elapsed:.0f}s: {tail}")
        code = proc.returncode
        if code == EXIT_CONTEXT_FAILED:
            return SandboxError(f"the sandbox worker could not load the context: {tail}")
        if code is None or code < 0 or code > 128:  # killed: not a reason to weaken isolation
            return SandboxError(f"the sandbox worker was killed while starting ({code}): {tail}")
        return _SetupFailed(tail or f"the worker exited with code {code}")

    async def close(self) -> None:
        await super().close()
        self._layout = None


def _kernel_uid(run_as: tuple[int, int] | None) -> int:
    """The uid the worker's tasks are charged to, whatever namespaces it is in."""
    if run_as:
        return run_as[0]
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _name(candidate: Candidate) -> str:
    level, run_as = candidate
    return f"{level} (as uid {run_as[0]})" if run_as else level


def _make_layout() -> Layout:
    base = Path(tempfile.mkdtemp(prefix="recursa-sandbox-"))
    layout = Layout(base)
    for d in (layout.home, layout.tmp, layout.lib, layout.root):
        d.mkdir(mode=0o700)
    os.chmod(layout.lib, 0o755)
    for name in ("worker.py", "runtime.py"):
        shutil.copyfile(_HERE / name, layout.lib / name)
        os.chmod(layout.lib / name, 0o644)
    return layout


def _set_owner(layout: Layout, run_as: tuple[int, int] | None) -> None:
    """Give the private dir to the user the worker runs as (root hosts only)."""
    if not isolation.running_as_root():
        return
    uid, gid = run_as or (os.geteuid(), os.getegid())
    os.chmod(layout.base, 0o711 if run_as else 0o700)
    for d in (layout.home, layout.tmp):
        os.chown(d, uid, gid)


async def _read_hello(sock: socket.socket) -> tuple[dict[str, Any], int | None]:
    """Read the hello frame with recvmsg, to get the sender's pid from SCM_CREDENTIALS
    (translated by the kernel into our pid namespace: the REPL process behind bwrap)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    creds = getattr(socket, "SCM_CREDENTIALS", None)
    space = socket.CMSG_SPACE(12) if creds is not None else 0
    data = b""
    need = HEADER_BYTES
    pid: int | None = None
    while len(data) < need:
        try:
            chunk, ancdata, _, _ = sock.recvmsg(need - len(data), space)
        except BlockingIOError:
            await _readable(loop, sock)
            continue
        if not chunk:
            raise WorkerGone("the worker closed its channel before saying hello")
        for level, kind, cdata in ancdata:
            if pid is None and level == socket.SOL_SOCKET and kind == creds and len(cdata) >= 12:
                pid = struct.unpack("3i", cdata[:12])[0] or None
        data += chunk
        if need == HEADER_BYTES and len(data) == HEADER_BYTES:
            need += frame_length(data)
    hello = decode(data[HEADER_BYTES:])
    if hello.get("op") != "hello":
        raise WorkerGone(f"the worker said {str(hello.get('op'))[:40]!r} instead of hello")
    return hello, pid


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def _reap(proc: asyncio.subprocess.Process, group: ProcessGroup, grace: float = 0.0) -> None:
    """Wait up to ``grace`` seconds for ``proc`` to exit by itself, then kill its group."""
    try:
        if grace > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        group.kill()
        await proc.wait()
    finally:
        group.close()


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()
