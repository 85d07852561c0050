"""Attacks on the subprocess sandbox: each is a cell that must fail inside the sandbox
while the session goes on and the host stays unharmed.

Run at every isolation level this machine can build. The ``process`` level (no
namespaces) is only expected to hold against the attacks it claims to stop (clean
environment, resource limits, timeouts, crashes); the others are skipped there with
the reason, as docs/security.md says.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from recursa.repl import isolation
from recursa.repl.base import CellResult, Sandbox

from ..repl.sandboxes import child_pids, skip_unless_buildable, started

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


@pytest.fixture(params=isolation.LEVELS)
async def level(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    await skip_unless_buildable(name)
    return name


def needs_namespaces(level: str) -> None:
    if level == "process":
        pytest.skip("the process level does not protect against this (docs/security.md)")


@pytest.fixture
async def sandbox(level: str) -> AsyncIterator[Sandbox]:
    async with started("subprocess", isolation=level, grace_seconds=1.0) as sb:
        yield sb


@pytest.fixture
def secret() -> str:
    return f"TOPSECRET-{uuid.uuid4().hex}"


async def cell(sb: Sandbox, code: str, timeout: float = 10.0) -> CellResult:
    return await sb.run(code, timeout=timeout)


async def still_works(sb: Sandbox) -> None:
    result = await cell(sb, "'still here'")
    assert (result.output, result.error) == ("still here\n", None)


def seen(result: CellResult) -> str:
    return f"{result.output}\n{result.error or ''}"


# -- files ---------------------------------------------------------------------------------
@pytest.fixture
def secret_files(
    tmp_path: Path, secret: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Path]]:
    """The secret in a temporary $HOME, in a temp dir, and in the real home directory."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    real_home = Path(os.path.expanduser("~root" if os.geteuid() == 0 else "~"))
    files = [home / ".secret", tmp_path / "secret.txt"]
    if real_home.is_dir() and os.access(real_home, os.W_OK):
        files.append(real_home / f".recursa-test-secret-{uuid.uuid4().hex[:8]}")
    for f in files:
        f.write_text(secret)
    try:
        yield files
    finally:
        for f in files:
            f.unlink(missing_ok=True)


async def test_reading_a_secret_file_fails(
    level: str, sandbox: Sandbox, secret: str, secret_files: list[Path]
) -> None:
    needs_namespaces(level)
    paths = [str(p) for p in secret_files] + ["~/.secret", "/root/.secret", "/etc/shadow"]
    code = (
        "import os\n"
        f"for p in {paths!r}:\n"
        "    try:\n"
        "        print(open(os.path.expanduser(p)).read())\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__)\n"
    )
    result = await cell(sandbox, code)
    assert secret not in seen(result)
    assert result.output.count("Error") == len(paths)
    await still_works(sandbox)


async def test_a_shell_cannot_read_the_secret_either(
    level: str, sandbox: Sandbox, secret: str, secret_files: list[Path]
) -> None:
    needs_namespaces(level)
    path = str(secret_files[1])
    code = (
        "import os, subprocess, sys\n"
        "for argv in (['cat', P], ['/bin/sh', '-c', 'cat ' + P],\n"
        "             [sys.executable, '-c', 'print(open(%r).read())' % P]):\n"
        "    try:\n"
        "        r = subprocess.run(argv, capture_output=True, text=True, timeout=5)\n"
        "        print(argv[0], r.returncode, r.stdout, r.stderr[-200:])\n"
        "    except OSError as e:\n"
        "        print(argv[0], type(e).__name__)\n"
        "print('system', os.system('cat ' + P))\n"
    ).replace("P", repr(path))
    result = await cell(sandbox, code)
    assert secret not in seen(result)
    assert "cat FileNotFoundError" in result.output  # no /usr/bin in the sandbox
    await still_works(sandbox)


