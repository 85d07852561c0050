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
import json
import logging
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, SandboxError
from . import isolation
from .base import SandboxConfig
from .channel import WorkerGone, WorkerLink
from .isolation import Candidate, Layout, Level
from .process import (
    EXIT_CONTEXT_FAILED,
    Limits,
    ProcessGroup,
    WorkerProcess,
    WorkerSandbox,
    log_tail,
    make_layout,
    read_hello,
    reap,
)
from .protocol import HEADER_BYTES, Hello, ProtocolError, decode_frame, frame_length

__all__ = ["Limits", "SubprocessSandbox"]

log = logging.getLogger(__name__)


# -- choosing the isolation level ---------------------------------------------------------
_chosen: dict[Level | None, Candidate] = {}  # requested level -> what worked, per process
_failed: dict[Candidate, str] = {}  # what could not be built here, and why
_warned = False
_warned_root = False  # root that cannot drop to nobody (a user namespace): said once


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
    def _passes_sources(self) -> bool:
        """Whether the worker can be handed a linked pack's files (pipes carry no
        descriptors: then they are copied into the pack)."""
        from .source_server import AVAILABLE

        return self._channel == "socket" and AVAILABLE

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
            path, fmt = await config.context.afile(standalone=not self._passes_sources)
            self._context = (path, fmt)
            self._layout = make_layout()
            self._leftovers.base = self._layout.base
            self._worker = await self._start_first_working()
            self._leftovers.groups.append(self._worker.group)
        except BaseException:
            self._closed = True
            self._leftovers.clean()
            raise

    async def _start_first_working(self) -> WorkerProcess:
        global _warned, _warned_root
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
            rootless = isolation.running_as_root() and not isolation.privileged()
            if candidate[0] == "process" and requested is None and not _warned:
                _warned = _warned_root = True
                log.warning(
                    "recursa: the sandbox runs with resource limits only: no namespaces "
                    "could be created here, so model-written code can read your files, use "
                    "the network and signal your processes (%s)%s",
                    "; ".join(failures) or sys.platform,
                    "; running as root of a user namespace that does not map nobody"
                    if rootless
                    else "",
                )
            elif rootless and not _warned_root:
                _warned_root = True
                log.warning(
                    "recursa: running as root in a user namespace that does not map the "
                    "user nobody (a rootless container?): the sandbox cannot drop to another "
                    "user and runs as this namespace's root; isolation: %s",
                    self._isolation,
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
            "init": level == "bubblewrap",  # run as pid 1 (--as-pid-1): see worker.become_init
        }
        env = isolation.worker_env(home, isolation.INSIDE_TMP if inside else str(layout.tmp))
        worker_py = f"{lib}/worker.py"
        plan = isolation.mount_plan(layout) if inside else []
        if level == "unshare":
            config["unshare"] = isolation.unshare_spec(layout, plan, run_as=run_as)
            worker_py = str(layout.lib / "worker.py")  # it starts outside its new root
        popen: dict[str, Any] = {"env": env, "cwd": str(layout.home)}
        if run_as and not (level == "unshare" and isolation.privileged()):
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
        assert self._config is not None
        parent, child = socket.socketpair()
        if hasattr(socket, "SO_PASSCRED"):  # the hello carries the REPL's pid as we see it
            parent.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        linked = self._config.context.sources if self._passes_sources else ()
        sources = None
        if linked:
            from .source_server import SourceServer

            sources = SourceServer(linked)
        context_fd = -1
        try:
            context_fd = os.open(self._context[0], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            config["channel"] = {"fd": child.fileno()}
            config["context"]["fd"] = context_fd
            pass_fds = [child.fileno(), context_fd]
            if sources is not None:
                config["context"]["sources_fd"] = sources.worker_end.fileno()
                pass_fds.append(sources.worker_end.fileno())
            started = time.perf_counter()
            with self._layout.log.open("ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *argv(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    pass_fds=pass_fds,
                    **popen,
                )
            group = ProcessGroup(proc)
        except BaseException as exc:
            parent.close()
            if sources is not None:
                sources.close()
            if isinstance(exc, OSError):
                raise _SetupFailed(f"cannot start the worker: {exc}") from None
            raise
        finally:
            child.close()
            if sources is not None:
                sources.worker_end.close()  # the worker holds its end now
            if context_fd >= 0:
                os.close(context_fd)
        try:
            hello, pid = await asyncio.wait_for(_read_hello(parent), self.start_timeout)
        except BaseException as exc:
            parent.close()
            if sources is not None:
                sources.close()
            await reap(proc, group, grace=2.0 if isinstance(exc, WorkerGone) else 0.0)
            if isinstance(exc, WorkerGone | ProtocolError | TimeoutError):
                raise self._start_error(proc, exc, time.perf_counter() - started) from None
            raise
        if hasattr(socket, "SO_PASSCRED"):
            parent.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker = self._hello(level, run_as, group, reader, writer, hello, pid or proc.pid)
        worker.sources = sources
        return worker

    async def _spawn_stdio(
        self, level: Level, config: dict[str, Any], argv: Any, popen: dict[str, Any]
    ) -> WorkerProcess:
        assert self._context is not None and self._layout is not None
        config["channel"] = {"stdio": True}
        context_fd = -1
        if sys.platform == "win32":  # no descriptors to pass: the path (same user)
            config["context"]["path"] = str(self._context[0])
        else:  # a descriptor, as on the socket channel: the file is 0600, maybe not ours
            context_fd = os.open(self._context[0], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            config["context"]["fd"] = context_fd
            popen = {**popen, "pass_fds": (context_fd,)}
        started = time.perf_counter()
        try:
            with self._layout.log.open("ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *argv(),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log_file,
                    **popen,
                )
        except OSError as exc:  # as on the socket channel: another level may work
            raise _SetupFailed(f"cannot start the worker: {exc}") from None
        finally:
            if context_fd >= 0:
                os.close(context_fd)
        group = ProcessGroup(proc)
        assert proc.stdout is not None and proc.stdin is not None
        try:
            hello = await asyncio.wait_for(read_hello(proc.stdout), self.start_timeout)
        except BaseException as exc:
            proc.stdin.close()
            await reap(proc, group, grace=2.0 if isinstance(exc, WorkerGone) else 0.0)
            if isinstance(exc, WorkerGone | ProtocolError | TimeoutError):
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
        hello: Hello,
        pid: int,
    ) -> WorkerProcess:
        assert self._config is not None and self._layout is not None
        if level != "process":  # before any model code: the init that holds its namespace
            group.hold_namespace(pid)
        link = WorkerLink(reader, writer, self._config.host)
        pidfd = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(pid)
        limits = hello.limits
        self._isolation = isolation.describe(
            level,
            run_as=run_as,
            no_process_limit=str(limits.get("processes_not_enforced") or ""),
        )
        self.context_load_s = hello.context_s
        return WorkerProcess(
            group.proc, group, link, pid, wrapped=level != "process",
            log_path=self._layout.log, limits=limits, pidfd=pidfd,
        )  # fmt: skip

    def _start_error(
        self, proc: asyncio.subprocess.Process, exc: BaseException, elapsed: float
    ) -> Exception:
        assert self._layout is not None
        tail = log_tail(self._layout.log)
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
    """The uid the worker's tasks are charged to, whatever namespaces it is in (-1: not
    the kernel's root, as the root of a user namespace is not)."""
    if run_as:
        return run_as[0]
    if isolation.running_as_root() and not isolation.kernel_root():
        return -1
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _name(candidate: Candidate) -> str:
    level, run_as = candidate
    return f"{level} (as uid {run_as[0]})" if run_as else level


def _set_owner(layout: Layout, run_as: tuple[int, int] | None) -> None:
    """Give the private dir to the user the worker runs as (root hosts only; a root
    whose user namespace cannot map that user never gets such a candidate)."""
    if not isolation.running_as_root() or (run_as and not isolation.can_switch_to(run_as)):
        return
    uid, gid = run_as or (os.geteuid(), os.getegid())
    os.chmod(layout.base, 0o711 if run_as else 0o700)
    for d in (layout.home, layout.tmp):
        os.chown(d, uid, gid)


async def _read_hello(sock: socket.socket) -> tuple[Hello, int | None]:
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
    hello = decode_frame(data[HEADER_BYTES:])
    if not isinstance(hello, Hello):
        raise ProtocolError(f"the worker said {hello.op!r} instead of hello")
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
