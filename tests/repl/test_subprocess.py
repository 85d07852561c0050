"""The subprocess sandbox: isolation levels, timeouts, crashes, clean exits, start-up speed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from recursa.context import Context
from recursa.errors import ConfigError, SandboxError
from recursa.repl import isolation
from recursa.repl.base import SandboxConfig
from recursa.repl.docker import DockerSandbox
from recursa.repl.process import Limits, crash_summary, describe_exit
from recursa.repl.protocol import HostRequest, LlmQuery
from recursa.repl.subprocess import SubprocessSandbox

from .sandboxes import FakeHost, child_pids, started

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux behaviour")

LEVELS = isolation.LEVELS


async def level_or_skip(level: str) -> None:
    """Skip when this machine cannot build ``level`` (no bwrap, no user namespaces)."""
    try:
        async with started("subprocess", isolation=level):
            pass
    except Exception as exc:
        pytest.skip(f"isolation level {level} is not available here: {exc}")


@pytest.mark.parametrize("level", LEVELS)
async def test_each_level_runs_cells_and_says_what_it_is(level: str) -> None:
    await level_or_skip(level)
    async with started("subprocess", isolation=level) as sb:
        assert sb.isolation.startswith(f"{level}: ")
        result = await sb.run("x = 6 * 7\nprint(x)", timeout=10)
        assert (result.output, result.error) == ("42\n", None)


async def test_auto_picks_a_namespaced_level_where_one_works() -> None:
    async with started("subprocess") as sb:
        code = "import os; len([p for p in os.listdir('/proc') if p.isdigit()])"
        result = await sb.run(code, timeout=10)
        chosen = sb.isolation.split(":")[0]
    works = []
    for level in ("bubblewrap", "unshare"):
        try:
            async with started("subprocess", isolation=level):
                works.append(level)
        except Exception:
            pass
    if works:
        assert chosen in works
        assert int(result.output) < 10  # its own process tree: only a handful of pids
    else:
        assert chosen == "process"


def test_an_unknown_level_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown sandbox isolation"):
        SubprocessSandbox(isolation="vm")
    monkeypatch.setenv(isolation.ENV_VAR, "nonsense")
    with pytest.raises(ConfigError):
        SubprocessSandbox()


async def test_the_env_var_forces_a_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(isolation.ENV_VAR, "process")
    async with started("subprocess") as sb:
        assert sb.isolation.startswith("process: ")


@pytest.mark.parametrize("level", LEVELS)
async def test_the_worker_environment_is_scrubbed(
    level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await level_or_skip(level)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-the-sandbox")
    async with started("subprocess", isolation=level) as sb:
        result = await sb.run("import os; sorted(os.environ)", timeout=10)
        names = eval(result.output)
        assert "OPENAI_API_KEY" not in names
        assert set(names) <= {"HOME", "TMPDIR", "PATH", "LANG", "LC_ALL", "PWD",
                              "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}  # fmt: skip
        result = await sb.run("os.getcwd() == os.environ['HOME']", timeout=10)
        assert result.output == "True\n"


@pytest.mark.parametrize("level", LEVELS)
async def test_a_stuck_cell_is_interrupted_and_keeps_variables(level: str) -> None:
    await level_or_skip(level)
    async with started("subprocess", isolation=level) as sb:
        await sb.run("x = 1", timeout=10)
        started_at = time.perf_counter()
        result = await sb.run("import time\ntime.sleep(60)", timeout=0.5)
        assert time.perf_counter() - started_at < 2
        assert result.timed_out and not result.restarted
        assert result.error is not None
        assert result.error.startswith("cell interrupted after 0.5s (cell timeout); variables kept")
        assert "KeyboardInterrupt" in result.error and "worker.py" not in result.error
        assert (await sb.run("x", timeout=10)).output == "1\n"


async def test_a_cell_that_ignores_the_interrupt_is_killed_and_replaced() -> None:
    async with started("subprocess", grace_seconds=0.5) as sb:
        await sb.run("x = 1", timeout=10)
        code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
        result = await sb.run(code, timeout=0.3)
        assert result.timed_out and result.restarted
        assert result.error is not None and "all variables were lost" in result.error
        after = await sb.run("x", timeout=10)
        assert after.error is not None and "NameError" in after.error
        assert (await sb.run("'alive'", timeout=10)).output == "alive\n"


@pytest.mark.parametrize("level", LEVELS)
async def test_a_segfault_is_reported_and_a_fresh_worker_takes_over(level: str) -> None:
    await level_or_skip(level)
    async with started("subprocess", isolation=level) as sb:
        await sb.run("x = 1", timeout=10)
        result = await sb.run("import ctypes\nctypes.string_at(0)", timeout=10)
        assert result.restarted
        assert result.error is not None
        assert result.error.startswith(
            "the sandbox worker died (signal SIGSEGV: a crash in native code) while running "
            "this cell; a fresh worker was started and all variables were lost"
        )
        assert "Fatal Python error: Segmentation fault" in result.error
        assert '"<cell 2>", line 2' in result.error
        after = await sb.run("x", timeout=10)
        assert after.error is not None and "NameError" in after.error


async def test_os_exit_is_reported_with_its_code() -> None:
    async with started("subprocess") as sb:
        result = await sb.run("import os\nos._exit(3)", timeout=10)
        assert result.restarted
        assert result.error is not None
        assert result.error.startswith("the sandbox worker exited (code 3) while running this cell")
        assert (await sb.run("1 + 1", timeout=10)).output == "2\n"


class SlowHost(FakeHost):
    """llm_query('slow') takes 30 s; records the calls that were cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    async def __call__(self, request: HostRequest) -> Any:
        if isinstance(request, LlmQuery) and request.prompt == "slow":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return await super().__call__(request)