async def test_writing_outside_the_private_directory_fails(
    level: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    needs_namespaces(level)
    targets = [tmp_path / "pwned", Path(sys.prefix) / "pwned", Path(sys.base_prefix) / "pwned",
               Path(os.__file__).parent / "pwned.py", Path("/pwned"), Path("/etc/pwned")]  # fmt: skip
    code = (
        f"for p in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "        print(p, 'WRITTEN')\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__)\n"
        "open('fine.txt', 'w').write('the private dir is writable')\n"
    )
    result = await cell(sandbox, code)
    assert "WRITTEN" not in result.output and result.error is None
    for target in targets:
        assert not target.exists(), target
    await still_works(sandbox)


async def test_the_python_installation_and_context_cannot_be_changed(
    level: str, sandbox: Sandbox
) -> None:
    needs_namespaces(level)
    code = (
        "import os, json\n"
        "print(os.listdir('/proc/self/fd'))\n"  # the context's descriptor is closed
        "for p in (os.__file__, json.__file__):\n"
        "    for act in (lambda: os.chmod(p, 0o777), lambda: open(p, 'a')):\n"
        "        try:\n"
        "            act(); print('CHANGED', p)\n"
        "        except OSError as e:\n"
        "            print(type(e).__name__)\n"
    )
    result = await cell(sandbox, code)
    assert "CHANGED" not in result.output
    fds = eval(result.output.splitlines()[0])
    assert len(fds) <= 5  # stdin/out/err, the channel, the listing itself
    await still_works(sandbox)


