"""The command printed after an interrupted run: the same arguments, a fresh trace,
``--resume`` the stopped one."""

from __future__ import annotations

import shlex

from recursa.resume_hint import TraceWatch, resume_command, resume_hint, run_arguments
from recursa.trace import Tracer


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
