"""The settings, the protocol fields and the CLI flags of tool-using sub-calls and of
full-prompt traces: bad values are one clear error; the CLI grants tools from a module."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from recursa.errors import ConfigError
from recursa.repl.protocol import LlmBatch, LlmQuery, ProtocolError, decode_request, encode_request
from recursa.settings import Settings
from recursa.testing import Received, Reply, ScriptedServer, is_root_turn
from recursa.trace import read_events
from tests.helpers import run_cli

TOOLS_MODULE = '''
def double(n: int) -> int:
    """Twice n."""
    return 2 * n

TOOLS = {"double": double}
'''


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="trace_prompts must be one of cut, full"):
        Settings(model="openai/x", trace_prompts="all")
    with pytest.raises(ConfigError, match="sub_call_tool_steps must be positive"):
        Settings(model="openai/x", sub_call_tool_steps=0)


def test_full_prompts_lift_the_trace_cut_and_are_recorded() -> None:
    full = Settings(model="openai/x", trace_prompts="full")
    assert full.trace_max_chars > 10**15
    assert full.to_record()["trace_prompts"] == "full"
    assert Settings(model="openai/x").to_record()["trace_prompts"] is None


def test_tool_names_cross_the_protocol_both_ways() -> None:
    for request in (LlmQuery("p", tools=("a", "b")), LlmBatch(("p",), tools=("a",))):
        assert decode_request(*encode_request(request)) == request
    with pytest.raises(ProtocolError, match="a tool must be named by a str identifier"):
        decode_request("llm_query", {"prompt": "p", "tools": ["not a name"]})
    with pytest.raises(ProtocolError, match="'tools' must be list"):
        decode_request("llm_batch", {"prompts": ["p"], "tools": "double"})


def reply(request: Received) -> str | Reply:
    if is_root_turn(request["messages"]):
        return "```repl\nFINAL(llm_query('double 21', tools=['double']))\n```"
    results = [m for m in request["messages"] if m["role"] == "tool"]
    if results:
        return str(json.loads(results[0]["content"])["result"])
    return Reply("", tool_calls=({"name": "double", "arguments": {"n": 21}},))


def cli_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "granted.py").write_text(TOOLS_MODULE)
    path = os.pathsep.join([str(tmp_path), *sys.path])
    return {**os.environ, "PYTHONPATH": path, "OPENAI_API_KEY": "unused"}


def test_the_cli_grants_sub_call_tools_from_a_module(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    (tmp_path / "ctx.txt").write_text("some context")
    with ScriptedServer(reply) as server:
        proc = run_cli(
            ["run", "q", "-c", str(tmp_path / "ctx.txt"), "-m", "openai/scripted",
             "--base-url", server.url, "--sandbox", "inprocess", "--no-progress",
             "--sub-call-tools", "granted:TOOLS", "--trace", str(trace),
             "--trace-prompts", "full"],
            cli_env(tmp_path),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"
    events, _ = read_events(trace)
    assert events[0]["trace_prompts"] == "full"
    assert [e["tool"] for e in events if e["type"] == "tool_use"] == ["double"]


def test_a_bad_sub_call_tools_target_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "ctx.txt").write_text("x")
    proc = run_cli(
        ["run", "q", "-c", str(tmp_path / "ctx.txt"), "--sub-call-tools", "granted"],
        cli_env(tmp_path),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "recursa: error: --sub-call-tools wants module:attr (a dict of functions), got 'granted'"
    )
