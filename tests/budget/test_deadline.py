"""``seconds`` is a deadline: calls in flight are cancelled at it, retries never run past
it, a cell running at it is interrupted, and the run ends with its best answer."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM, Budget
from recursa.models.scripted import ScriptedModel
from recursa.testing import HTTPFailure, ScriptedServer, http_router, is_root_turn, router
from tests.helpers import run_cli

SANDBOXES = ["inprocess", "subprocess"]


def test_a_hung_provider_ends_the_cli_run_at_the_deadline(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Measured before: still running past 45 s (a 300 s request timeout, retried)."""
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    with ScriptedServer(http_router(["```repl\nFINAL('x')\n```"]), latency=30) as server:
        t0 = time.monotonic()
        proc = run_cli(
            ["run", "q", "-c", str(ctx), "--model", "openai/s", "--base-url", server.url,
             "--sandbox", "inprocess", "--json", "--budget-seconds", "2"],
            clean_env,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    assert proc.returncode == 3, proc.stderr  # stopped without an answer
    out = json.loads(proc.stdout)
    assert out["stopped"] == "budget"
    assert elapsed < 6, elapsed  # 2 s of budget plus the interpreter's start


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_hung_sub_call_is_cancelled_and_the_best_answer_kept(sandbox: str) -> None:
    def reply(body: dict[str, Any]) -> str:
        if is_root_turn(body["messages"]):
            return "```repl\nanswer['content'] = 'best so far'\nprint(llm_query('slow'))\n```"
        time.sleep(20)
        return "too late"

    with ScriptedServer(reply) as server:
        # 4 s: the first request also imports the SDK, on a busy machine
        rlm = RLM("openai/s", base_url=server.url, sandbox=sandbox, budget=Budget(seconds=4))
        t0 = time.monotonic()
        result = rlm.completion("q", context="c")
        elapsed = time.monotonic() - t0
    assert (result.answer, result.stopped) == ("best so far", "budget")
    assert elapsed < 7, elapsed
    assert result.usage.calls == 2  # the cancelled call is charged for its prompt
    assert result.usage.input_tokens > 0


# the in-process REPL interrupts Python code only (between bytecodes), not a sleep in C
@pytest.mark.parametrize(
    ("sandbox", "stall"),
    [("inprocess", "while True:\n    pass"), ("subprocess", "import time\ntime.sleep(60)")],
)
def test_a_cell_running_at_the_deadline_is_interrupted(sandbox: str, stall: str) -> None:
    turns = [f"```repl\nanswer['content'] = 'kept'\n{stall}\n```"]
    rlm = RLM(ScriptedModel(router(turns)), sandbox=sandbox, budget=Budget(seconds=2))
    t0 = time.monotonic()
    result = rlm.completion("q", context="c")
    elapsed = time.monotonic() - t0
    assert (result.answer, result.stopped) == ("kept", "budget")
    assert elapsed < 5, elapsed


def test_retries_never_run_past_the_deadline() -> None:
    def failing(body: dict[str, Any]) -> str:
        raise HTTPFailure(503, "overloaded")

    with ScriptedServer(failing) as server:
        rlm = RLM("openai/s", base_url=server.url, sandbox="inprocess", budget=Budget(seconds=1.5))
        t0 = time.monotonic()
        result = rlm.completion("q", context="c")
        elapsed = time.monotonic() - t0
    assert result.stopped == "budget"
    assert elapsed < 3, elapsed


def test_a_model_looping_on_refused_calls_is_stopped_by_the_cell_deadline() -> None:
    turns = [
        "```repl\nanswer['content'] = 'looped'\nwhile True:\n    try:\n"
        "        llm_query('again')\n    except Exception:\n        pass\n```"
    ]
    model = ScriptedModel(router(turns), latency=0.01)
    rlm = RLM(model, sandbox="subprocess", budget=Budget(seconds=2))
    t0 = time.monotonic()
    result = rlm.completion("q", context="c")
    assert (result.answer, result.stopped) == ("looped", "budget")
    assert time.monotonic() - t0 < 5


def test_request_timeout_flag_reaches_the_settings(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    with ScriptedServer(http_router(["```repl\nFINAL('x')\n```"]), latency=5) as server:
        t0 = time.monotonic()
        proc = run_cli(
            ["run", "q", "-c", str(ctx), "--model", "openai/s", "--base-url", server.url,
             "--sandbox", "inprocess", "--request-timeout", "0.3", "--budget-seconds", "2.5"],
            clean_env,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    # each attempt times out after 0.3 s and is retried until the deadline
    assert proc.returncode == 3, proc.stderr  # the deadline stopped it
    assert elapsed < 6
    assert len(server.requests) >= 2
