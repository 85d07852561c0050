"""``recursa run``'s exit status and ``--json`` object on every path, through the real CLI
against a real local HTTP server: 0 only when the run answered, 3 when it stopped
without a valid answer, 1 failed, 2 bad usage; ``--json`` prints exactly one object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recursa.testing import HTTPFailure, Received, ScriptedServer
from tests.helpers import run_cli

KEYS = {"answer", "usage", "cost_usd", "iterations", "depth_reached", "stopped", "trace",
        "isolation", "duration_s", "run_id", "error", "citations", "skipped",
        "exit_code"}  # fmt: skip


def run_json(args: list[str], env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """Run the CLI with ``--json``; stdout must hold exactly one JSON object."""
    proc = run_cli([*args, "--json"], env)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    obj = json.loads(lines[0])
    assert set(obj) == KEYS
    assert obj["exit_code"] == proc.returncode
    return proc.returncode, obj, proc.stderr


@pytest.fixture
def context_file(tmp_path: Path) -> Path:
    path = tmp_path / "c.txt"
    path.write_text("alpha beta gamma")
    return path


def cli_args(server: ScriptedServer, context_file: Path, *extra: str) -> list[str]:
    return ["run", "q", "-c", str(context_file), "--model", "openai/s",
            "--base-url", server.url, "--sandbox", "inprocess", *extra]  # fmt: skip


@pytest.mark.parametrize("sandbox", ["inprocess", "subprocess"])
def test_an_answer_exits_0(sandbox: str, context_file: Path, clean_env: dict[str, str]) -> None:
    with ScriptedServer(lambda r: "```repl\nFINAL(len(context.split()))\n```") as server:
        args = cli_args(server, context_file, "--sandbox", sandbox)
        code, obj, _ = run_json(args, clean_env)
        plain = run_cli(args, clean_env)
    assert (code, obj["answer"], obj["stopped"], obj["error"]) == (0, "3", None, None)
    assert (plain.returncode, plain.stdout.strip()) == (0, "3")


def test_a_budget_stop_exits_3_with_the_partial_answer(
    context_file: Path, clean_env: dict[str, str]
) -> None:
    reply = "```repl\nanswer['content'] = 'partial'\nprint(1)\n```"
    with ScriptedServer(lambda r: reply) as server:
        code, obj, _ = run_json(cli_args(server, context_file, "--budget-calls", "2"), clean_env)
        plain = run_cli(cli_args(server, context_file, "--budget-calls", "2"), clean_env)
    assert (code, obj["stopped"], obj["answer"]) == (3, "budget", "partial")
    assert plain.returncode == 3
    assert plain.stdout.strip() == "partial"
    assert "stopped without an answer (budget)" in plain.stderr


def test_iterations_without_an_answer_exit_3(context_file: Path, clean_env: dict[str, str]) -> None:
    with ScriptedServer(lambda r: "```repl\nprint('still looking')\n```") as server:
        code, obj, _ = run_json(cli_args(server, context_file, "--max-iterations", "2"), clean_env)
    assert (code, obj["stopped"]) == (3, "iterations")
    assert "```" not in (obj["answer"] or "")  # a code block is never an answer


def test_an_answer_invalid_for_the_schema_exits_3(
    context_file: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "required": ["n"],
                                  "properties": {"n": {"type": "integer"}}}))  # fmt: skip
    with ScriptedServer(lambda r: 'FINAL({"n": "not a number"})') as server:
        code, obj, _ = run_json(cli_args(server, context_file, "--schema", str(schema)), clean_env)
    assert code == 3
    assert obj["stopped"] is not None and "invalid" in obj["error"]


def test_a_failed_run_prints_one_object_and_exits_1(
    context_file: Path, clean_env: dict[str, str]
) -> None:
    def refuse(request: Received) -> str:
        raise HTTPFailure(401, "bad key")

    with ScriptedServer(refuse) as server:
        code, obj, stderr = run_json(cli_args(server, context_file), clean_env)
    assert code == 1
    assert obj["answer"] is None and obj["stopped"] == "error"
    assert "authentication failed" in obj["error"]
    assert "authentication failed" in stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", "q", "-c", "/no/such/file.txt", "--model", "openai/s"],
        ["run", "q", "-c", "{ctx}", "--model", "openai/s", "--base-url", "localhost:8000/v1"],
        ["run", "   ", "-c", "{ctx}", "--model", "openai/s"],
    ],
    ids=["missing-file", "url-without-scheme", "empty-query"],
)
def test_usage_errors_exit_2_with_one_object(
    args: list[str], context_file: Path, clean_env: dict[str, str]
) -> None:
    args = [a.replace("{ctx}", str(context_file)) for a in args]
    code, obj, stderr = run_json(args, clean_env)
    assert code == 2 and obj["answer"] is None and obj["error"]
    assert stderr.startswith("recursa: error: ")
    plain = run_cli(args, clean_env)
    assert (plain.returncode, plain.stdout) == (2, "")
