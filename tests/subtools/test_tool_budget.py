"""The budget of a tool-using sub-call: each step reserves its whole prompt, the tool calls
the sub-model asked with included, before the request is sent."""

from __future__ import annotations

from pathlib import Path

from recursa import RLM, Budget
from recursa.engine.run import prompt_estimate
from recursa.models.base import Message, message_chars
from recursa.testing import Received, Reply, ScriptedServer, is_root_turn
from recursa.trace import read_events

BIG = 200_000  # characters of one tool argument: 50,000 tokens at 4 characters a token


def measure(text: str) -> int:
    """How long ``text`` is."""
    return len(text)


def big_call_conversation(arguments: str) -> list[Message]:
    return [
        {"role": "user", "content": "how long?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_0", "type": "function",
             "function": {"name": "measure", "arguments": arguments}},
        ]},
        {"role": "tool", "tool_call_id": "call_0", "content": '{"result": 200000}'},
    ]  # fmt: skip


def test_estimates_count_tool_call_names_and_arguments() -> None:
    small = big_call_conversation('{"text": "x"}')
    big = big_call_conversation('{"text": "' + "x" * BIG + '"}')
    assert prompt_estimate(big) > BIG // 4 > prompt_estimate(small)
    assert message_chars(big) - message_chars(small) == BIG - 1
    no_calls = [m for m in small if m["role"] != "assistant"]
    # the name ("measure") and the arguments of the one call
    assert message_chars(small) - message_chars(no_calls) == len("measure") + 13 + 1


def test_a_budget_a_large_tool_argument_exceeds_stops_before_the_request(
    tmp_path: Path,
) -> None:
    def reply(request: Received) -> str | Reply:
        small = {"prompt_tokens": 10, "completion_tokens": 10}
        if is_root_turn(request["messages"]):
            code = (
                "try:\n    out = llm_query('how long?', tools=['measure'])\n"
                "except Exception as exc:\n    out = repr(exc)\nFINAL(out)"
            )
            return Reply(f"```repl\n{code}\n```", small)
        if any(m["role"] == "tool" for m in request["messages"]):
            return Reply("200000 characters", small)
        call = {"name": "measure", "arguments": {"text": "x" * BIG}}
        return Reply("", small, tool_calls=(call,))

    trace = tmp_path / "trace.jsonl"
    with ScriptedServer(reply) as server:
        rlm = RLM(
            "openai/scripted", base_url=server.url, sandbox="inprocess", trace=trace,
            sub_call_tools={"measure": measure}, budget=Budget(tokens=40_000),
            model_settings={"max_tokens": 100}, sub_model_settings={"max_tokens": 100},
        )  # fmt: skip
        result = rlm.completion("q", context="ctx")
    subs = [r for r in server.requests if not is_root_turn(r["messages"])]
    # the first step was sent; the second, carrying the 50,000-token argument, was not
    assert len(subs) == 1
    assert not any(m["role"] == "tool" for m in subs[0]["messages"])
    events, _ = read_events(trace)
    (use,) = [e for e in events if e["type"] == "tool_use"]
    assert use["tool"] == "measure" and use["result"] == '{"result": 200000}'
    (subcall,) = [e for e in events if e["type"] == "subcall"]
    assert subcall["tool_steps"] == 2 and "budget" in (subcall["error"] or "").lower()
    assert result.usage.input_tokens < 100
