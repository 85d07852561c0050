"""``recursa run`` as a real process against a real local server: the plain progress
lines off a terminal, and the ``--resume`` command printed on Ctrl-C."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recursa.testing import is_root_turn, turn_index
from tests.helpers import run_cli

BATCH = "```repl\nanswers = llm_batch([f'item {i}' for i in range(6)])\nprint(len(answers))\n```"
JOIN = "```repl\nparts = llm_batch(['alpha', 'beta'])\nprint(parts)\n```"
#: A sub-call's latency: the first heartbeat (5 s) falls in the batch's second round.
SUB_LATENCY = 3.5


def joining_reply(answer: threading.Event) -> Callable[[dict[str, Any]], str]:
    """Root turns batch two sub-calls, then FINAL their answers joined; each sub-call
    hangs until ``answer`` is set (a "slow" model a test can interrupt)."""

    def reply(body: dict[str, Any]) -> str:
        messages = body["messages"]
        if is_root_turn(messages):
            return [JOIN, "```repl\nFINAL(' '.join(parts))\n```"][min(turn_index(messages), 1)]
        answer.wait(60)
        return str(messages[-1]["content"]).upper()

    return reply


def model_args(server: Any, ctx: Path) -> list[str]:
    return ["-c", str(ctx), "--model", "openai/s", "--base-url", server.url]


@pytest.mark.slow
def test_plain_progress_counts_running_and_queued_within_the_concurrency(
    serve: Any, clean_env: dict[str, str], tmp_path: Path
) -> None:
    def reply(body: dict[str, Any]) -> str:
        if is_root_turn(body["messages"]):
            return [BATCH, "```repl\nFINAL('done')\n```"][min(turn_index(body["messages"]), 1)]
        time.sleep(SUB_LATENCY)
        return "ok"

    server = serve(reply)
    ctx = tmp_path / "c.txt"
    ctx.write_text("some context")
    done = run_cli(["run", "q", *model_args(server, ctx), "--concurrency", "2"], clean_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    counts = [(int(r), int(q)) for r, q in re.findall(r"(\d+) running, (\d+) queued", done.stderr)]
    assert counts and max(r for r, _ in counts) <= 2 and server.max_in_flight == 2
    beats = [line for line in done.stderr.splitlines() if line.startswith("recursa: working")]
    assert beats, done.stderr  # the 10 s batch sent no event for 3.5 s at a time
    first = re.search(r"(\d+) running, (\d+) queued .*llm_batch (\d)/6", beats[0])
    assert first is not None, beats[0]
    running, queued, finished = map(int, first.groups())
    assert running == 2 and queued == 6 - finished - running > 0


def test_ctrl_c_prints_the_resume_command_that_finishes_the_run(
    serve: Any, clean_env: dict[str, str], tmp_path: Path
) -> None:
    answer = threading.Event()  # sub-calls hang until set: the model is "slow"
    server = serve(joining_reply(answer))
    ctx = tmp_path / "c.txt"
    ctx.write_text("some context")
    trace = tmp_path / "t.jsonl"
    args = ["run", "join them", *model_args(server, ctx), "--trace", str(trace)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "recursa", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while sum(not is_root_turn(r["messages"]) for r in server.requests) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        answer.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    hint = next(line for line in stderr.splitlines() if "continue it with: " in line)
    command = shlex.split(hint.split("continue it with: ", 1)[1])
    resumed_trace = tmp_path / "t.resumed.jsonl"
    assert command[:2] == ["recursa", "run"]
    assert command[-4:] == ["--trace", str(resumed_trace), "--resume", str(trace)]
    asked = len(server.requests)
    resumed = run_cli(command[1:], clean_env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "ALPHA BETA"
    assert resumed_trace.exists() and trace.exists()
    live = server.requests[asked:]
    # the first turn came from the stopped run's trace; its two sub-calls and the last turn
    # (never answered before Ctrl-C) were asked live
    assert [is_root_turn(r["messages"]) for r in live].count(True) == 1 and len(live) == 3
