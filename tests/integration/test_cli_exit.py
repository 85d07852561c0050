"""The ``recursa`` command exits without tearing the interpreter down: what it prints
still arrives whole, exit handlers still run, exit statuses are kept."""

from __future__ import annotations

import json
from pathlib import Path

from recursa.testing import HTTPFailure, ScriptedServer, http_router
from tests.helpers import run_cli

BIG = 2_000_000  # characters: far more than a pipe buffer holds


def test_a_large_json_result_arrives_whole_and_exit_handlers_run(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    marker = tmp_path / "atexit-ran"
    (tmp_path / "exit_tools.py").write_text(
        "import atexit, os, pathlib\n"
        "atexit.register(lambda: pathlib.Path(os.environ['MARKER']).write_text('ran'))\n"
        "TOOLS = {'nothing': lambda: None}\n"
    )
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    env = {**clean_env, "MARKER": str(marker), "PYTHONPATH": f"{tmp_path}:{Path.cwd()}"}
    turns = [f"```repl\nFINAL('x' * {BIG})\n```"]
    with ScriptedServer(http_router(turns)) as server:
        proc = run_cli(
            ["run", "q", "-c", str(ctx), "--model", "openai/s", "--base-url", server.url,
             "--sandbox", "inprocess", "--tools", "exit_tools:TOOLS", "--json"],
            env,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "x" * BIG
    assert marker.read_text() == "ran"


def test_exit_statuses_are_kept(tmp_path: Path, clean_env: dict[str, str]) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    assert run_cli(["--version"], clean_env).returncode == 0
    usage = run_cli(["run", "q", "-c", str(tmp_path / "missing.txt")], clean_env)
    assert (usage.returncode, usage.stderr.count("\n")) == (2, 1)
    assert run_cli(["no-such-command"], clean_env).returncode == 2

    def refuse(body: dict[str, object]) -> str:
        raise HTTPFailure(401, "bad key")

    with ScriptedServer(refuse) as server:
        failed = run_cli(
            ["run", "q", "-c", str(ctx), "--model", "openai/s",
             "--base-url", server.url, "--sandbox", "inprocess"],
            clean_env,
        )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    assert "authentication failed" in failed.stderr
