"""What every worker-process sandbox shares: the worker's files, its process, its cells.

A worker-process backend (``subprocess``, ``docker``) starts ``worker.py`` somewhere
(a namespaced process, a container), reads its hello and talks to it through a
:class:`~recursa.repl.channel.WorkerLink`. Everything else is here:

* :func:`make_layout`: the private directory, with the worker's code copied into
  ``lib/`` (``worker.py``, ``runtime.py``, ``protocol.py``: stdlib only);
* :class:`Limits`: the worker's resource limits;
* :class:`ProcessGroup` and :class:`WorkerProcess`: the host's handle on one worker
  (signals, kill and reap, its log, why it ended);
* :class:`WorkerSandbox`: cells, timeouts, interrupts, crashes, restarts and close,
  for a subclass that implements ``start``, ``_spawn`` and ``isolation``;
* :func:`read_hello`, :func:`reap`, :func:`log_tail`: start-up helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import itertools
import logging
import os
import select
import shutil
import signal
import stat
import sys
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SandboxError
from .base import CellResult, SandboxConfig
from .channel import WorkerGone, WorkerLink, read_frame
from .isolation import Layout
from .protocol import CellDone, Hello, ProtocolError

if TYPE_CHECKING:
    from .source_server import SourceServer

__all__ = [
    "EXIT_CONTEXT_FAILED",
    "EXIT_SETUP_FAILED",
    "WORKER_FILES",
    "Leftovers",
    "Limits",
    "ProcessGroup",
    "WorkerProcess",
    "WorkerSandbox",
    "cell_result",
    "crash_summary",
    "describe_exit",
    "log_tail",
    "make_layout",
    "read_hello",
    "reap",
    "rmtree",
]

GiB = 1 << 30
EXIT_SETUP_FAILED = 70  # worker.py: the sandbox could not be built
EXIT_CONTEXT_FAILED = 71  # worker.py: the context could not be loaded
#: The worker's code, copied into every sandbox's ``lib/`` (imports only the stdlib and
#: each other: ``worker.py`` loads ``protocol.py`` beside it, ``runtime.py`` by path).
WORKER_FILES = ("worker.py", "runtime.py", "protocol.py")
#: The modules the worker imports (``worker.py`` runs as a script, always from source).
_IMPORTED_FILES = ("runtime.py", "protocol.py")
_HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


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


# -- the private directory ----------------------------------------------------------------
def make_layout() -> Layout:
    """A fresh private directory (``tempfile.mkdtemp``) holding the worker's code in ``lib/``."""
    base = Path(tempfile.mkdtemp(prefix="recursa-sandbox-"))
    layout = Layout(base)
    for d in (layout.home, layout.tmp, layout.lib, layout.root):
        d.mkdir(mode=0o700)
    os.chmod(layout.lib, 0o755)
    for name in WORKER_FILES:
        # copy2 keeps the mtime, so the host's own bytecode of it stays valid beside it
        shutil.copy2(_HERE / name, layout.lib / name)
        os.chmod(layout.lib / name, 0o644)
    cache = layout.lib / "__pycache__"
    cache.mkdir(mode=0o755)
    for name, code in _bytecode().items():
        target = Path(importlib.util.cache_from_source(str(layout.lib / name)))
        target.write_bytes(code)
        os.chmod(target, 0o644)
    return layout


@functools.cache
def _bytecode() -> dict[str, bytes]:
    """The host's own up-to-date ``.pyc`` of each module the worker imports, read once
    per host process. A worker runs with ``-B`` (it writes no bytecode), so without
    them it compiles those modules on every start, some 25 ms each time. Nothing is
    compiled here (that would sit on the host's critical path): a module whose bytecode
    is missing or stale (``PYTHONDONTWRITEBYTECODE``, a read-only install) is left to
    the worker, which compiles it beside the host. An interpreter of another version
    (a docker image's) looks for its own cache tag and compiles the source."""
    found: dict[str, bytes] = {}
    for name in _IMPORTED_FILES:
        source = _HERE / name
        try:
            code = Path(importlib.util.cache_from_source(str(source))).read_bytes()
            stat = source.stat()
        except OSError:
            continue
        if _current(code, stat):
            found[name] = code
    return found