async def test_a_timeout_cancels_the_sub_calls_in_flight() -> None:
    host = SlowHost()
    async with started("subprocess", host=host) as sb:
        await sb.run("kept = 1", timeout=10)
        code = (
            "from concurrent.futures import ThreadPoolExecutor\n"
            "with ThreadPoolExecutor(3) as pool:\n"
            "    got = list(pool.map(llm_query, ['slow', 'slow', 'slow']))"
        )
        started_at = time.perf_counter()
        result = await sb.run(code, timeout=0.5)
        assert time.perf_counter() - started_at < 2.0
        assert result.timed_out and not result.restarted
        assert result.error is not None and "interrupted" in result.error
        await asyncio.sleep(0.1)
        assert host.cancelled == 3  # no model keeps working (and billing) for a dead cell
        assert (await sb.run("kept", timeout=10)).output == "1\n"
        result = await sb.run("llm_query('slow')", timeout=0.3)
        assert result.timed_out and "KeyboardInterrupt" in (result.error or "")


async def test_sys_exit_is_only_a_cell_error() -> None:
    async with started("subprocess") as sb:
        await sb.run("x = 1", timeout=10)
        result = await sb.run("import sys\nsys.exit(2)", timeout=10)
        assert result.error is not None and "SystemExit" in result.error
        assert not result.restarted
        assert (await sb.run("x", timeout=10)).output == "1\n"


async def test_a_worker_that_dies_between_cells_is_replaced_with_a_note() -> None:
    async with started("subprocess") as sb:
        await sb.run(
            "import os, threading\nthreading.Timer(0.05, os._exit, (9,)).start()", timeout=10
        )
        await asyncio.sleep(0.5)
        result = await sb.run("'fresh'", timeout=10)
        assert result.output == "fresh\n" and result.restarted
        assert result.notes and "exited (code 9) after the previous cell" in result.notes[0]


async def test_a_worker_breaking_the_protocol_is_replaced() -> None:
    async with started("subprocess") as sb:
        code = (
            "import json, os, sys, time\n"
            "fd = json.loads(sys.argv[1])['channel']['fd']\n"
            "os.write(fd, b'\\x7f\\xff\\xff\\xff')\n"
            "time.sleep(30)"
        )
        result = await sb.run(code, timeout=10)
        assert result.restarted
        assert result.error is not None and "protocol error" in result.error
        assert (await sb.run("'ok'", timeout=10)).output == "ok\n"


async def test_memory_is_limited() -> None:
    async with started("subprocess", limits=Limits(memory_bytes=1 << 30)) as sb:
        result = await sb.run("x = bytearray(2 * 2**30)", timeout=10)
        assert result.error is not None and "MemoryError" in result.error
        assert not result.restarted


async def test_file_size_is_limited() -> None:
    async with started("subprocess", limits=Limits(file_size_bytes=1 << 20)) as sb:
        code = "with open('big', 'wb') as f:\n    f.write(b'x' * (2 << 20))"
        result = await sb.run(code, timeout=10)
        assert result.error is not None and "File too large" in result.error


