"""A live sink with ``text_deltas`` is told every turn's text as ``model_delta`` notices
(streamed where the backend streams, whole where it does not), never a sub-call's,
and the trace file never holds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recursa import RLM, Result
from recursa.models.scripted import ScriptedModel
from recursa.testing import ScriptedServer, http_router, is_root_turn, router
from recursa.trace import Event

from .conftest import CONTEXT, cell

REPLIES = {
    "Query: outer": [
        cell("a = llm_query('first words')\nr = rlm_query('inner task', context='c')\nprint(a, r)"),
        "Both are in.\n" + cell("FINAL(r)"),
    ],
    "Query: inner": ["The child answers at once.\n" + cell("FINAL('leaf')")],
}


class Listener:
    """A live sink that keeps the notices it is told; ``text_deltas`` as asked."""

    live = True

    def __init__(self, *, text_deltas: bool = True) -> None:
        self.text_deltas = text_deltas
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def deltas(self) -> dict[str, list[Event]]:
        """The ``model_delta`` notices of each call."""
        out: dict[str, list[Event]] = {}
        for e in self.events:
            if e["type"] == "model_delta":
                out.setdefault(e["call_id"], []).append(e)
        return out


def traced(result: Result) -> list[dict[str, Any]]:
    assert result.trace is not None
    return [json.loads(line) for line in Path(result.trace).read_text().splitlines()]


def turns_and_subs(events: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    calls = [e for e in events if e["type"] == "model_call"]
    turns = {e["call_id"]: e for e in calls if e["purpose"] == "turn"}
    return turns, {e["call_id"] for e in calls if e["purpose"] == "sub"}


def test_streamed_turns_reach_the_sink_in_pieces_and_sub_calls_never(tmp_path: Path) -> None:
    listener = Listener()
    with ScriptedServer(http_router(REPLIES, lambda p: "words")) as backend:
        rlm = RLM("openai/root", base_url=backend.url, sandbox="inprocess", max_depth=2,
                  trace=tmp_path / "run.jsonl")  # fmt: skip
        result = rlm.completion("outer", CONTEXT, sinks=[listener])
    assert result.answer == "leaf"
    events = traced(result)
    assert not [e for e in events if e["type"] == "model_delta"]
    turns, subs = turns_and_subs(events)
    deltas = listener.deltas()
    assert set(deltas) == set(turns) and len(turns) == 3 and subs
    for call_id, turn in turns.items():
        told = deltas[call_id]
        assert len(told) > 1  # pieces, as the backend streamed them
        assert "".join(e["text"] for e in told) == turn["response"]
        assert {e["depth"] for e in told} == {turn["depth"]}
    assert {e["depth"] for e in turns.values()} == {0, 1}
    for request in backend.requests:
        assert request.get("stream", False) is is_root_turn(request["messages"])


def test_a_model_that_does_not_stream_is_told_each_turn_whole(tmp_path: Path) -> None:
    listener = Listener()
    model = ScriptedModel(router(REPLIES, lambda p: "words"))
    rlm = RLM(model, sandbox="inprocess", max_depth=2, trace=tmp_path / "run.jsonl")
    result = rlm.completion("outer", CONTEXT, sinks=[listener])
    turns, _ = turns_and_subs(traced(result))
    deltas = listener.deltas()
    assert set(deltas) == set(turns) and len(turns) == 3
    assert all([e["text"] for e in deltas[c]] == [t["response"]] for c, t in turns.items())


def test_without_a_sink_that_wants_text_nothing_streams() -> None:
    listener = Listener(text_deltas=False)
    with ScriptedServer(http_router(REPLIES, lambda p: "words")) as backend:
        rlm = RLM("openai/root", base_url=backend.url, sandbox="inprocess", max_depth=2)
        assert rlm.completion("outer", CONTEXT, sinks=[listener]).answer == "leaf"
    assert listener.deltas() == {}
    assert listener.events  # it is a live sink: the other notices came
    assert all("stream" not in r for r in backend.requests)