def _current(pyc: bytes, source: os.stat_result) -> bool:
    """Whether ``pyc`` is this interpreter's timestamp bytecode of a file with ``source``'s
    mtime and size (what the import system checks before using it)."""
    if len(pyc) < 16 or pyc[:4] != importlib.util.MAGIC_NUMBER:
        return False
    flags, mtime, size = (int.from_bytes(pyc[i : i + 4], "little") for i in (4, 8, 12))
    return (
        flags == 0
        and mtime == int(source.st_mtime) & 0xFFFFFFFF
        and (size == source.st_size & 0xFFFFFFFF)
    )


def rmtree(path: Path) -> bool:
    """Remove the private directory ``path`` with everything in it; never raises.

    Whatever the worker left there (directories of any depth or mode, fifos, sockets,
    symlinks to anywhere) goes, and nothing outside is touched: the walk goes through
    directory descriptors opened with ``O_NOFOLLOW`` (a symlink is unlinked, never
    followed), only directories inside ``path`` (and ``path`` itself) are made
    writable again, never its parent. A failure is logged once; returns whether
    ``path`` is gone.
    """
    errors: list[str] = []
    try:
        if not _FD_WALK:
            _rmtree_fallback(path, errors)
        else:
            parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
            try:
                _remove_dir(parent, path.name, errors)
            finally:
                os.close(parent)
    except Exception as exc:  # cleanup never costs the run its answer
        errors.append(f"{path}: {exc}")
    gone = not os.path.lexists(path)
    if errors or not gone:
        log.warning(
            "recursa: could not remove all of the sandbox directory %s (%d problems, first: %s)",
            path, max(len(errors), 1), errors[0] if errors else "still there",
        )  # fmt: skip
    return gone


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FD_WALK = (
    bool(_NOFOLLOW)
    and os.open in os.supports_dir_fd
    and os.unlink in os.supports_dir_fd
    and os.rmdir in os.supports_dir_fd
    and os.scandir in os.supports_fd
)
_DEEPEST = 32  # directories held open at once; deeper ones are moved up to the top first


def _remove_dir(parent: int, name: str, errors: list[str]) -> None:
    """Remove the directory ``name`` of the directory open as ``parent``."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as exc:
        errors.append(f"{name}: {exc.strerror}")
        return
    if not stat.S_ISDIR(st.st_mode):  # replaced by a link or a file: never followed
        errors.append(f"{name}: not a directory any more")
        return
    top = _open_dir(parent, name, errors)
    if top is None:
        return
    moved = itertools.count(1)
    pending: list[str] = []
    try:
        _empty(top, top, 1, pending, moved, errors)
        while pending:
            deep = pending.pop()
            fd = _open_dir(top, deep, errors)
            if fd is not None:
                try:
                    _empty(fd, top, 2, pending, moved, errors)
                finally:
                    os.close(fd)
                _attempt(errors, deep, os.rmdir, deep, dir_fd=top)
    finally:
        os.close(top)
    _attempt(errors, name, os.rmdir, name, dir_fd=parent)


def _empty(
    fd: int, top: int, depth: int, pending: list[str], moved: Any, errors: list[str]
) -> None:
    """Remove everything in the directory open as ``fd``."""
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except OSError as exc:
        errors.append(f"listing a directory: {exc.strerror}")
        return
    for name, is_dir in entries:
        if not is_dir:  # files, fifos, sockets, devices, symlinks: unlinked, never opened
            _attempt(errors, name, os.unlink, name, dir_fd=fd)
        elif depth >= _DEEPEST:  # move it up beside the top, to be emptied from there
            new = f".recursa-deep-{next(moved)}-{os.urandom(6).hex()}"
            _make_ours(fd, name)
            if _attempt(errors, name, os.rename, name, new, src_dir_fd=fd, dst_dir_fd=top):
                pending.append(new)
        else:
            child = _open_dir(fd, name, errors)
            if child is None:
                continue
            try:
                _empty(child, top, depth + 1, pending, moved, errors)
            finally:
                os.close(child)
            _attempt(errors, name, os.rmdir, name, dir_fd=fd)


def _open_dir(parent: int, name: str, errors: list[str]) -> int | None:
    """``name`` in ``parent`` opened as a directory (never through a symlink), made
    readable, writable and searchable by us first if the worker took that away."""
    flags = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC
    try:
        try:
            fd = os.open(name, flags, dir_fd=parent)
        except PermissionError:
            _make_ours(parent, name)
            fd = os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        errors.append(f"{name}: {exc.strerror}")
        return None
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o700 != 0o700:
            os.fchmod(fd, mode | 0o700)
    return fd


def _make_ours(parent: int, name: str) -> None:
    """chmod u+rwx the directory ``name`` of ``parent``, never a symlink's target."""
    with contextlib.suppress(OSError):
        if hasattr(os, "O_PATH") and os.path.isdir("/proc/self/fd"):
            fd = os.open(name, os.O_PATH | _NOFOLLOW | _CLOEXEC, dir_fd=parent)
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.chmod(f"/proc/self/fd/{fd}", 0o700)  # the very inode just checked
            finally:
                os.close(fd)
        elif stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            follow = os.chmod not in os.supports_follow_symlinks
            os.chmod(name, 0o700, dir_fd=parent, follow_symlinks=follow)


