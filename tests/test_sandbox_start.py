"""The sandbox starts while the first root turn is asked: the turn needs no REPL.

The sandbox here is the real in-process one with a start that takes a while (or
fails), so the order of events can be checked without timing anything.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from recursa import RLM
from recursa.errors import ModelError, SandboxError
from recursa.models.base import Message
from recursa.models.scripted import ScriptedModel
from recursa.repl import SandboxConfig
from recursa.repl.inprocess import InProcessSandbox
from recursa.rlm import NO_SANDBOX
from recursa.testing import is_root_turn, router
from recursa.trace import read_events
from tests.repl.sandboxes import child_pids

EVENTS: list[str] = []
START_SECONDS = 0.3


class SlowStart(InProcessSandbox):
    """The in-process sandbox, with a start that takes START_SECONDS."""

    fails = False

    async def start(self, config: SandboxConfig) -> None:
        EVENTS.append("start begins")
        await asyncio.sleep(START_SECONDS)
        if self.fails:
            EVENTS.append("start fails")
            raise SandboxError("no worker could be started here")
        await super().start(config)
        EVENTS.append("started")

    async def close(self) -> None:
        EVENTS.append("closed")
        await super().close()


class FailingStart(SlowStart):
    fails = True


@pytest.fixture(autouse=True)
def _sandboxes() -> None:
    EVENTS.clear()


def noting_turns(replies: list[str]) -> ScriptedModel:
    route = router(replies)

    def reply(messages: list[dict[str, str]]) -> str:
        if is_root_turn(messages):
            EVENTS.append("turn")
        return route(messages)  # type: ignore[arg-type]

    return ScriptedModel(reply)  # type: ignore[arg-type]


def test_first_turn_is_asked_while_the_sandbox_starts() -> None:
    model = noting_turns(["```repl\nx = 6 * 7\n```", "```repl\nFINAL_VAR('x')\n```"])
    result = RLM(model, sandbox=SlowStart).completion("q", "some context")
    assert result.answer == "42"
    assert EVENTS == ["start begins", "turn", "started", "turn", "closed"]


def test_isolation_is_reported_on_the_result_and_the_trace(tmp_path: Path) -> None:
    model = noting_turns(["```repl\nFINAL(1)\n```"])
    result = RLM(model, sandbox=SlowStart, trace=tmp_path / "t.jsonl").completion("q", "text")
    assert result.isolation == InProcessSandbox.isolation
    (end,) = [e for e in read_events(tmp_path / "t.jsonl")[0] if e["type"] == "run_end"]
    assert end["isolation"] == result.isolation


def test_an_answer_without_code_never_waits_for_the_sandbox(tmp_path: Path) -> None:
    model = noting_turns(["No code needed.\nFINAL(42)"])
    result = RLM(model, sandbox=SlowStart, trace=tmp_path / "t.jsonl").completion("q", "text")
    assert (result.answer, result.isolation) == ("42", NO_SANDBOX)
    assert EVENTS == ["start begins", "turn"]  # the start was cancelled, not waited for
    (end,) = [e for e in read_events(tmp_path / "t.jsonl")[0] if e["type"] == "run_end"]
    assert end["isolation"] == NO_SANDBOX


def test_a_failed_start_cancels_the_first_turn_and_is_charged_its_prompt(
    tmp_path: Path,
) -> None:
    model = ScriptedModel(["```repl\nFINAL(1)\n```"], latency=60)
    rlm = RLM(model, sandbox=FailingStart, trace=tmp_path / "t.jsonl")
    with pytest.raises(SandboxError, match="no worker could be started"):
        rlm.completion("q", "some context")
    assert EVENTS == ["start begins", "start fails"]
    assert model.calls == []  # cancelled in flight, not answered
    (call,) = [e for e in read_events(tmp_path / "t.jsonl")[0] if e["type"] == "model_call"]
    assert call["error"] == "cancelled"
    assert call["usage"]["input_tokens"] > 0


def test_a_failed_first_turn_cancels_the_start_behind_it() -> None:
    model = ScriptedModel([ModelError("the provider is down")])
    with pytest.raises(ModelError, match="the provider is down"):
        RLM(model, sandbox=SlowStart).completion("q", "some context")
    assert EVENTS == ["start begins"]  # cancelled mid-start: never started, nothing to close


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.4])
def test_a_real_worker_is_never_left_behind_when_the_first_turn_fails(delay: float) -> None:
    """The subprocess sandbox cancelled at some point of its start (or just after)."""

    async def fail_later(messages: list[Message]) -> str:
        await asyncio.sleep(delay)
        raise ModelError("the provider is down")

    before = child_pids()
    with pytest.raises(ModelError, match="the provider is down"):
        RLM(ScriptedModel(fail_later), sandbox="subprocess").completion("q", "some context")
    assert child_pids() - before == set()
