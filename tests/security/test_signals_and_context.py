"""Context files are private and never left behind; SIGTERM and SIGHUP stop the CLI as
Ctrl-C does (cleanup, ``run_end`` in the trace, one line on stderr, exit 128 + N).

The CLI runs as a real process against a scripted server that stalls on the second
turn; the signal comes while the sandbox is up and its context file exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from recursa import RLM
from recursa.context import Context
from recursa.models.scripted import ScriptedModel
from recursa.testing import ScriptedServer, router

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and modes")
ROOT = Path(__file__).resolve().parents[2]


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("recursa-"))


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


# -- 10. context files ----------------------------------------------------------------
def test_a_context_file_is_private_and_in_a_private_directory(private_tmp: Path) -> None:
    for value in ("some text", ["a", "b"], {"k": "v"}):
        ctx = Context(value)
        path, _ = ctx.file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.parent.parent == private_tmp
        assert path.parent.name.startswith("recursa-context-")
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        ctx.cleanup()
        assert leftovers(private_tmp) == []


@pytest.mark.parametrize("sandbox", ["subprocess", "inprocess"])
async def test_no_context_file_is_left_when_the_answer_comes_before_the_sandbox(
    sandbox: str, private_tmp: Path
) -> None:
    """The first turn answers while the sandbox is still starting: its start (writing
    the context file, in a thread) is cancelled; nothing may be left, every time."""
    for _ in range(5):
        model = ScriptedModel(router(["FINAL(answered at once)"]))
        result = await RLM(model, sandbox=sandbox).acompletion("q", "some context")
        assert result.answer == "answered at once"
        assert leftovers(private_tmp) == []


async def test_no_context_file_is_left_after_an_error_or_a_cancellation(
    private_tmp: Path,
) -> None:
    def broken(messages: object) -> str:
        raise RuntimeError("the model broke")

    with pytest.raises(Exception, match="broke"):
        await RLM(ScriptedModel(broken), sandbox="subprocess").acompletion("q", "ctx")
    assert leftovers(private_tmp) == []

    started = asyncio.Event()

    def slow(messages: object) -> str:
        started.set()
        time.sleep(0.3)
        return "```repl\nimport time\ntime.sleep(30)\n```"

    rlm = RLM(ScriptedModel(slow), sandbox="subprocess")
    task = asyncio.ensure_future(rlm.acompletion("q", "ctx"))
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.sleep(1.0)  # the sandbox is up, the cell running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(private_tmp) == []


def test_a_context_file_goes_at_interpreter_exit(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from recursa.context import Context\n"
        "ctx = Context('some text')\n"
        "path, _ = ctx.file()\n"
        "print(path)\n"
        "sys.exit(0)  # no cleanup(), the Context still referenced\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).parent.parent == tmp_path
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_another_user_cannot_read_a_context_file(private_tmp: Path) -> None:
    """A sandbox running as nobody gets an open descriptor; by path, nobody gets nothing."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("no setpriv (util-linux)")
    ctx = Context("the secret context")
    path, _ = ctx.file()
    try:
        for target in (path, path.parent):
            proc = subprocess.run(
                [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                 "ls", "-l", str(target)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert proc.returncode != 0 and "Permission denied" in proc.stderr, proc
        proc = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode != 0 and "secret" not in proc.stdout
    finally:
        ctx.cleanup()


# -- 11. SIGTERM and SIGHUP -------------------------------------------------------------
@pytest.mark.parametrize(
    ("sig", "code", "name"),
    [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP"), (signal.SIGINT, 130, "")],
)
def test_a_stop_signal_cleans_up_ends_the_trace_and_exits_128_plus_n(
    sig: signal.Signals, code: int, name: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    stalled = tmp_path / "stalled"
    trace = tmp_path / "trace.jsonl"

    def reply(body: dict[str, object]) -> str:
        messages = body["messages"]
        assert isinstance(messages, list)
        if sum(1 for m in messages if m["role"] == "assistant") == 0:
            return "```repl\nx = len(context)\nprint(x)\n```"
        stalled.write_text("yes")
        time.sleep(20)  # the CLI is signalled meanwhile
        return "```repl\nFINAL('late')\n```"

    with ScriptedServer(reply) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recursa", "run", "q", "-c", "-", "--model", "openai/s",
             "--base-url", server.url, "--sandbox", "subprocess", "--no-progress",
             "--trace", str(trace)],
            env={**clean_env, "TMPDIR": str(tmp)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write("a context from standard input")
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush it
        deadline = time.monotonic() + 60
        while not stalled.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert stalled.exists(), proc.communicate(timeout=10)
        assert leftovers(tmp), "the sandbox and the context file exist while it runs"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert out == ""
    hint, error = err.splitlines()
    assert error == f"recursa: error: interrupted{f' ({name})' if name else ''}"
    # the context came from a pipe: the hint says to pipe it into the printed command again
    assert hint.startswith("recursa: continue it by piping the same input again: ... | ")
    assert "| recursa run q -c - " in hint
    assert hint.endswith(f"--resume {trace}")
    assert leftovers(tmp) == []
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert events[-1]["type"] == "run_end"
    assert events[-1]["stopped"] == "error"


def test_sigterm_ends_a_chat_session_and_cleans_up(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")

    def reply(body: dict[str, object]) -> str:
        return "```repl\nkept = 1\nFINAL('first answer')\n```"

    with ScriptedServer(reply) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recursa", "chat", "-c", str(ctx), "--model", "openai/s",
             "--base-url", server.url, "--sandbox", "subprocess"],
            env={**clean_env, "TMPDIR": str(tmp)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("the first question\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "first answer\n"
        assert leftovers(tmp), "the session's sandbox is kept between questions"
        proc.send_signal(signal.SIGTERM)  # while it waits for the next question
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert err.splitlines()[-1:] == ["recursa: error: interrupted (SIGTERM)"]
    assert leftovers(tmp) == []
