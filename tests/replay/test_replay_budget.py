"""``recursa run --replay`` runs under the budget the trace recorded: a budget from the
config file or a ``RECURSA_BUDGET_*`` variable does not replace it (the replay must be
the recorded run), while a ``--budget-*`` flag does (the user asking for another).
A real run is recorded against a local server, then replayed by the real CLI offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recursa import RLM, Budget, Result
from recursa.testing import Received, ScriptedServer, is_root_turn
from tests.helpers import run_cli

QUERY = "keep asking"
#: Every root turn asks a sub-model and never answers: only a budget ends the run.
ASK_AGAIN = "```repl\nprint(llm_query('one more'))\n```"
RECORDED_CALLS = 5


def reply(request: Received) -> str:
    return ASK_AGAIN if is_root_turn(request["messages"]) else "more"


def record(tmp_path: Path, budget: Budget | None, **options: Any) -> tuple[Path, Path, Result]:
    """A real run against a local server, traced: (trace, context file, result)."""
    context = tmp_path / "context.txt"
    context.write_text("some words to look at " * 50, encoding="utf-8")
    trace = tmp_path / "recorded.jsonl"
    with ScriptedServer(reply) as server:
        rlm = RLM(
            "openai/big", "openai/small", base_url=server.url, sandbox="inprocess",
            trace=trace, budget=budget, **options,
        )  # fmt: skip
        result = rlm.completion(QUERY, context)
    return trace, context, result


def replay(trace: Path, context: Path, env: dict[str, str], *flags: str) -> Any:
    args = ["run", "-c", str(context), "--replay", str(trace), "--sandbox", "inprocess",
            "--no-trace", "--json", *flags]  # fmt: skip
    return run_cli(args, env)


def test_the_recorded_budget_wins_over_the_environment_and_the_config_file(
    tmp_path: Path, env: dict[str, str]
) -> None:
    trace, context, recorded = record(tmp_path, Budget(calls=RECORDED_CALLS))
    assert recorded.stopped == "budget" and recorded.usage.calls == RECORDED_CALLS
    (tmp_path / "config.toml").write_text("budget_calls = 50\n", encoding="utf-8")
    from_env = {**env, "RECURSA_BUDGET_USD": "5", "RECURSA_BUDGET_CALLS": "2"}
    for proc in (replay(trace, context, from_env), replay(trace, context, env)):
        assert proc.returncode == 3, proc.stderr  # stopped without an answer, as recorded
        out = json.loads(proc.stdout)
        assert out["stopped"] == recorded.stopped == "budget"
        assert out["usage"] == json.loads(json.dumps(recorded.usage.to_dict()))
        assert out["iterations"] == recorded.iterations


def test_a_run_recorded_without_a_budget_replays_without_one(
    tmp_path: Path, env: dict[str, str]
) -> None:
    trace, context, recorded = record(tmp_path, None, max_iterations=3)
    assert recorded.stopped == "iterations" and recorded.usage.calls > 2
    proc = replay(trace, context, {**env, "RECURSA_BUDGET_CALLS": "2"})
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["stopped"] == "iterations"
    assert out["usage"] == json.loads(json.dumps(recorded.usage.to_dict()))


def test_a_budget_flag_replaces_the_recorded_limit(tmp_path: Path, env: dict[str, str]) -> None:
    trace, context, _ = record(tmp_path, Budget(calls=RECORDED_CALLS))
    proc = replay(trace, context, env, "--budget-calls", "2")
    # the user asked for a smaller budget: the run stops early, so it is not the recording
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert "diverged" in out["error"] and "never asked for" in out["error"]


def test_a_budget_flag_leaves_the_other_recorded_limits(
    tmp_path: Path, env: dict[str, str]
) -> None:
    trace, context, recorded = record(tmp_path, Budget(calls=RECORDED_CALLS))
    proc = replay(trace, context, env, "--budget-seconds", "3600")  # never reached
    assert proc.returncode == 3, proc.stderr  # the recorded call limit still stops it
    out = json.loads(proc.stdout)
    assert out["stopped"] == "budget"
    assert out["usage"] == json.loads(json.dumps(recorded.usage.to_dict()))