async def test_cpu_time_is_limited() -> None:
    async with started("subprocess", limits=Limits(cpu_seconds=1)) as sb:
        result = await sb.run("while True: pass", timeout=10)
        assert result.restarted
        assert result.error is not None and "SIGXCPU" in result.error
        assert "CPU-time limit of 1 s" in result.error


async def test_subcalls_can_be_switched_off() -> None:
    ctx = Context("c")
    sb = SubprocessSandbox()
    await sb.start(SandboxConfig(context=ctx, host=FakeHost(), subcalls=False))
    try:
        result = await sb.run("llm_query('x')", timeout=10)
        assert result.error is not None and "NameError" in result.error
    finally:
        await sb.close()
        ctx.cleanup()


async def test_a_non_json_tool_argument_is_a_cell_error() -> None:
    async with started("subprocess") as sb:
        result = await sb.run("add({1, 2})", timeout=10)
        assert result.error is not None and "arguments must be JSON values" in result.error
        assert (await sb.run("add(1, 2)", timeout=10)).output == "3\n"


async def test_the_stdio_channel_works_too() -> None:
    async with started("subprocess", channel="stdio") as sb:
        assert (await sb.run("llm_query('x')", timeout=10)).output == "echo:x\n"
        result = await sb.run("import time\ntime.sleep(30)", timeout=0.3)
        assert result.timed_out and not result.restarted


# -- clean exits -------------------------------------------------------------------------
@pytest.mark.parametrize("level", LEVELS)
async def test_close_leaves_no_process_and_no_directory(level: str) -> None:
    await level_or_skip(level)
    before = child_pids()
    async with started("subprocess", isolation=level) as sb:
        assert isinstance(sb, SubprocessSandbox)
        private = sb.private_dir
        assert private is not None and private.is_dir()
        assert child_pids() - before
        worker_pids = json.loads(
            (await sb.run("import os, json\njson.dumps([os.getpid()])", timeout=10)).output
        )
        assert worker_pids
        await sb.run("import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])", timeout=10)  # fmt: skip
    assert not private.exists()
    assert child_pids() - before == set()


async def test_no_leftovers_after_a_crash_and_a_timeout_kill() -> None:
    before = child_pids()
    async with started("subprocess", grace_seconds=0.3) as sb:
        assert isinstance(sb, SubprocessSandbox)
        private = sb.private_dir
        await sb.run("import ctypes; ctypes.string_at(0)", timeout=10)
        ignore = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
        await sb.run(ignore, timeout=0.2)
    assert private is not None and not private.exists()
    assert child_pids() - before == set()


async def test_cancelling_a_run_then_closing_cleans_up() -> None:
    before = child_pids()
    async with started("subprocess") as sb:
        assert isinstance(sb, SubprocessSandbox)
        private = sb.private_dir
        await sb.run("x = 5", timeout=10)
        task = asyncio.create_task(sb.run("import time\ntime.sleep(60)", timeout=100))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the abandoned cell was interrupted; the REPL goes on with its variables
        after = await sb.run("x", timeout=10)
        assert (after.output, after.error) == ("5\n", None)
    assert private is not None and not private.exists()
    assert child_pids() - before == set()


async def test_a_failed_start_leaves_nothing(tmp_path: Path) -> None:
    before = child_pids()
    sb = SubprocessSandbox(isolation="process", limits=Limits(memory_bytes=64 << 20))
    ctx = Context("x" * (100 << 20))
    try:
        with pytest.raises(SandboxError, match="could not load the context"):
            await sb.start(SandboxConfig(context=ctx, host=FakeHost()))
    finally:
        ctx.cleanup()
    assert sb.private_dir is None
    assert child_pids() - before == set()
    await sb.close()
    async with started("subprocess", isolation="process") as ok:  # the level is still usable
        assert (await ok.run("1", timeout=10)).output == "1\n"


async def test_run_before_start_and_after_close_is_an_error() -> None:
    sb = SubprocessSandbox()
    with pytest.raises(Exception, match="not started"):
        await sb.run("1", timeout=1)
    async with started("subprocess") as sb2:
        pass
    with pytest.raises(Exception, match="closed"):
        await sb2.run("1", timeout=1)


