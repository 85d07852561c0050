"""``recursa run --replay`` runs with the settings the trace recorded (failed-cell limit,
cell timeout, output limit, sampling, ...): a value from a ``RECURSA_*`` variable or the
config file does not replace them, a flag on the command line does. A real run is
recorded against a local server, then replayed by the real CLI offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recursa import RLM, Result
from recursa.sampling import Sampling
from recursa.testing import Received, ScriptedServer, is_root_turn
from tests.helpers import run_cli

QUERY = "divide"
#: Every root turn runs a cell that fails: only the failed-cell limit ends the run.
FAILING = "```repl\nprint(1 / 0)\n```"


def reply(request: Received) -> str:
    return FAILING if is_root_turn(request["messages"]) else "sub"


def record(tmp_path: Path, **options: Any) -> tuple[Path, Path, Result]:
    context = tmp_path / "context.txt"
    context.write_text("numbers to divide " * 40, encoding="utf-8")
    trace = tmp_path / "recorded.jsonl"
    with ScriptedServer(reply) as server:
        rlm = RLM("openai/big", "openai/small", base_url=server.url, sandbox="inprocess",
                  trace=trace, **options)  # fmt: skip
        result = rlm.completion(QUERY, context)
    return trace, context, result


def replay(trace: Path, context: Path, env: dict[str, str], out: Path, *flags: str) -> Any:
    args = ["run", "-c", str(context), "--replay", str(trace), "--sandbox", "inprocess",
            "--trace", str(out), "--json", *flags]  # fmt: skip
    return run_cli(args, env)


def run_start(trace: Path) -> dict[str, Any]:
    first = json.loads(trace.read_text(encoding="utf-8").splitlines()[0])
    assert first["type"] == "run_start"
    return dict(first)


def test_recorded_settings_win_over_the_environment_and_the_config_file(
    tmp_path: Path, env: dict[str, str]
) -> None:
    trace, context, recorded = record(
        tmp_path, max_errors=2, cell_timeout=7.0, max_output_chars=3_000,
        model_settings=Sampling(temperature=0.3),
    )  # fmt: skip
    assert recorded.stopped == "errors" and recorded.iterations == 2
    (tmp_path / "config.toml").write_text("max_errors = 6\ncell_timeout = 50\n", encoding="utf-8")
    from_env = {**env, "RECURSA_MAX_ERRORS": "5", "RECURSA_TEMPERATURE": "0.9"}
    out = tmp_path / "replayed.jsonl"
    proc = replay(trace, context, from_env, out)
    assert proc.returncode == 3, proc.stderr  # stopped as recorded, not diverged (exit 1)
    result = json.loads(proc.stdout)
    assert (result["stopped"], result["iterations"]) == ("errors", 2)
    start, original = run_start(out), run_start(trace)
    for key in ("max_errors", "cell_timeout", "max_output_chars", "model_settings"):
        assert start[key] == original[key], key
    assert start["model_settings"]["temperature"] == 0.3


def test_a_flag_replaces_a_recorded_setting(tmp_path: Path, env: dict[str, str]) -> None:
    trace, context, _ = record(tmp_path, max_errors=2, cell_timeout=7.0)
    out = tmp_path / "replayed.jsonl"
    proc = replay(trace, context, env, out, "--cell-timeout", "9")
    assert proc.returncode == 3, proc.stderr
    start = run_start(out)
    assert start["cell_timeout"] == 9.0 and start["max_errors"] == 2