def _attempt(errors: list[str], name: str, func: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        func(*args, **kwargs)
    except FileNotFoundError:
        pass
    except OSError as exc:
        errors.append(f"{name}: {exc.strerror}")
        return False
    return True


def _rmtree_fallback(path: Path, errors: list[str]) -> None:
    """Where directory descriptors are missing (Windows): chmod only what is inside."""
    root = os.path.abspath(path)

    def retry(func: Any, p: str, exc: Any) -> None:
        p = os.path.abspath(p)
        if p != root and not p.startswith(root.rstrip(os.sep) + os.sep):
            errors.append(f"{p}: outside the sandbox directory, left alone")
            return
        try:
            if not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError as err:
            errors.append(f"{p}: {err.strerror}")

    if os.path.islink(path):
        errors.append(f"{path}: not a directory any more")
        return
    with contextlib.suppress(OSError):
        shutil.rmtree(path, onerror=retry)


def log_tail(path: Path, limit: int = 2000) -> str:
    """The end of a worker's log, for an error message."""
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


# -- processes ----------------------------------------------------------------------------
class ProcessGroup:
    """A process we started and the process group it leads (``start_new_session``).

    It is killed without ever hitting a reused pid: the group is signalled only
    while its leader is known to be alive (through a pidfd where the kernel has them;
    the leader's pid, hence the group id, cannot be reused before it is reaped).
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.fd: int | None = None
        self.init_fd: int | None = None  # pid 1 of the worker's pid namespace, if it has one
        if hasattr(os, "pidfd_open") and proc.returncode is None:
            with contextlib.suppress(OSError):
                self.fd = os.pidfd_open(proc.pid)

    def hold_namespace(self, repl_pid: int) -> None:
        """Hold a pidfd on pid 1 of the pid namespace that ``repl_pid`` (the REPL, as
        this host sees it) runs in, found before any model code has run.

        Killing that init kills every process of the namespace, whatever they did to
        leave the process group (``setsid``, double forks): :meth:`kill` does it, and
        waits until the namespace is empty.
        """
        init = namespace_init(repl_pid)
        if init is None or not hasattr(os, "pidfd_open"):
            return
        with contextlib.suppress(OSError):
            fd = os.pidfd_open(init)
            if namespace_init(repl_pid) == init:  # still the same process: not a reused pid
                self.init_fd = fd
            else:
                os.close(fd)

    def leader_alive(self) -> bool:
        if self.fd is not None:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)  # readable once the leader exits
            return not poller.poll(0)
        return self.proc.returncode is None

    def kill(self) -> None:
        if self.init_fd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.init_fd, signal.SIGKILL)
            # init exits only once the kernel has killed and reaped the whole namespace
            _wait_readable(self.init_fd, 5.0)
        # the group's id is the leader's pid, which cannot be reused while the leader is
        # alive or not yet reaped (a zombie)
        if not self.leader_alive() and self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if hasattr(os, "killpg"):
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()

    def close(self) -> None:
        for name in ("fd", "init_fd"):
            fd = getattr(self, name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)


def _wait_readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)
    except OSError:
        return {}


def namespace_init(pid: int) -> int | None:
    """The host pid of pid 1 of the pid namespace ``pid`` runs in (Linux), or None when
    it runs in this host's own pid namespace (or it cannot be told)."""
    depth = len(_status(pid).get("NSpid", "").split())
    for _ in range(64):
        status = _status(pid)
        nspids = status.get("NSpid", "").split()
        if len(nspids) != depth or depth < 2:  # left the namespace, or never was in one
            return None
        if nspids[-1] == "1":
            return pid
        try:
            pid = int(status.get("PPid", "0"))
        except ValueError:
            return None
        if pid <= 0:
            return None
    return None


async def reap(proc: asyncio.subprocess.Process, group: ProcessGroup, grace: float = 0.0) -> None:
    """Wait up to ``grace`` seconds for ``proc`` to exit by itself, then kill its group."""
    try:
        if grace > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        group.kill()
        await proc.wait()
    finally:
        group.close()


async def read_hello(
    reader: asyncio.StreamReader,
    *,
    ended: str = "the worker closed its channel before saying hello",
) -> Hello:
    """The worker's first frame, which must be its :class:`Hello`. Raises
    :class:`WorkerGone` (with ``ended``) if the stream ends first, :class:`ProtocolError`
    for any other frame."""
    frame = await read_frame(reader)
    if frame is None:
        raise WorkerGone(ended)
    if not isinstance(frame, Hello):
        raise ProtocolError(f"the worker said {frame.op!r} instead of hello")
    return frame


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
    sources: SourceServer | None = None  # serves a linked pack's files to this worker

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
        self.group.kill()  # first: the namespace's init, or the group while its leader lives
        if sys.platform != "win32":
            self.send_signal(signal.SIGKILL)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        finally:
            await self.link.aclose()
            self.group.close()
            if self.sources is not None:
                await asyncio.to_thread(self.sources.close)
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


def cell_result(done: CellDone) -> CellResult:
    """The :class:`CellResult` of a worker's :class:`CellDone` (its fields already checked)."""
    return CellResult(
        output=done.output, error=done.error, final=done.final, duration_s=done.duration_s
    )


# -- the sandbox --------------------------------------------------------------------------
@dataclass
class Leftovers:
    """What the finalizer must clean if close() never runs (kept apart from the sandbox)."""

    groups: list[ProcessGroup] = field(default_factory=list)
    base: Path | None = None

    def clean(self) -> None:
        for group in self.groups:
            group.kill()
        self.groups.clear()
        if self.base is not None:
            rmtree(self.base)
            self.base = None


class WorkerSandbox:
    """What every worker-process sandbox shares: cells, timeouts, crashes, restarts, close.

    Subclasses implement :meth:`start` (set ``_config``, make the layout and record its
    base in ``_leftovers``, spawn the first worker into ``_worker``), :meth:`_spawn`
    (start a worker, wait for its hello) and :attr:`isolation`.
    """

    #: How long an interrupted cell may take to stop before its worker is killed.
    grace_seconds: float = 2.0

    def __init__(self) -> None:
        self._config: SandboxConfig | None = None
        self._worker: WorkerProcess | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._leftovers = Leftovers()
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
                done = await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                return await self._after_timeout(worker, future, timeout, offset, notes)
            except WorkerGone:
                return await self._after_crash(worker, offset, notes)
            except asyncio.CancelledError:
                await worker.interrupt()  # the abandoned cell stops; its result is dropped
                worker.link.cancel_calls()
                raise
            result = cell_result(done)
            result.restarted = restarted
            result.notes[:0] = notes
            return result

    async def _after_timeout(
        self,
        worker: WorkerProcess,
        future: asyncio.Future[CellDone],
        timeout: float,
        offset: int,
        notes: list[str],
    ) -> CellResult:
        await worker.interrupt()
        worker.link.cancel_calls()  # no more spending on sub-calls of an interrupted cell
        try:
            done = await asyncio.wait_for(asyncio.shield(future), self.grace_seconds)
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
        result = cell_result(done)
        result.notes[:0] = notes
        if done.interrupted or result.error:
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
