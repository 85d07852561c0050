"""The sandbox worker: one REPL in its own process, talking to the host over a private channel.

The host (:mod:`recursa.repl.subprocess` or :mod:`recursa.repl.docker`) copies this
file, ``runtime.py`` and ``protocol.py`` into the sandbox's private directory and starts::

    python -I -S -B worker.py CONFIG_JSON

It uses the standard library only and imports nothing from recursa: ``-I`` leaves this
file's directory off ``sys.path``, so ``protocol.py`` is loaded from beside this file
(as soon as it starts, before any namespace is entered) and ``runtime.py`` from the
path in the config. Start-up, in order:

1. ``unshare`` isolation level only: enter fresh user, mount, pid, network, ipc and
   uts namespaces, build a private root filesystem from the mount plan, pivot into
   it, drop to an unprivileged user (when started as root) and drop every capability.
   (The ``bubblewrap`` level gets the same from ``bwrap`` before this process starts,
   and this process is its pid 1.) pid 1 is made non-dumpable and forks the REPL, so
   nothing in the sandbox can ptrace it into outliving the host, then execs a bare
   interpreter to reap (``become_init``).
2. apply resource limits (memory, CPU time, processes, file size, open files, no core
   files); they cannot be raised again by the code that runs later.
3. load the context from an inherited read-only file descriptor (memory-mapped and
   decoded in place: the text never crosses the channel), then close it. A pack that
   links to files where they lie comes with a second socket, on which each one's
   descriptor is asked for when the code first reads it (:class:`SourceClient`).
4. say ``hello`` and serve ``run`` messages until the channel closes.

Channel frames are those of :mod:`recursa.repl.protocol` (a 4-byte big-endian length
and a UTF-8 JSON object): ``RunCell``, ``Reply`` and ``Close`` from the host;
``Hello``, ``Call`` and ``CellDone`` from here.

The host learns the REPL process's pid (as the host's pid namespace sees it) from
the SCM_CREDENTIALS of the hello. A SIGINT from the host interrupts the running cell
(it becomes a ``KeyboardInterrupt`` error and the variables are kept); between cells
it is ignored. The worker exits when the channel closes, so it never outlives its
host. Exit code 70: the sandbox could not be built (the host tries another isolation
level); 71: the context could not be loaded.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

EXIT_SETUP_FAILED = 70  # the sandbox could not be built: a different isolation level may work
EXIT_CONTEXT_FAILED = 71  # the context could not be loaded (too big for the memory limit?)
INIT_READY = b"1"  # pid 1 to the REPL: non-dumpable again after its exec (become_init)


def _load_beside(name: str, module_name: str) -> Any:
    """``name``.py from this file's directory (not on ``sys.path`` under ``-I``)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING or __package__:  # imported as recursa.repl.worker
    from . import protocol
else:  # run as a script in the sandbox, protocol.py beside it
    protocol = _load_beside("protocol", "recursa_protocol")


# -- channel -------------------------------------------------------------------------------
class Channel:
    """Frames over a pair of file descriptors (one socket, or stdin/stdout pipes).

    Only the reader thread reads and only the writer thread writes, so a
    KeyboardInterrupt (always raised in the main thread) can never cut a frame in half.
    """

    def __init__(self, rfd: int, wfd: int) -> None:
        import queue

        self.rfd = rfd
        self.wfd = wfd
        self._buffer = bytearray()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def send(self, frame: protocol.Frame) -> None:
        """Queue one frame (raises TypeError/ValueError if it is not JSON, ProtocolError
        if it is too large)."""
        self._outbox.put(protocol.encode_frame(frame))  # one C call: not interruptible

    def write_forever(self) -> None:
        while True:
            frame = self._outbox.get()
            if frame is None:
                return
            view = memoryview(frame)
            try:
                while view:
                    view = view[os.write(self.wfd, view) :]
            except OSError:
                os._exit(0)  # the host is gone

    def recv(self) -> protocol.Frame | None:
        """The next frame; None when the channel ends. Raises ProtocolError."""
        header = self._read_exact(protocol.HEADER_BYTES)
        if header is None:
            return None
        body = self._read_exact(protocol.frame_length(header))
        if body is None:
            return None
        return protocol.decode_frame(body)

    def _read_exact(self, n: int) -> bytes | None:
        while len(self._buffer) < n:
            try:
                chunk = os.read(self.rfd, max(65536, min(n - len(self._buffer), 1 << 24)))
            except OSError:
                return None
            if not chunk:
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


