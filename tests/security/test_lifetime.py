"""Nothing of a sandbox outlives it, and its cleanup is safe and complete.

Each test runs the subprocess sandbox as a real process and attacks it from inside a
cell: a daemon that double-forks, calls ``setsid`` and clears its parent-death
signal; ptrace (and ``process_vm_*``, ``/proc/N/mem``) of the sandbox's own init, the
process that holds its pid namespace; a private directory full of what cleanup trips
on (000 directories, deep trees, fifos, sockets, symlinks to outside). After
``close()``, after the CLI process exits and after it is killed, a scan of ``/proc``
must find no process of the sandbox, and nothing outside its directory may change.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from recursa.repl import isolation
from recursa.repl import process as process_module
from recursa.testing import ScriptedServer, http_router

from ..repl.sandboxes import skip_unless_buildable, started

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

NAMESPACED = ("bubblewrap", "unshare")


@pytest.fixture(params=NAMESPACED)
async def level(request: pytest.FixtureRequest) -> str:
    await skip_unless_buildable(request.param)
    return str(request.param)


@pytest.fixture(params=isolation.LEVELS)
async def any_level(request: pytest.FixtureRequest) -> str:
    await skip_unless_buildable(request.param)
    return str(request.param)


@pytest.fixture
def marker() -> str:
    return f"rcs{uuid.uuid4().hex[:12]}"  # a process name: at most 15 characters


def daemon_cell(marker: str, *, setsid: bool = True) -> str:
    """A cell that leaves a daemon behind: double fork, setsid, no parent-death signal,
    SIGTERM and SIGHUP ignored, named ``marker`` (its /proc/N/comm, seen from the host)."""
    return (
        "import ctypes, os, signal, time\n"
        "r, w = os.pipe()\n"
        "first = os.fork()\n"
        "if first == 0:\n"
        f"    if {setsid}:\n"
        "        os.setsid()\n"
        "    if os.fork():\n"
        "        os._exit(0)\n"
        "    libc = ctypes.CDLL(None)\n"
        f"    libc.prctl(15, {marker.encode()!r}, 0, 0, 0)  # PR_SET_NAME\n"
        "    libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG: none\n"
        "    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n"
        "        signal.signal(s, signal.SIG_IGN)\n"
        "    os.write(w, b'x')\n"
        "    while True:\n"
        "        time.sleep(0.2)\n"
        "os.waitpid(first, 0)\n"
        "os.read(r, 1)\n"
        "print('daemon up')\n"
    )


PTRACE_INIT = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
target = os.getppid()  # the sandbox's init: pid 1 of its pid namespace
out = {"target": target}
for name, request in (("attach", 16), ("seize", 0x4206)):
    ret = libc.ptrace(request, target, 0, 0)
    out[name] = "ok" if ret == 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    if ret == 0:
        os.waitpid(target, 0x40000000)
        libc.ptrace(17, target, 0, 0)  # PTRACE_DETACH

class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

buf = ctypes.create_string_buffer(8)
local = IOVec(ctypes.cast(buf, ctypes.c_void_p), 8)
remote = IOVec(0x400000, 8)
ret = libc.process_vm_readv(target, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
out["vm_readv"] = "ok" if ret >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
ret = libc.process_vm_writev(target, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
err = ctypes.get_errno()
out["vm_writev"] = "ok" if ret >= 0 else errno.errorcode.get(err, "?")
try:
    os.close(os.open(f"/proc/{target}/mem", os.O_RDWR))
    out["mem"] = "ok"
except OSError as exc:
    out["mem"] = errno.errorcode.get(exc.errno, "?")
print(repr(out))
"""