# -- speed -------------------------------------------------------------------------------
async def test_a_40mb_context_is_ready_quickly() -> None:
    text = ("The quick brown fox jumps over the lazy dog. " * 23 + "\n") * 40_000
    assert len(text) > 40_000_000
    started_at = time.perf_counter()
    async with started("subprocess", text) as sb:
        elapsed = time.perf_counter() - started_at
        assert isinstance(sb, SubprocessSandbox)
        result = await sb.run("len(context)", timeout=10)
        assert result.output == f"{len(text)}\n"
    assert sb.context_load_s < 2.0  # typically ~0.05 s: see benchmarks/sandbox_speed.py
    assert elapsed < 10.0  # includes writing the context file once


# -- helpers -----------------------------------------------------------------------------
def test_describe_exit() -> None:
    assert describe_exit(-11, wrapped=False, limits={}) == (
        "died (signal SIGSEGV: a crash in native code)"
    )
    assert describe_exit(128 + 9, wrapped=True, limits={}).startswith("died (signal SIGKILL")
    assert describe_exit(137, wrapped=False, limits={}) == "exited (code 137)"
    assert describe_exit(3, wrapped=True, limits={}) == "exited (code 3)"


def test_crash_summary_keeps_the_fatal_error_and_the_cell_frames() -> None:
    log = (
        "Fatal Python error: Segmentation fault\n\n"
        "Current thread 0x00007f (most recent call first):\n"
        '  File "/usr/lib/python3.11/ctypes/__init__.py", line 519 in string_at\n'
        '  File "<cell 2>", line 2 in <module>\n'
        '  File "/opt/recursa/runtime.py", line 281 in _execute\n'
        '  File "/opt/recursa/worker.py", line 190 in serve\n\n'
        "Extension modules: _ctypes (total: 1)\n"
    )
    assert crash_summary(log) == (
        "Fatal Python error: Segmentation fault\n"
        "Stack (most recent call first):\n"
        '  File "/usr/lib/python3.11/ctypes/__init__.py", line 519 in string_at\n'
        '  File "<cell 2>", line 2 in <module>'
    )
    assert crash_summary("nothing useful") == ""


def test_the_mount_plan_holds_python_and_the_private_dir_only(tmp_path: Path) -> None:
    layout = isolation.Layout(tmp_path)
    plan = isolation.mount_plan(layout)
    sources = {m.src for m in plan if m.kind in ("ro", "rw")}
    writable = {m.dst for m in plan if m.kind == "rw"}
    assert writable == {isolation.INSIDE_HOME, isolation.INSIDE_TMP}
    assert any(sys.base_prefix.startswith(s) or s.startswith(sys.base_prefix) for s in sources)
    home = os.path.expanduser("~")
    assert home not in sources and "/" not in sources and "/etc" not in sources
    assert not any(s.startswith("/usr/bin") and not s.startswith(sys.base_prefix) for s in sources
                   if not os.path.realpath(sys.executable).startswith(s))  # fmt: skip


def test_the_docker_command_isolates_the_container(tmp_path: Path) -> None:
    sb = DockerSandbox(image="python:3.11-slim", limits=Limits(processes=32))
    sb._layout = isolation.Layout(tmp_path)
    sb._context_path = tmp_path / "context.txt"
    sb._config = SandboxConfig(context=Context("c"), host=FakeHost())
    argv = sb.command("recursa-test")
    joined = " ".join(argv)
    for flag in (
        "--rm",
        "-i",
        "--init",
        "--read-only",
        "--network none",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--pids-limit 32",
        "--memory 4294967296b",
    ):
        assert flag in joined  # fmt: skip
    assert f"{tmp_path / 'context.txt'}:/run/recursa/context:ro" in argv
    assert "OPENAI_API_KEY" not in joined
    config = json.loads(argv[-1])
    assert config["channel"] == {"stdio": True}
    assert config["context"]["path"] == "/run/recursa/context"


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii text " * 5000,  # read straight into the final str
        "naïve café – 東京 " * 5000,  # not ASCII: decoded from the memory map
        "ascii first " * 2_000_000 + "then é",  # non-ASCII only past the first block
    ],
)
async def test_a_context_file_loads_exactly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ctx.txt"
    path.write_text(text, encoding="utf-8")
    async with started("subprocess", path) as sandbox:
        result = await sandbox.run(
            "print(len(context), context[:12], context[-6:], context.isascii())", timeout=30
        )
    assert result.error is None, result.error
    assert result.output.split()[0] == str(len(text))
    assert result.output.rstrip().endswith(str(text.isascii()))
    assert text[-6:].strip() in result.output