class SourceClient:
    """The worker's end of the source channel (:mod:`recursa.repl.source_server`): a
    read-only descriptor of a file the pack links to, by its number.

    Each request asks for the file wanted and the next ones not yet held (code that
    reads one file often reads the next), up to ``protocol.SOURCE_BATCH``; the
    descriptors that come back unasked-for wait in :attr:`_held` (as many, the oldest closed
    first) and serve a later read if the file's size and times have not moved since.
    Every message is whole (``SOCK_SEQPACKET``), and each entry names its file, so a
    reply left over from an interrupted cell is filed away like any other."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._lock = threading.Lock()  # the code's threads share the channel
        self._held: dict[int, tuple[int, tuple[int, int, int]]] = {}
        self._total: int | None = None  # linked files in the pack, from the first reply

    def open(self, number: int) -> int:
        with self._lock:
            held = self._held.pop(number, None)
            if held is not None:
                fd, seen = held
                if _moved(fd) == seen:
                    return fd
                os.close(fd)  # changed since it was sent: the host checks it again
            end = number + protocol.SOURCE_BATCH
            if self._total is not None:
                end = min(end, self._total)
            wanted = [number, *(n for n in range(number + 1, end) if n not in self._held)]
            self._sock.sendall(b"".join(protocol.SOURCE_NUMBER.pack(n) for n in wanted))
            while True:
                answer = self._receive(number)
                if answer is not None:
                    break
        if isinstance(answer, int):
            return answer
        raise OSError(answer)

    def _receive(self, number: int) -> int | str | None:
        """Read one reply, keep what it holds; the descriptor (or the refusal) for
        ``number`` when it holds one, else None."""
        header, entry = protocol.SOURCE_HEADER, protocol.SOURCE_ENTRY
        reply, fds, _flags, _addr = socket.recv_fds(self._sock, 20_000, protocol.SOURCE_BATCH)
        if len(reply) < header.size:
            for fd in fds:
                os.close(fd)
            raise OSError("the host closed the source channel")
        count, self._total = header.unpack_from(reply)
        at, answer = header.size, None
        for _ in range(count):
            got, status, length = entry.unpack_from(reply, at)
            at += entry.size
            text = reply[at : at + length].decode("utf-8", "replace")
            at += length
            sent = fds.pop(0) if status == 0 and fds else None
            if got == number and answer is None:
                answer = sent if sent is not None else (text or "the host sent no descriptor")
            elif sent is not None:
                self._keep(got, sent)
        for extra in fds:
            os.close(extra)
        return answer

    def _keep(self, number: int, fd: int) -> None:
        old = self._held.pop(number, None)
        if old is not None:
            os.close(old[0])
        self._held[number] = (fd, _moved(fd))
        while len(self._held) > protocol.SOURCE_BATCH:
            oldest = next(iter(self._held))
            os.close(self._held.pop(oldest)[0])


def _moved(fd: int) -> tuple[int, int, int]:
    """What changes when a file is written: its size and times."""
    st = os.fstat(fd)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Slot:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: protocol.Reply | None = None


class Worker:
    """Serves cells from the channel in the main thread; calls to the host from any thread."""

    def __init__(self, channel: Channel, runtime: Any) -> None:
        import queue

        self.channel = channel
        self.runtime = runtime
        self.repl: Any = None
        self.inbox: queue.SimpleQueue[protocol.RunCell | None] = queue.SimpleQueue()
        self.pending: dict[int, _Slot] = {}
        self.ids = itertools.count(1)

    # -- threads -------------------------------------------------------------------------
    def start_threads(self) -> None:
        for target, name in (
            (self._read_forever, "reader"),
            (self.channel.write_forever, "writer"),
        ):
            threading.Thread(target=_no_sigint(target), name=f"recursa-{name}", daemon=True).start()

    def _read_forever(self) -> None:
        while True:
            try:
                frame = self.channel.recv()
            except protocol.ProtocolError as exc:
                sys.stderr.write(f"recursa worker: protocol error from the host: {exc}\n")
                sys.stderr.flush()
                os._exit(1)
            if frame is None or isinstance(frame, protocol.Close):
                os._exit(0)  # the host closed the channel (or died): never outlive it
            if isinstance(frame, protocol.Reply):
                slot = self.pending.get(frame.id)
                if slot is not None:
                    slot.reply = frame
                    slot.event.set()
            elif isinstance(frame, protocol.RunCell):
                self.inbox.put(frame)

    # -- the REPL's only way out ---------------------------------------------------------
    def call_host(self, name: str, payload: dict[str, Any]) -> Any:
        """Ask the host (it checks the request: one that does not decode gets an error)."""
        HostCallError = self.runtime.HostCallError
        if not isinstance(name, str) or not isinstance(payload, dict):
            raise HostCallError("a host call needs a str name and a dict payload")
        call_id = next(self.ids)
        slot = _Slot()
        self.pending[call_id] = slot
        try:
            try:
                self.channel.send(protocol.Call(call_id, name, payload))
            except (TypeError, ValueError, RecursionError) as exc:
                raise HostCallError(f"{name}: arguments must be JSON values ({exc})") from None
            except protocol.ProtocolError as exc:
                raise HostCallError(f"{name}: {exc}") from None
            slot.event.wait()
        finally:
            self.pending.pop(call_id, None)
        reply = slot.reply
        if reply is None:
            raise HostCallError(f"{name}: no reply from the host")
        if reply.error is not None:
            raise HostCallError(reply.error)
        return reply.ok

    # -- cells ---------------------------------------------------------------------------
    def serve(self) -> None:
        """Run cells in the main thread: a SIGINT interrupts a cell and is ignored between cells."""
        while True:
            signal.signal(signal.SIGINT, _ignore)
            try:
                msg = self.inbox.get()
            except KeyboardInterrupt:
                continue
            if msg is None:
                return
            result: dict[str, Any] | None = None
            try:
                try:
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    result = self.repl.run(msg.code)
                finally:
                    signal.signal(signal.SIGINT, _ignore)
            except KeyboardInterrupt:
                pass
            if result is None:  # interrupted outside the runtime's own guard
                result = {"output": "", "error": "KeyboardInterrupt", "final": None}
            try:
                self.channel.send(_cell_done(result))
            except (TypeError, ValueError, RecursionError, protocol.ProtocolError) as exc:
                self.channel.send(
                    protocol.CellDone(error=f"the cell's result could not be sent: {exc}")
                )


def _cell_done(result: dict[str, Any]) -> protocol.CellDone:
    """The frame of one cell's outcome (``Repl.run``'s dict), every field of its type."""
    error, final = result.get("error"), result.get("final")
    return protocol.CellDone(
        output=str(result.get("output") or ""),
        error=None if error is None else str(error),
        final=None if final is None else str(final),
        duration_s=float(result.get("duration_s") or 0.0),
        interrupted=str(error or "").rstrip().endswith("KeyboardInterrupt"),
    )


def _ignore(signum: int, frame: Any) -> None:
    """SIGINT between cells: a late interrupt for a cell that already finished."""


def _no_sigint(target: Any) -> Any:
    """Run ``target`` with SIGINT blocked, so the kernel delivers it to the main thread."""

    def run() -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        target()

    return run


# -- context -------------------------------------------------------------------------------
def _read_ascii(fd: int, size: int) -> str | None:
    """A pure-ASCII file as a str built in place: peak memory 1x the file, not 2x.

    ``str(mmap, "utf-8")`` holds the mapped file pages and the new str at once. For
    ASCII text (the common case) allocate the final compact str with PyUnicode_New and
    read the file straight into its buffer, checking each block is ASCII. None when it
    is not (the caller then decodes as before) or off CPython.
    """
    if sys.implementation.name != "cpython":
        return None
    try:
        import ctypes

        new = ctypes.pythonapi.PyUnicode_New
    except (ImportError, AttributeError, OSError):
        return None
    new.restype = ctypes.py_object
    new.argtypes = (ctypes.c_ssize_t, ctypes.c_uint32)
    text: str = new(size, 127)  # compact ASCII: its characters follow the PyASCIIObject header
    header = sys.getsizeof("") - 1
    view = memoryview((ctypes.c_char * size).from_address(id(text) + header)).cast("B")
    # Each block is copied once to check it is ASCII; freed 16 MB copies stay in the
    # heap (15 MB of RSS for the rest of the run), 1 MB ones do not, at the same speed.
    block = 1 << 20
    done = 0
    try:
        while done < size:
            got = os.preadv(fd, [view[done : done + block]], done)
            if got <= 0 or not bytes(view[done : done + got]).isascii():
                return None  # not ASCII (or the file shrank): this str is dropped unseen
            done += got
    finally:
        view.release()
    return text


def load_context(fd: int, fmt: str) -> Any:
    """The context from its file: ASCII read in place, else decoded from a memory map.

    A ``pack`` (many documents) stays mapped: the runtime's ``Files`` decodes one
    document when the code asks for it, so the worker never holds every text."""
    import mmap

    if fmt == "pack":
        try:
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
    try:
        size = os.fstat(fd).st_size
        text = ""
        if size and fmt == "text" and (fast := _read_ascii(fd, size)) is not None:
            return fast
        if size:
            try:
                with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
                    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
                        mm.madvise(mmap.MADV_SEQUENTIAL)
                    text = str(mm, "utf-8")
            except (OSError, ValueError):  # not mappable (a pipe?): read it
                with os.fdopen(os.dup(fd), "rb") as fh:
                    text = fh.read().decode("utf-8")
    finally:
        os.close(fd)
    if fmt == "json":
        value = json.loads(text)
        del text
        return value
    return text


# -- resource limits -----------------------------------------------------------------------
LIMITS = (
    ("memory_bytes", "RLIMIT_AS"),
    ("cpu_seconds", "RLIMIT_CPU"),
    ("processes", "RLIMIT_NPROC"),
    ("file_size_bytes", "RLIMIT_FSIZE"),
    ("open_files", "RLIMIT_NOFILE"),
)


def apply_limits(limits: dict[str, Any], namespaced: bool) -> dict[str, Any]:
    """Lower soft and hard limits (so they stay down); returns what is in force."""
    try:
        import resource
    except ImportError:  # Windows
        return {"unsupported": True}
    applied: dict[str, Any] = {}
    if hasattr(resource, "RLIMIT_CORE"):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files in the private dir
    for key, name in LIMITS:
        value = limits.get(key)
        res = getattr(resource, name, None)
        if value is None or res is None:
            continue
        if key == "processes":
            if limits.get("uid0"):
                applied["processes_not_enforced"] = "uid 0"
                continue
            value = _process_limit(value, namespaced)
            if value is None:
                applied["processes_not_enforced"] = f"not supported on {sys.platform}"
                continue
        soft, hard = value, value + 5 if key == "cpu_seconds" else value  # SIGXCPU, then KILL
        _, old_hard = resource.getrlimit(res)
        if old_hard != resource.RLIM_INFINITY:
            hard = min(hard, old_hard)
            soft = min(soft, hard)
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError):  # e.g. RLIMIT_AS on macOS
            continue
        applied[key] = soft
    return applied


def _process_limit(limit: int, namespaced: bool) -> int | None:
    """RLIMIT_NPROC counts every task of the (kernel's) user; uid 0 is exempt from it.

    In a user namespace the kernel counts the namespace's own tasks, so the limit
    is used as is. Without one, it is added to the tasks the user already runs.
    """
    if namespaced:
        return limit
    if not sys.platform.startswith("linux"):
        return None
    uid = str(os.getuid())
    tasks = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/status") as fh:
                    fields = dict(line.split(":", 1) for line in fh if ":" in line)
            except OSError:
                continue
            if fields.get("Uid", "").split()[:1] == [uid]:
                tasks += int(fields.get("Threads", "1"))
    return tasks + limit


# -- the unshare isolation level -----------------------------------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 32, 1024, 2048, 4096, 8192, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "loongarch64": 41, "ppc64le": 203}
DEVICES = ("null", "zero", "full", "random", "urandom")


class SetupError(Exception):
    pass


class _Libc:
    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL(None, use_errno=True)

    def __call__(self, what: str, name: str, *args: Any) -> int:
        fn = getattr(self.lib, name)
        ret = int(fn(*args))
        if ret < 0:
            errno = self.ctypes.get_errno()
            raise SetupError(f"{what}: {os.strerror(errno)} (errno {errno})")
        return ret

    def mount(
        self, src: str | None, target: str, fstype: str | None, flags: int, data: str = ""
    ) -> None:
        self(
            f"mount {src or fstype or ''} on {target}",
            "mount",
            _b(src),
            _b(target),
            _b(fstype),
            self.ctypes.c_ulong(flags),
            _b(data) if data else None,
        )


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def die_with_parent(libc: _Libc, parent: int | None) -> None:
    libc("prctl(PDEATHSIG)", "prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # the parent died before we asked to die with it


def enter_sandbox(spec: dict[str, Any], inherited: list[int]) -> int:
    """Become the REPL process of a fresh set of namespaces; return only in that process,
    with the gate of :func:`become_init`.

    Three processes: this one stays outside and exits with the REPL's status; its child
    is pid 1 of the new pid namespace (it reaps orphans; when it dies the kernel kills
    everything in the namespace); the grandchild, pid 2, returns and runs the REPL.
    Unprivileged (the usual case), a user namespace comes first and gives the rights
    to mount. Started as root, the namespaces are made with real privileges and the
    sandbox then drops to ``run_as`` inside its own user namespace, which makes
    RLIMIT_NPROC count this sandbox's processes (uid 0 is exempt from that limit).
    """
    libc = _Libc()
    privileged = bool(spec.get("privileged"))
    with open("/proc/sys/kernel/cap_last_cap") as fh:
        last_cap = int(fh.read())
    uid, gid = os.geteuid(), os.getegid()
    die_with_parent(libc, spec.get("host_pid"))
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    libc("unshare", "unshare", flags if privileged else flags | CLONE_NEWUSER)
    if not privileged:
        _map_ids(0, uid, 0, gid)
        die_with_parent(libc, spec.get("host_pid"))  # kept across new credentials, or set again
    # The outer process holds the write end: once it is gone, the read end hangs up.
    outer_alive, outer_holds = os.pipe()
    init = os.fork()
    if init:
        os.close(outer_alive)
        _become_reaper(init, inherited, outer_holds)  # the outer process: wait for pid 1
    # pid 1 of the new namespace
    os.close(outer_holds)
    die_with_parent(libc, None)
    _build_root(libc, spec["root"], spec["mounts"])
    hostname = b"sandbox"
    libc("sethostname", "sethostname", hostname, len(hostname))
    run_as = spec.get("run_as")
    if privileged:
        if not run_as:
            raise SetupError("a privileged sandbox needs run_as")
        new_uid, new_gid = int(run_as[0]), int(run_as[1])
        os.setgroups([])
        os.setresgid(new_gid, new_gid, new_gid)
        os.setresuid(new_uid, new_uid, new_uid)
        libc("prctl(DUMPABLE)", "prctl", PR_SET_DUMPABLE, 1, 0, 0, 0)  # own /proc/self again
        libc("unshare(user)", "unshare", CLONE_NEWUSER)
        _map_ids(new_uid, new_uid, new_gid, new_gid)
        die_with_parent(libc, None)  # a change of uid cleared the parent-death signal
    _exit_if_hung_up(outer_alive)  # the outer process died before that signal was set
    try:  # no nested user namespaces (their capabilities are a kernel attack surface)
        with open("/proc/sys/user/max_user_namespaces", "w") as fh:
            fh.write("0")
    except OSError:
        pass
    _drop_capabilities(libc, last_cap)
    return become_init(libc, inherited)


def become_init(libc: _Libc, inherited: list[int]) -> int:
    """As pid 1 of the sandbox's pid namespace: fork the REPL (which returns) and reap.

    pid 1 holds the namespace: while it lives, so may any daemon the REPL starts
    (``setsid``, double forks), and its parent-death signal is what ends it with the
    host. So nothing in the namespace may ptrace it or write its memory (to clear that
    signal, or keep it from exiting): it is non-dumpable whenever model code can run,
    and ptrace of a non-dumpable process needs CAP_SYS_PTRACE over its memory, which no
    process of the sandbox has. The REPL makes itself dumpable again (its own /proc/self).

    pid 1 then execs a bare interpreter to reap (:data:`_REAPER`), so it does not keep
    this process's memory. An exec makes a process dumpable again, so the new program
    first makes itself non-dumpable and only then writes to the returned *gate*: the
    REPL reads it (:func:`_wait_for_init`) before it says hello, that is before any
    code of the model runs.
    """
    libc("prctl(DUMPABLE)", "prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)
    gate, opens = os.pipe()
    worker = os.fork()
    if worker:
        os.close(gate)
        _become_reaper(worker, inherited, opens, opens)
    os.close(opens)
    libc("prctl(DUMPABLE)", "prctl", PR_SET_DUMPABLE, 1, 0, 0, 0)
    die_with_parent(libc, 1)
    return gate


def _wait_for_init(gate: int) -> None:
    """The REPL: wait until pid 1 is non-dumpable again after its exec."""
    try:
        said = os.read(gate, 1)
    finally:
        os.close(gate)
    if said != INIT_READY:
        raise SetupError("the sandbox's init did not start")


def _exit_if_hung_up(fd: int) -> None:
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if poller.poll(0):
        os._exit(1)
    os.close(fd)


def _map_ids(inner_uid: int, outer_uid: int, inner_gid: int, outer_gid: int) -> None:
    for path, text in (
        ("/proc/self/setgroups", "deny"),
        ("/proc/self/uid_map", f"{inner_uid} {outer_uid} 1\n"),
        ("/proc/self/gid_map", f"{inner_gid} {outer_gid} 1\n"),
    ):
        try:
            with open(path, "w") as fh:
                fh.write(text)
        except OSError as exc:
            raise SetupError(f"writing {path}: {exc}") from None


def _build_root(libc: _Libc, root: str, mounts: list[list[str]]) -> None:
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE)
    libc.mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    for kind, src, dst in mounts:
        target = root + dst
        if kind in ("ro", "rw"):
            if os.path.isdir(src):
                os.makedirs(target, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                open(target, "ab").close()
            libc.mount(src, target, None, MS_BIND | (MS_REC if kind == "rw" else 0))
            if kind == "ro":
                _remount_readonly(libc, target)
        elif kind == "symlink":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(src, target)
        elif kind == "dir":
            os.makedirs(target, exist_ok=True)
        elif kind == "proc":
            os.makedirs(target, exist_ok=True)
            libc.mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "dev":
            os.makedirs(target, exist_ok=True)
            for name in DEVICES:
                open(f"{target}/{name}", "ab").close()
                libc.mount(f"/dev/{name}", f"{target}/{name}", None, MS_BIND)
            for name, link in (
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
            ):
                os.symlink(link, f"{target}/{name}")
            os.makedirs(f"{target}/shm")
            libc.mount("tmpfs", f"{target}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m")
        else:
            raise SetupError(f"unknown mount kind {kind!r}")
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is not None:
        libc("pivot_root", "syscall", number, b".", b".")
        libc("umount old root", "umount2", b".", MNT_DETACH)
    else:  # no pivot_root number known: move the new root over / and chroot into it
        libc.mount(".", "/", None, MS_MOVE)
        os.chroot(".")
    os.chdir("/")
    libc.mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _remount_readonly(libc: _Libc, target: str) -> None:
    """Read-only bind, keeping the flags the kernel locks (nosuid, nodev, atime, ...)."""
    st = os.statvfs(target)
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    for st_flag, ms_flag in (
        (os.ST_NOEXEC, MS_NOEXEC),
        (os.ST_NOATIME, MS_NOATIME),
        (os.ST_NODIRATIME, MS_NODIRATIME),
        (os.ST_RELATIME, MS_RELATIME),
    ):
        if st.f_flag & st_flag:
            flags |= ms_flag
    if not st.f_flag & (os.ST_NOATIME | os.ST_RELATIME):
        flags |= MS_STRICTATIME
    libc.mount(None, target, None, flags)


def _drop_capabilities(libc: _Libc, last_cap: int) -> None:
    for cap in range(last_cap + 1):
        libc(f"drop capability {cap}", "prctl", PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc("clear ambient capabilities", "prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    libc("no_new_privs", "prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    ctypes = libc.ctypes
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    libc("capset", "capset", header, data)


#: What the outer process and pid 1 become (see :func:`become_init`): a bare interpreter
#: that reaps until its ``child`` exits, then exits with its status (128 + N for a
#: signal, as shells do). An exec keeps the pid, the children, the parent-death signal
#: and ignored signals, so a process that only waits does not keep this one's memory.
#: Given a ``gate`` (pid 1), it first makes itself non-dumpable again and opens it.
_REAPER = f"""import os, sys
child, gate = int(sys.argv[1]), int(sys.argv[2])
if gate >= 0:
    import ctypes
    if ctypes.CDLL(None).prctl({PR_SET_DUMPABLE}, 0, 0, 0, 0) != 0:
        os._exit({EXIT_SETUP_FAILED})
    os.write(gate, {INIT_READY!r})
    os.close(gate)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        os._exit(1)
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
        os._exit(128 - code if code < 0 else code)
"""


def _become_reaper(child: int, inherited: list[int], keep: int, gate: int = -1) -> None:
    """Close the channel, ignore SIGINT and exec :data:`_REAPER` in a bare interpreter,
    holding ``keep`` open; if the exec fails, run it in this process."""
    for fd in inherited:
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_inheritable(keep, True)
    args = [str(child), str(gate)]
    with contextlib.suppress(OSError):
        os.execv(sys.executable, [sys.executable, "-I", "-S", "-B", "-c", _REAPER, *args])
    sys.argv = ["-c", *args]  # the exec failed: the same code, in this larger process
    exec(_REAPER, {"__name__": "__reaper__"})


# -- main ----------------------------------------------------------------------------------
def _load_runtime(path: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("recursa_runtime", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["recursa_runtime"] = module
    spec.loader.exec_module(module)
    return module


def _site_builtins() -> None:
    """exit(), quit() and help(), which ``site`` would define (the worker starts with -S)."""
    import builtins

    try:
        import _sitebuiltins
    except ImportError:
        return
    for name in ("exit", "quit"):
        if not hasattr(builtins, name):
            setattr(builtins, name, _sitebuiltins.Quitter(name, "Ctrl-D (i.e. EOF)"))
    if not hasattr(builtins, "help"):
        builtins.help = _sitebuiltins._Helper()


def _fail(stage: str, message: str) -> None:
    sys.stderr.write(f"recursa worker: {stage} failed: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_SETUP_FAILED if stage == "setup" else EXIT_CONTEXT_FAILED)


def main(argv: list[str]) -> None:
    config: dict[str, Any] = json.loads(argv[1])
    channel_cfg = config["channel"]
    if channel_cfg.get("stdio"):  # docker: frames on stdin/stdout; stray output to stderr
        rfd, wfd = os.dup(0), os.dup(1)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)
        os.close(devnull)
    else:
        rfd = wfd = int(channel_cfg["fd"])
    context_cfg = config["context"]
    context_fd = (
        int(context_cfg["fd"]) if "fd" in context_cfg else os.open(context_cfg["path"], os.O_RDONLY)
    )
    sources_fd = int(context_cfg.get("sources_fd", -1))
    inherited = sorted({rfd, wfd, context_fd} | ({sources_fd} if sources_fd >= 0 else set()))
    init_gate = None
    try:
        sandbox = config.get("unshare")
        if sandbox:
            init_gate = enter_sandbox(sandbox, inherited)
        elif config.get("init"):  # bubblewrap --as-pid-1: be the namespace's init
            init_gate = become_init(_Libc(), inherited)
        elif config.get("die_with_parent") and sys.platform.startswith("linux"):
            die_with_parent(_Libc(), config.get("host_pid"))
        os.chdir(config["cwd"])
        limits = apply_limits(config.get("limits", {}), namespaced=bool(config.get("namespaced")))
        runtime = _load_runtime(config["runtime"])
    except (SetupError, OSError, ValueError, ImportError) as exc:
        _fail("setup", str(exc))
    for fd in inherited:
        if fd != context_fd:
            os.set_inheritable(fd, False)
    sys.path.extend(config.get("sys_path", []))
    _site_builtins()
    import faulthandler

    faulthandler.enable(all_threads=False)  # a crash leaves the cell's stack in the log
    started = time.perf_counter()
    try:
        context = load_context(context_fd, context_cfg.get("format", "text"))
    except MemoryError:
        _fail("context", "the context does not fit in the sandbox memory limit")
    except (OSError, ValueError) as exc:
        _fail("context", str(exc))
    context_s = time.perf_counter() - started
    worker = Worker(Channel(rfd, wfd), runtime)
    repl_cfg = config.get("repl", {})
    if context_cfg.get("format") == "json":
        context = runtime.materialize(context)  # images back into Image objects
    elif context_cfg.get("format") == "pack":
        try:
            opener = SourceClient(sources_fd).open if sources_fd >= 0 else None
            context = runtime.Files(context, opener)
        except (ValueError, KeyError, TypeError) as exc:
            _fail("context", str(exc))
    worker.repl = runtime.Repl(
        context,
        worker.call_host,
        subcalls=bool(repl_cfg.get("subcalls", True)),
        tools=repl_cfg.get("tools", []),
        max_output_chars=int(repl_cfg.get("max_output_chars", 20_000)),
    )
    del context
    if init_gate is not None:
        try:
            _wait_for_init(init_gate)
        except (SetupError, OSError) as exc:
            _fail("setup", str(exc))
    worker.start_threads()
    worker.channel.send(protocol.Hello(os.getpid(), context_s, limits))
    worker.serve()


if __name__ == "__main__":
    main(sys.argv)