# -- environment and processes -----------------------------------------------------------
async def test_the_hosts_api_key_is_not_visible(
    level: str, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", f"sk-{secret}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", f"sk-ant-{secret}")
    async with started("subprocess", isolation=level) as sb:
        code = (
            "import os\n"
            "print(dict(os.environ))\n"
            "for p in os.listdir('/proc') if os.path.isdir('/proc') else []:\n"
            "    if p.isdigit() or p == 'self':\n"
            "        try:\n"
            "            print(open(f'/proc/{p}/environ', 'rb').read())\n"
            "        except OSError:\n"
            "            pass\n"
        )
        if level == "process":  # other processes of the user are visible without a pid ns
            code = "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())"
        result = await cell(sb, code)
        assert secret not in seen(result)
        assert "OPENAI_API_KEY" not in result.output


async def test_killing_the_parent_and_everything_else_does_not_reach_the_host(
    level: str, sandbox: Sandbox
) -> None:
    needs_namespaces(level)  # without a pid namespace this WOULD kill the host
    host = os.getpid()
    code = (
        "import os, signal\n"
        f"for pid in (os.getppid(), 1, {host}, -1):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "        print(pid, 'sent')\n"
        "    except OSError as e:\n"
        "        print(pid, type(e).__name__)\n"
    )
    await cell(sandbox, code)
    assert os.getpid() == host  # we are alive to check
    await still_works(sandbox)


async def test_host_processes_are_invisible_and_cannot_be_traced(
    level: str, sandbox: Sandbox
) -> None:
    needs_namespaces(level)
    host = os.getpid()
    code = (
        "import os, ctypes\n"
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "print(len(pids))\n"
        "print([open(f'/proc/{p}/cmdline', 'rb').read() for p in pids])\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"print(libc.ptrace(16, {host}, None, None), ctypes.get_errno())\n"
    )
    result = await cell(sandbox, code)
    lines = result.output.splitlines()
    assert int(lines[0]) < 10
    assert b"pytest" not in lines[1].encode()
    assert lines[2].startswith("-1 ")  # ESRCH: no such process in its namespace
    await still_works(sandbox)


async def test_a_fork_bomb_hits_the_process_limit(level: str, sandbox: Sandbox) -> None:
    if "no process-count limit" in sandbox.isolation:
        pytest.skip(f"RLIMIT_NPROC does not apply to uid 0 at this level: {sandbox.isolation}")
    if level == "process":
        pytest.skip("without a user namespace the limit counts all of the user's processes")
    before = child_pids()
    code = (
        "import os, time\n"
        "pids, err = [], None\n"
        "try:\n"
        "    for _ in range(500):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        pids.append(pid)\n"
        "except OSError as e:\n"
        "    err = e.errno\n"
        "print(len(pids), err)\n"
        "for p in pids:\n"
        "    os.kill(p, 9)\n"
        "    os.waitpid(p, 0)\n"
    )
    result = await cell(sandbox, code, timeout=30)
    forked, errno = result.output.split()
    assert int(forked) < 64 and errno == "11"  # EAGAIN
    assert child_pids() - before == set()
    await still_works(sandbox)


async def test_new_user_namespaces_are_refused(level: str, sandbox: Sandbox) -> None:
    needs_namespaces(level)
    code = "import ctypes\nprint(ctypes.CDLL(None, use_errno=True).unshare(0x10000000))"
    result = await cell(sandbox, code)
    assert result.output == "-1\n"


# -- network -------------------------------------------------------------------------------
async def test_a_server_on_localhost_gets_no_connection(level: str, sandbox: Sandbox) -> None:
    needs_namespaces(level)
    abstract = f"\0recursa-test-{uuid.uuid4().hex}"
    with socket.socket() as server, socket.socket(socket.AF_UNIX) as unix_server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        unix_server.bind(abstract)
        unix_server.listen()
        code = (
            "import socket\n"
            f"for host in ('127.0.0.1', 'localhost', '{socket.gethostname()}'):\n"
            "    try:\n"
            f"        socket.create_connection((host, {port}), timeout=2)\n"
            "        print(host, 'CONNECTED')\n"
            "    except OSError as e:\n"
            "        print(host, type(e).__name__)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            f"    s.connect({abstract!r})\n"
            "    print('unix CONNECTED')\n"
            "except OSError as e:\n"
            "    print('unix', type(e).__name__)\n"
            "try:\n"
            "    socket.getaddrinfo('example.com', 80)\n"
            "    print('dns RESOLVED')\n"
            "except OSError as e:\n"
            "    print('dns', type(e).__name__)\n"
        )
        result = await cell(sandbox, code)
        assert "CONNECTED" not in result.output and "RESOLVED" not in result.output
        for s in (server, unix_server):
            s.settimeout(0.2)
            with pytest.raises(TimeoutError):
                s.accept()
    await still_works(sandbox)


# -- resources -----------------------------------------------------------------------------
async def test_allocating_6_gib_is_a_memory_error(sandbox: Sandbox) -> None:
    result = await cell(sandbox, "x = bytearray(6 * 2**30)")
    assert result.error is not None and "MemoryError" in result.error
    result = await cell(sandbox, "y = [0] * (10**9)")
    assert result.error is not None and "MemoryError" in result.error
    assert not result.restarted
    await still_works(sandbox)


async def test_an_endless_loop_is_interrupted(sandbox: Sandbox) -> None:
    await cell(sandbox, "kept = 1")
    result = await cell(sandbox, "while True:\n    pass", timeout=0.5)
    assert result.timed_out and not result.restarted
    assert (await cell(sandbox, "kept")).output == "1\n"


async def test_limits_cannot_be_raised(sandbox: Sandbox) -> None:
    code = (
        "import resource\n"
        "for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NOFILE):\n"
        "    try:\n"
        "        resource.setrlimit(r, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
        "        print('RAISED')\n"
        "    except (ValueError, OSError) as e:\n"
        "        print(type(e).__name__)\n"
    )
    result = await cell(sandbox, code)
    assert "RAISED" not in result.output and result.error is None


async def test_crashing_the_interpreter_restarts_the_worker(sandbox: Sandbox) -> None:
    result = await cell(sandbox, "import ctypes\nctypes.string_at(0)")
    assert result.restarted and result.error is not None and "SIGSEGV" in result.error
    await still_works(sandbox)


async def test_no_devices_and_no_sys(level: str, sandbox: Sandbox) -> None:
    needs_namespaces(level)
    code = "import os\nprint(sorted(os.listdir('/dev')), os.path.exists('/sys'))"
    result = await cell(sandbox, code)
    devices, has_sys = result.output.rsplit(" ", 1)
    assert has_sys.strip() == "False"
    allowed = {"null", "zero", "full", "random", "urandom", "tty", "shm", "pts", "ptmx",
               "fd", "stdin", "stdout", "stderr", "core"}  # fmt: skip
    assert set(eval(devices)) <= allowed