def processes_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as fh:
                    if fh.read().strip() == name:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def none_left(name: str, wait: float = 3.0) -> list[int]:
    """The processes still named ``name`` after up to ``wait`` seconds (zombies count)."""
    deadline = time.monotonic() + wait
    while (found := processes_named(name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def kill_all(pids: list[int]) -> None:
    """Kill ``pids`` and the pid namespaces they run in (through each one's init)."""
    for pid in pids:
        for target in (process_module.namespace_init(pid), pid):
            if target is not None:
                with contextlib.suppress(OSError):
                    os.kill(target, signal.SIGKILL)


@pytest.fixture
def reaper(marker: str) -> Iterator[None]:
    """Whatever a failing test leaves alive is killed."""
    try:
        yield
    finally:
        kill_all(processes_named(marker))


# -- 7. nothing of a sandbox outlives it ------------------------------------------------
async def test_the_sandbox_init_cannot_be_ptraced(level: str) -> None:
    async with started("subprocess", isolation=level) as sb:
        result = await sb.run(PTRACE_INIT, timeout=10)
        assert result.error is None, result.error
        out = eval(result.output)  # the dict the cell printed
        assert out["target"] == 1
        for key in ("attach", "seize", "vm_readv", "vm_writev", "mem"):
            assert out[key] in ("EPERM", "EACCES"), out
        assert (await sb.run("'still here'", timeout=10)).output == "still here\n"


INIT_SHAPE = r"""
import os
argv = open("/proc/1/cmdline", "rb").read().split(b"\0")
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
print(repr({"argv": [a.decode() for a in argv[1:6]], "init": rss(1), "repl": rss(os.getpid())}))
"""


async def test_the_sandbox_init_is_a_bare_reaper(level: str) -> None:
    """pid 1 execs a bare interpreter once the REPL exists (it keeps none of the
    worker's memory) and is non-dumpable again before any cell runs (the test above)."""
    async with started("subprocess", isolation=level) as sb:
        result = await sb.run(INIT_SHAPE, timeout=10)
        assert result.error is None, result.error
        out = eval(result.output)
        assert out["argv"][:4] == ["-I", "-S", "-B", "-c"], out
        assert not any("worker.py" in a for a in out["argv"]), out
        assert out["init"] < 0.8 * out["repl"], out


async def test_a_daemon_dies_when_the_sandbox_closes(level: str, marker: str, reaper: None) -> None:
    async with started("subprocess", isolation=level) as sb:
        result = await sb.run(daemon_cell(marker), timeout=10)
        assert result.output == "daemon up\n", result.error
        assert processes_named(marker), "the daemon is visible from the host while it runs"
    assert none_left(marker) == []


async def test_a_worker_killed_for_a_timeout_takes_its_daemons_along(
    level: str, marker: str, reaper: None
) -> None:
    async with started("subprocess", isolation=level, grace_seconds=0.5) as sb:
        await sb.run(daemon_cell(marker), timeout=10)
        stuck = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
        result = await sb.run(stuck, timeout=0.5)
        assert result.restarted
        assert none_left(marker) == []  # the old worker's namespace is gone with it
        assert (await sb.run("1 + 1", timeout=10)).output == "2\n"


async def test_a_child_in_the_process_group_dies_at_every_level(
    any_level: str, marker: str, reaper: None
) -> None:
    """The ``process`` level has no pid namespace: what stays in the worker's process
    group is killed with it (a ``setsid`` daemon is not: docs/security.md)."""
    async with started("subprocess", isolation=any_level) as sb:
        result = await sb.run(daemon_cell(marker, setsid=False), timeout=10)
        assert result.output == "daemon up\n", result.error
    assert none_left(marker) == []


CLI_DAEMON_TURNS = [
    "```repl\n{cell}```",
    "```repl\nFINAL('done')\n```",
]


def _cli(level: str, server_url: str, tmp: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    ctx = tmp / "c.txt"
    ctx.write_text("hello")
    return subprocess.Popen(
        [sys.executable, "-m", "recursa", "run", "q", "-c", str(ctx), "--model", "openai/s",
         "--base-url", server_url, "--sandbox", "subprocess", "--no-progress"],
        env={**env, isolation.ENV_VAR: level, "TMPDIR": str(tmp)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_no_process_of_the_sandbox_outlives_the_cli(
    level: str, marker: str, reaper: None, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    turns = [t.format(cell=daemon_cell(marker)) for t in CLI_DAEMON_TURNS]
    with ScriptedServer(http_router(turns)) as server:
        proc = _cli(level, server.url, tmp_path, clean_env)
        out, err = proc.communicate(timeout=120)
    assert (proc.returncode, out) == (0, "done\n"), err
    assert none_left(marker) == []
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("recursa-")]


def test_no_process_of_the_sandbox_outlives_a_killed_cli(
    level: str, marker: str, reaper: None, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """SIGKILL: no cleanup runs in the host; the parent-death signals of the sandbox's
    init (which the daemon cannot ptrace away) end the namespace."""
    up = tmp_path / "daemon-up"

    def reply(body: dict[str, object]) -> str:
        messages = body["messages"]
        assert isinstance(messages, list)
        if sum(1 for m in messages if m["role"] == "assistant") == 0:
            # and the REPL itself no longer exits when the host's end of its channel closes
            stay = "os._exit = lambda *args: None\n"
            return CLI_DAEMON_TURNS[0].format(cell=daemon_cell(marker) + stay)
        up.write_text("yes")
        time.sleep(30)  # the CLI is killed meanwhile
        return "```repl\nFINAL('late')\n```"

    with ScriptedServer(reply) as server:
        proc = _cli(level, server.url, tmp_path, clean_env)
        deadline = time.monotonic() + 60
        while not up.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert up.exists(), proc.communicate(timeout=10)
        assert processes_named(marker)
        proc.kill()
        proc.communicate(timeout=30)
        assert none_left(marker, wait=5.0) == []


# -- 8. cleanup is safe and complete -----------------------------------------------------
HOSTILE_TREE = r"""
import os, socket
os.chdir(os.environ["HOME"])
for top in ("home-tree", os.path.join(os.environ["TMPDIR"], "tmp-tree")):
    top = os.path.abspath(top)
    os.makedirs(top)
    os.mkfifo(os.path.join(top, "fifo"))
    os.chdir(top)
    s = socket.socket(socket.AF_UNIX)
    s.bind("sock")  # relative: a full path may be too long for a socket address
    for name, target in (("up", ".."), ("root", "/"), ("outside", OUTSIDE),
                         ("outside-file", OUTSIDE + "/keep"), ("dangling", "/nope")):
        os.symlink(target, os.path.join(top, name))
    os.chdir(top)
    for i in range(200):  # deeper than any fixed recursion of a naive walk would like
        os.mkdir("d")
        os.chdir("d")
    with open("leaf", "w") as fh:
        fh.write("x")
    os.chmod("leaf", 0)
    os.chdir(os.environ["HOME"])
    for name in ("locked", "locked/inner", "locked/inner/innermost"):
        os.mkdir(os.path.join(top, name))
    open(os.path.join(top, "locked/inner/innermost/f"), "w").close()
    for name in ("locked/inner/innermost", "locked/inner", "locked"):
        os.chmod(os.path.join(top, name), 0)
    os.mkdir(os.path.join(top, "readonly"))
    open(os.path.join(top, "readonly/f"), "w").close()
    os.chmod(os.path.join(top, "readonly"), 0o500)
os.chmod(os.environ["HOME"], 0o500)
print("planted")
"""


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $TMPDIR of its own (mode 1777, as /tmp), for the sandbox's private directory."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "keep").write_text("keep")
    os.chmod(out / "keep", 0o640)
    os.chmod(out, 0o750)
    return out


def modes(*paths: Path) -> list[int]:
    return [os.lstat(p).st_mode for p in paths]


async def test_cleanup_removes_any_tree_and_touches_nothing_outside(
    any_level: str, private_tmp: Path, outside: Path
) -> None:
    before = modes(private_tmp, outside, outside / "keep")
    async with started("subprocess", isolation=any_level) as sb:
        base = sb.private_dir  # type: ignore[attr-defined]
        assert base is not None and base.parent == private_tmp
        result = await sb.run(f"OUTSIDE = {str(outside)!r}\n" + HOSTILE_TREE, timeout=30)
        assert result.output == "planted\n", result.error
    assert not os.path.lexists(base)
    assert list(private_tmp.iterdir()) == []
    assert modes(private_tmp, outside, outside / "keep") == before
    assert (outside / "keep").read_text() == "keep"


def test_rmtree_on_the_host_removes_000_dirs_symlinks_and_special_files(
    tmp_path: Path, outside: Path
) -> None:
    base = tmp_path / "private"
    base.mkdir()
    (base / "a" / "b").mkdir(parents=True)
    (base / "a" / "b" / "f").write_text("x")
    os.mkfifo(base / "fifo")
    os.symlink(outside, base / "to-outside")
    os.symlink(base / "a", base / "to-inside")
    deep = base
    for _ in range(process_module._DEEPEST * 3):  # moved up, more than once
        deep = deep / "d"
    deep.mkdir(parents=True)
    os.chmod(base / "a" / "b", 0)
    os.chmod(base / "a", 0)
    before = modes(tmp_path, outside, outside / "keep")
    assert process_module.rmtree(base) is True
    assert not os.path.lexists(base)
    assert modes(tmp_path, outside, outside / "keep") == before


def test_a_failed_cleanup_is_logged_once_and_never_touches_the_parent(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The old handler made ``$TMPDIR`` (``/tmp``) mode 0700 when a removal failed."""
    base = private_tmp / "recursa-sandbox-x"
    (base / "inner").mkdir(parents=True)
    real_rmdir = os.rmdir

    def refuse(path: str, *, dir_fd: int | None = None) -> None:
        if os.path.basename(path) in ("recursa-sandbox-x", "inner"):
            raise PermissionError(1, "Operation not permitted")
        real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", refuse)
    before = os.stat(private_tmp).st_mode
    with caplog.at_level(logging.WARNING, logger="recursa.repl.process"):
        assert process_module.rmtree(base) is False
    assert os.stat(private_tmp).st_mode == before == stat.S_IFDIR | 0o1777
    warnings = [r for r in caplog.records if "could not remove" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_failed_cleanup_does_not_cost_the_run_its_answer(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recursa import RLM
    from recursa.models.scripted import ScriptedModel
    from recursa.testing import router

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(process_module, "_remove_dir", broken)
    model = ScriptedModel(router(["```repl\nFINAL('the answer')\n```"]))
    result = await RLM(model, sandbox="subprocess").acompletion("q", "some context")
    assert result.answer == "the answer"
    for leftover in private_tmp.iterdir():  # the test's own cleanup, not the sandbox's
        monkeypatch.undo()
        process_module.rmtree(leftover)
