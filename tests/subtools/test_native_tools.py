"""Sub-models that call host tools over OpenAI's function calling, against the real local
scripted server (the lean client and the SDK client send the same body)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM
from recursa.testing import Received, Reply, ScriptedServer, is_root_turn
from recursa.trace import read_events
from tests.helpers import requires

INVENTORY = {"apples": 12, "pears": 0}


def stock(item: str) -> int:
    """How many of ``item`` are in stock."""
    if item not in INVENTORY:
        raise KeyError(f"unknown item {item}")
    return INVENTORY[item]


def fenced(code: str) -> str:
    return f"```repl\n{code}\n```"


def tool_messages(request: Received) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


def sub_model(request: Received) -> Reply:
    """Asks ``stock`` once per item named in the prompt, then answers from the results."""
    results = tool_messages(request)
    if not results:
        prompt = request["messages"][0]["content"]
        items = prompt.split()[1:]  # "count apples pears"
        calls = tuple({"name": "stock", "arguments": {"item": i}} for i in items)
        return Reply("", tool_calls=calls)
    return Reply("; ".join(m["content"] for m in results))


def run_once(
    root_code: str,
    tmp_path: Path,
    *,
    client: str = "http",
    sandbox: str = "inprocess",
    **options: Any,
) -> tuple[Any, ScriptedServer, list[dict[str, Any]]]:
    def reply(request: Received) -> str | Reply:
        if is_root_turn(request["messages"]):
            return fenced(root_code)
        return sub_model(request)

    trace = tmp_path / "trace.jsonl"
    with ScriptedServer(reply) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECURSA_OPENAI_CLIENT", client)
        rlm = RLM(
            "openai/scripted",
            base_url=server.url,
            sandbox=sandbox,
            trace=trace,
            sub_call_tools={"stock": stock},
            **options,
        )
        result = rlm.completion("how many?", context="ctx")
    events, _ = read_events(trace)
    return result, server, events


@pytest.mark.parametrize("client", ["http", pytest.param("sdk", marks=requires("openai"))])
def test_sub_model_calls_a_granted_tool_and_answers_from_its_result(
    tmp_path: Path, client: str
) -> None:
    result, server, events = run_once(
        "FINAL(llm_query('count apples pears', tools=['stock']))", tmp_path, client=client
    )
    assert result.answer == '{"result": 12}; {"result": 0}'
    subs = [r for r in server.requests if not is_root_turn(r["messages"])]
    assert len(subs) == 2  # one request asks for the tools, the second reads the results
    offered = subs[0]["tools"]
    assert offered[0]["function"]["name"] == "stock"
    assert offered[0]["function"]["parameters"]["required"] == ["item"]
    second = subs[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool", "tool"]
    assert second[2]["tool_call_id"] == second[1]["tool_calls"][0]["id"]
    # each step a metered model_call, each tool run a tool_use event
    sub_calls = [e for e in events if e["type"] == "model_call" and e["purpose"] == "sub"]
    assert len(sub_calls) == 2
    assert result.usage.calls == 3  # the root's turn and the two steps
    uses = [e for e in events if e["type"] == "tool_use"]
    assert [(u["tool"], json.loads(u["arguments"]), json.loads(u["result"])) for u in uses] == [
        ("stock", {"item": "apples"}, {"result": 12}),
        ("stock", {"item": "pears"}, {"result": 0}),
    ]
    (subcall,) = [e for e in events if e["type"] == "subcall"]
    assert subcall["tools"] == ["stock"] and subcall["tool_steps"] == 2
    assert [m["role"] for m in subcall["messages"]] == [
        "user", "assistant", "tool", "tool", "assistant"
    ]  # fmt: skip


def test_a_tool_error_goes_back_to_the_sub_model_as_its_result(tmp_path: Path) -> None:
    result, _, events = run_once("FINAL(llm_query('count plums', tools=['stock']))", tmp_path)
    error = json.loads(result.answer)["error"]
    assert "KeyError" in error and "unknown item plums" in error
    (use,) = [e for e in events if e["type"] == "tool_use"]
    assert use["error"] == error


def test_a_tool_not_granted_is_refused_naming_the_granted_ones(tmp_path: Path) -> None:
    code = (
        "try:\n    llm_query('x', tools=['delete_all'])\n"
        "except Exception as exc:\n    FINAL(str(exc))"
    )
    result, server, _ = run_once(code, tmp_path)
    assert "'delete_all' is not granted to sub-calls; granted: stock" in result.answer
    assert all(is_root_turn(r["messages"]) for r in server.requests)  # nothing was asked


def test_granted_tools_are_not_callables_in_the_root_repl(tmp_path: Path) -> None:
    result, _, _ = run_once("FINAL(str('stock' in globals()))", tmp_path)
    assert result.answer == "False"


def test_the_step_limit_ends_a_sub_call_that_keeps_calling_tools(tmp_path: Path) -> None:
    def reply(request: Received) -> str | Reply:
        if is_root_turn(request["messages"]):
            return fenced(
                "try:\n    llm_query('loop', tools=['stock'])\n"
                "except Exception as exc:\n    FINAL(str(exc))"
            )
        return Reply("", tool_calls=({"name": "stock", "arguments": {"item": "apples"}},))

    with ScriptedServer(reply) as server:
        rlm = RLM(
            "openai/scripted", base_url=server.url, sandbox="inprocess",
            sub_call_tools={"stock": stock}, sub_call_tool_steps=3, trace=tmp_path / "t.jsonl",
        )  # fmt: skip
        result = rlm.completion("q", context="ctx")
    assert "after 3 requests (sub_call_tool_steps)" in result.answer
    assert sum(1 for r in server.requests if not is_root_turn(r["messages"])) == 3
    events, _ = read_events(tmp_path / "t.jsonl")
    (subcall,) = [e for e in events if e["type"] == "subcall"]
    assert subcall["tool_steps"] == 3 and "sub_call_tool_steps" in subcall["error"]
    assert sum(1 for e in events if e["type"] == "tool_use") == 3


def test_llm_batch_grants_tools_to_every_prompt(tmp_path: Path) -> None:
    result, _, events = run_once(
        "FINAL(' | '.join(llm_batch(['count apples', 'count pears'], tools=['stock'])))",
        tmp_path,
    )
    assert result.answer == '{"result": 12} | {"result": 0}'
    assert sum(1 for e in events if e["type"] == "tool_use") == 2


def test_arguments_that_are_not_json_are_reported_to_the_sub_model(tmp_path: Path) -> None:
    def reply(request: Received) -> str | Reply:
        if is_root_turn(request["messages"]):
            return fenced("FINAL(llm_query('x', tools=['stock']))")
        results = tool_messages(request)
        if results:
            return Reply(results[0]["content"])
        return Reply("", tool_calls=({"name": "stock", "arguments": "{not json"},))

    with ScriptedServer(reply) as server:
        rlm = RLM("openai/scripted", base_url=server.url, sandbox="inprocess",
                  sub_call_tools={"stock": stock})  # fmt: skip
        result = rlm.completion("q", context="ctx")
    assert json.loads(result.answer) == {"error": "the arguments of stock must be a JSON object"}


def test_the_system_prompt_lists_sub_call_tools_only_when_granted(tmp_path: Path) -> None:
    _, server, _ = run_once("FINAL('x')", tmp_path)
    system = server.requests[0]["messages"][0]["content"]
    assert (
        "`llm_query(prompt, tools=[name, ...])`" in system and "`stock(item: str) -> int`" in system
    )

    with ScriptedServer(lambda r: fenced("FINAL('x')")) as plain:
        RLM("openai/scripted", base_url=plain.url, sandbox="inprocess").completion("q", "ctx")
    assert "tools=[" not in plain.requests[0]["messages"][0]["content"]


def test_a_subprocess_sandbox_grants_tools_the_same_way(tmp_path: Path) -> None:
    code = "FINAL(str('stock' in globals()) + ' ' + llm_query('count apples', tools=['stock']))"
    result, _, _ = run_once(code, tmp_path, sandbox="subprocess")
    assert result.answer == 'False {"result": 12}'


def test_the_compact_prompt_lists_sub_call_tools_only_when_granted() -> None:
    """Small models get the compact prompt: it names the granted tools in one line,
    and says nothing of tools when none are granted or there are no sub-calls."""
    from recursa.context import Context
    from recursa.prompts_compact import compact_system_prompt
    from recursa.tools import ToolSet

    info = Context("inventory: apples, pears\n" * 10).info
    specs = ToolSet({"stock": stock}).specs()
    granted = compact_system_prompt(info, subcalls=True, max_depth=1, sub_call_tools=specs)
    (line,) = [x for x in granted.splitlines() if "tools=[" in x]
    assert "stock" in line
    for prompt in (
        compact_system_prompt(info, subcalls=True, max_depth=1),
        compact_system_prompt(info, subcalls=False, max_depth=0, sub_call_tools=specs),
    ):
        assert "tools=[" not in prompt
