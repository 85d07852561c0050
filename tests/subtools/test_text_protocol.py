"""Sub-models without native function calling use the text protocol: a fenced ``tool``
block asks for a tool, a ``tool_result`` block in the next user message answers it.
Run through the real engine with a scripted model (no ``supports_tools``), and the
schema and parsing helpers on their own."""

from __future__ import annotations

import json
from pathlib import Path

from recursa import RLM
from recursa.models.base import Message
from recursa.models.scripted import ScriptedModel
from recursa.subcall_tools import text_requests, tool_schema
from recursa.trace import read_events


def shout(text: str, times: int = 1) -> str:
    """Upper-case ``text``, repeated."""
    return text.upper() * times


def test_a_model_without_native_tools_calls_them_in_tool_blocks(tmp_path: Path) -> None:
    def reply(messages: list[Message]) -> str:
        if messages[0]["role"] == "system":
            return "```repl\nFINAL(llm_query('shout hi twice', tools=['shout']))\n```"
        last = str(messages[-1]["content"])
        if last.startswith("```tool_result"):
            return "the tool said " + str(json.loads(last.split("\n")[1])["result"])
        assert "```tool" in last and "- shout(text, times)" in last  # the protocol, told
        return '```tool\n{"name": "shout", "arguments": {"text": "hi", "times": 2}}\n```'

    trace = tmp_path / "t.jsonl"
    model = ScriptedModel(reply)
    rlm = RLM(model, sandbox="inprocess", trace=trace, sub_call_tools={"shout": shout})
    result = rlm.completion("q", context="ctx")
    assert result.answer == "the tool said HIHI"
    events, _ = read_events(trace)
    (use,) = [e for e in events if e["type"] == "tool_use"]
    assert json.loads(use["arguments"]) == {"text": "hi", "times": 2}
    assert json.loads(use["result"]) == {"result": "HIHI"}
    assert sum(1 for e in events if e["type"] == "model_call" and e["purpose"] == "sub") == 2


def test_a_tool_block_that_is_not_json_is_still_a_request() -> None:
    (request,) = text_requests("```tool\n{oops\n```", step=1)
    assert request.name == "" and request.arguments == "{oops"


def test_text_without_a_tool_block_is_an_answer() -> None:
    assert text_requests("the answer is ```python\nx\n```", step=1) == ()


def test_a_schema_is_read_from_the_signature() -> None:
    schema = tool_schema("shout", shout)
    assert schema.description.startswith("Upper-case")
    assert schema.parameters == {
        "type": "object",
        "properties": {"text": {"type": "string"}, "times": {"type": "integer"}},
        "required": ["text"],
    }
