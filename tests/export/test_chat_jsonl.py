"""``recursa trace export --format chat-jsonl``: real runs against the local scripted
server write full-prompt traces, the CLI (a real process) exports them, and every
example read back from the file holds exactly the messages the server received for
that request, ending with the reply it gave."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM
from recursa.testing import Received, Reply, ScriptedServer, is_root_turn
from tests.helpers import run_cli

ROOT_TURNS = [
    "```repl\nnotes = llm_query('summarise: ' + context[:20])\nprint(notes)\n```",
    "```repl\nFINAL(llm_query('weigh apples', tools=['weigh']) + ' / ' + notes)\n```",
]


def weigh(item: str) -> float:
    """The weight of ``item`` in kg."""
    return {"apples": 1.5}[item]


def reply(request: Received) -> str | Reply:
    messages = request["messages"]
    if is_root_turn(messages):
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return ROOT_TURNS[min(turn, len(ROOT_TURNS) - 1)]
    if "tools" not in request:
        return "a short summary"
    results = [m for m in messages if m["role"] == "tool"]
    if results:
        return Reply(f"weighed {results[0]['content']}")
    return Reply("", tool_calls=({"name": "weigh", "arguments": {"item": "apples"}},))


def traced_run(path: Path, *, prompts: str = "full", **options: Any) -> ScriptedServer:
    with ScriptedServer(reply) as server:
        rlm = RLM(
            "openai/scripted", base_url=server.url, sandbox="inprocess", trace=path,
            trace_prompts=prompts, sub_call_tools={"weigh": weigh}, **options,
        )  # fmt: skip
        rlm.completion("what weighs what?", context="the context text " * 50)
    return server


def export(*args: str | Path) -> tuple[int, str, str]:
    """``recursa trace export ARGS`` as a real process."""
    proc = run_cli(["trace", "export", *map(str, args)], dict(os.environ))
    return proc.returncode, proc.stdout, proc.stderr


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_example_is_a_request_as_the_server_received_it(tmp_path: Path) -> None:
    trace, out = tmp_path / "run.jsonl", tmp_path / "train.jsonl"
    server = traced_run(trace)
    code, stdout, stderr = export(trace, "--format", "chat-jsonl", "-o", out)
    assert code == 0, stderr
    examples = read_jsonl(out)
    assert stdout.startswith(f"wrote {len(examples)} examples from 1 runs")
    # every request the server got (2 root turns, 1 plain sub-call, 2 tool-loop steps)
    received = [r["messages"] for r in server.requests]
    assert len(examples) == len(received) == 5
    exported = sorted(json.dumps(e["messages"][:-1], sort_keys=True) for e in examples)
    assert exported == sorted(json.dumps(m, sort_keys=True) for m in received)
    first = examples[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][-1]["content"] == ROOT_TURNS[0]
    meta = first["metadata"]
    assert meta["purpose"] == "turn" and meta["depth"] == 0 and meta["node_id"] == "n0"
    assert meta["model"] == "openai/scripted" and meta["stopped"] is None
    assert meta["answer"] == 'weighed {"result": 1.5} / a short summary'
    tool_steps = [e for e in examples if any(m["role"] == "tool" for m in e["messages"])]
    (last_step,) = tool_steps
    assert last_step["messages"][-1] == {"role": "assistant", "content": 'weighed {"result": 1.5}'}
    assert last_step["messages"][1]["tool_calls"][0]["function"]["name"] == "weigh"
    assert last_step["metadata"]["purpose"] == "sub" and last_step["metadata"]["depth"] == 1


def test_per_root_turn_keeps_only_the_turns_of_rlm_nodes(tmp_path: Path) -> None:
    trace, out = tmp_path / "run.jsonl", tmp_path / "turns.jsonl"
    traced_run(trace)
    code, _, stderr = export(trace, "--format", "chat-jsonl", "--per", "root-turn", "-o", out)
    assert code == 0, stderr
    examples = read_jsonl(out)
    assert [e["metadata"]["purpose"] for e in examples] == ["turn", "turn"]
    # the second turn's example holds the whole conversation so far, the first within it
    assert examples[1]["messages"][:3] == examples[0]["messages"]


def test_a_trace_with_cut_prompts_is_refused_with_one_line(tmp_path: Path) -> None:
    trace, out = tmp_path / "small.jsonl", tmp_path / "x.jsonl"
    traced_run(trace, prompts="cut")
    code, _, stderr = export(trace, "--format", "chat-jsonl", "-o", out)
    assert code == 2
    assert stderr.strip().count("\n") == 0
    assert "rerun with --trace-prompts full" in stderr


def test_only_answered_leaves_out_a_run_that_stopped(tmp_path: Path) -> None:
    answered, stopped, out = tmp_path / "a.jsonl", tmp_path / "s.jsonl", tmp_path / "o.jsonl"
    traced_run(answered)
    traced_run(stopped, max_iterations=1)  # stops before its FINAL turn
    code, stdout, stderr = export(
        answered, stopped, "--format", "chat-jsonl", "--only-answered", "-o", out
    )
    assert code == 0, stderr
    assert {e["metadata"]["run_id"] for e in read_jsonl(out)} == {
        json.loads(answered.read_text().splitlines()[0])["run_id"]
    }
    assert "(1 runs left out)" in stdout


def test_min_score_exports_only_bench_runs_at_or_above_it(tmp_path: Path) -> None:
    bench = tmp_path / "bench-out"
    (bench / "traces").mkdir(parents=True)
    rows = []
    for i, score in enumerate([1.0, 0.0, 0.5]):
        trace = bench / "traces" / f"item{i}.jsonl"
        traced_run(trace)
        rows.append({"item": f"item{i}", "method": "rlm", "score": score, "trace": str(trace)})
    rows.append({"item": "item3", "method": "rlm", "score": 1.0, "trace": None})
    (bench / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sft.jsonl"
    code, stdout, stderr = export(bench, "--format", "chat-jsonl", "--min-score", "0.5", "-o", out)
    assert code == 0, stderr
    scores = {e["metadata"]["score"] for e in read_jsonl(out)}
    assert scores == {1.0, 0.5}
    assert "from 2 runs" in stdout and "(2 runs left out)" in stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--format", "chat-jsonl", "--otlp", "http://127.0.0.1:9"], "exactly one of"),
        ([], "exactly one of"),
        (["--format", "chat-jsonl"], "needs -o OUT.jsonl"),
    ],
)
def test_exactly_one_format_is_required(tmp_path: Path, args: list[str], error: str) -> None:
    trace = tmp_path / "run.jsonl"
    trace.write_text("")
    code, _, stderr = export(trace, *args)
    assert code == 2
    assert stderr.startswith("recursa: error:") and error in stderr
