"""``recursa chat`` as a real process against a real local HTTP server: /commands are
answered locally, empty lines are ignored, Ctrl-C cancels only the question in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recursa.testing import Received, ScriptedServer, is_root_turn

SLOW = threading.Event()  # set: the slow question is being answered


def latest_query(messages: list[dict[str, str]]) -> str:
    """The question this turn answers: a session's conversation holds all of them."""
    asked = [m["content"] for m in messages if m["role"] == "user" and "Query:" in m["content"]]
    return asked[-1].split("Query:", 1)[1] if asked else ""


def reply(request: Received) -> str:
    messages = request["messages"]
    if not is_root_turn(messages):
        return "sub"
    query = latest_query(messages)
    if "slow" in query:
        SLOW.set()
        time.sleep(20)  # until the test interrupts the client
        return "```repl\nFINAL('too late')\n```"
    if "remember" in query:
        return "```repl\nkept = 41 + 1\nFINAL(kept)\n```"
    return "```repl\nFINAL(f'kept is {kept}')\n```"


def _default_sigint() -> None:
    # A shell's background job starts with SIGINT ignored, and an ignored signal stays
    # ignored across exec; a terminal's user gets the default, which these tests need.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_chat(context: Path, server: ScriptedServer, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "recursa", "chat", "-c", str(context), "--model", "openai/s",
         "--base-url", server.url, "--sandbox", "inprocess"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, preexec_fn=_default_sigint,
    )  # fmt: skip


@pytest.fixture
def context(tmp_path: Path) -> Path:
    path = tmp_path / "c.txt"
    path.write_text("alpha beta gamma")
    return path


def test_commands_are_local_and_empty_lines_do_not_end_the_session(
    context: Path, clean_env: dict[str, str]
) -> None:
    with ScriptedServer(reply) as server:
        proc = start_chat(context, server, clean_env)
        out, err = proc.communicate("/help\n\nremember it\n\n/vars\nwhat is kept?\n/cost\n", 60)
        asked = [latest_query(r["messages"]) for r in server.requests]
    assert proc.returncode == 0, err
    assert not any(q.startswith("/") for q in asked)  # no command reached the model
    lines = out.splitlines()
    assert "commands:" in lines[0]
    assert "42" in lines and "kept is 42" in lines  # the variable survived the empty line
    assert any(line.startswith("kept: int") for line in lines)  # /vars
    assert any("2 answers" in line for line in lines)  # /cost
    assert "recursa: session: 2 answers" in err


def test_ctrl_c_cancels_the_question_and_the_session_goes_on(
    context: Path, clean_env: dict[str, str]
) -> None:
    SLOW.clear()
    with ScriptedServer(reply) as server:
        proc = start_chat(context, server, clean_env)
        assert proc.stdin is not None
        proc.stdin.write("remember it\nslow question\n")
        proc.stdin.flush()
        assert SLOW.wait(30)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate("what is kept?\n/exit\nnever asked\n", 60)
        asked = [latest_query(r["messages"]) for r in server.requests]
    assert proc.returncode == 0, err
    assert "cancelled" in err
    assert out.splitlines() == ["42", "kept is 42"]
    assert "never asked" not in asked  # /exit ended it
    # the follow-up continues the conversation without the cancelled half-turn
    last = server.requests[-1]["messages"]
    assert [m["role"] for m in last].count("user") == [m["role"] for m in last].count(
        "assistant"
    ) + 1


def test_sigterm_still_ends_the_session(context: Path, clean_env: dict[str, str]) -> None:
    SLOW.clear()
    with ScriptedServer(reply) as server:
        proc = start_chat(context, server, clean_env)
        assert proc.stdin is not None
        proc.stdin.write("slow question\n")
        proc.stdin.flush()
        assert SLOW.wait(30)
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
