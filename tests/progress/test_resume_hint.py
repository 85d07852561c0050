"""The command printed after an interrupted run: the same arguments, a fresh trace,
``--resume`` the stopped one; for a context read from a pipe, the input piped in again."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from recursa.resume_hint import TraceWatch, resume_command, resume_hint, run_arguments
from recursa.testing import is_root_turn
from recursa.trace import Tracer
from tests.helpers import run_cli
from tests.progress.test_cli import joining_reply

#: The context, as a pipe gives it.
PIPED = "some context from a pipe\n"


def test_the_command_keeps_the_arguments_and_never_overwrites_the_stopped_trace() -> None:
    args = ["count it", "-c", "my notes.txt", "--trace", "t.jsonl", "--concurrency", "2"]
    command = shlex.split(resume_command(args, "t.jsonl"))
    assert command == [
        "recursa", "run", "count it", "-c", "my notes.txt", "--concurrency", "2",
        "--trace", "t.resumed.jsonl", "--resume", "t.jsonl",
    ]  # fmt: skip


def test_earlier_resume_replay_and_trace_forms_are_replaced() -> None:
    args = ["--resume", "old.jsonl", "--trace", "-c", "ctx", "--replay=x.jsonl", "--trace=a"]
    command = shlex.split(resume_command(args, "runs/r1.jsonl"))
    assert command[2:] == [
        "-c",
        "ctx",
        "--trace",
        "runs/r1.resumed.jsonl",
        "--resume",
        "runs/r1.jsonl",
    ]


def test_the_hint_names_the_trace_the_run_reported() -> None:
    watch = TraceWatch()
    argv = ["/usr/bin/recursa", "run", "q", "-c", "f"]
    assert resume_hint(watch, argv) is None  # stopped before the run began: nothing to resume
    watch({"v": 1, "type": "run_start", "node_id": "n0"})
    assert resume_hint(watch, argv) == (
        "recursa: this run kept no trace, so it cannot be resumed (run it with --trace)"
    )
    Tracer("r", [watch]).notify("trace_file", "n0", path="recursa-runs/x.jsonl")
    hint = resume_hint(watch, argv)
    assert hint is not None
    assert hint.endswith(
        "recursa run q -c f --trace recursa-runs/x.resumed.jsonl --resume recursa-runs/x.jsonl"
    )
    assert (
        resume_hint(watch, ["pytest", "-q"])
        == "recursa: resume it with --resume recursa-runs/x.jsonl"
    )


def test_run_arguments_are_those_after_the_subcommand() -> None:
    assert run_arguments(["recursa", "run", "run", "-c", "f"]) == ["run", "-c", "f"]
    assert run_arguments(["python", "-m", "pytest"]) is None


def test_a_context_from_standard_input_must_be_piped_in_again() -> None:
    watch = TraceWatch()
    watch({"v": 1, "type": "run_start", "node_id": "n0"})
    Tracer("r", [watch]).notify("trace_file", "n0", path="runs/x.jsonl")
    hint = resume_hint(watch, ["recursa", "run", "q", "--json"], piped=True)
    assert hint == (
        "recursa: continue it by piping the same input again: ... | "
        "recursa run q --json --trace runs/x.resumed.jsonl --resume runs/x.jsonl"
    )


def test_ctrl_c_on_a_piped_run_says_to_pipe_the_input_into_the_resume_command(
    serve: Any, clean_env: dict[str, str], tmp_path: Path
) -> None:
    answer = threading.Event()  # sub-calls hang until set
    server = serve(joining_reply(answer))
    trace = tmp_path / "t.jsonl"
    args = ["run", "join them", "--model", "openai/s", "--base-url", server.url,
            "--trace", str(trace)]  # fmt: skip
    read_end, write_end = os.pipe()  # a real pipe, as `producer | recursa run` gives
    os.write(write_end, PIPED.encode())
    os.close(write_end)
    proc = subprocess.Popen(
        [sys.executable, "-m", "recursa", *args], stdin=read_end,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env,
    )  # fmt: skip
    os.close(read_end)
    try:
        deadline = time.monotonic() + 60
        while sum(not is_root_turn(r["messages"]) for r in server.requests) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        answer.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    prefix = "continue it by piping the same input again: ... | "
    hint = next(line for line in stderr.splitlines() if prefix in line)
    command = shlex.split(hint.split(prefix, 1)[1])
    assert command[:2] == ["recursa", "run"]
    assert command[-2:] == ["--resume", str(trace)]
    resumed = run_cli(command[1:], clean_env, stdin=PIPED)  # as the line says: piped again
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "ALPHA BETA"
