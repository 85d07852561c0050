"""Tool-using sub-calls over Anthropic's ``tool_use`` and Gemini's function calling: whole
runs through each real SDK against the local servers of tests/providers, taught here
to answer with a tool call when the scripted reply has one."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from recursa import RLM
from recursa.models.anthropic import AnthropicModel
from recursa.models.gemini import GeminiModel
from recursa.testing import Received, Reply
from tests.helpers import requires
from tests.providers.servers import AnthropicServer, GeminiServer, options

# Newer SDKs warn that claude-sonnet-4-5 is nearing retirement; the name is only a fixture here.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

ROOT = "```repl\nFINAL(llm_query('weigh the apples', tools=['weigh']))\n```"
CALL = ({"name": "weigh", "arguments": {"item": "apples"}},)


def weigh(item: str) -> float:
    """The weight of ``item`` in kg."""
    return {"apples": 1.5}[item]


class _Remembers:
    """Keeps the reply each request thread played, so ``answer`` can add its tool calls."""

    _local = threading.local()

    def play(self, request: Received) -> Reply:
        reply: Reply = super().play(request)  # type: ignore[misc]
        self._local.reply = reply
        return reply


class ToolAnthropicServer(_Remembers, AnthropicServer):
    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        status, payload = super().answer(request)
        calls = self._local.reply.tool_calls
        if calls:
            payload["content"] = [
                {"type": "tool_use", "id": f"toolu_{i}", "name": c["name"], "input": c["arguments"]}
                for i, c in enumerate(calls)
            ]
            payload["stop_reason"] = "tool_use"
        return status, payload


class ToolGeminiServer(_Remembers, GeminiServer):
    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        status, payload = super().answer(request)
        calls = self._local.reply.tool_calls
        if calls:
            payload["candidates"][0]["content"]["parts"] = [
                {"functionCall": {"id": f"fc_{i}", "name": c["name"], "args": c["arguments"]}}
                for i, c in enumerate(calls)
            ]
        return status, payload


@requires("anthropic")
def test_anthropic_sub_model_uses_a_tool() -> None:
    def reply(request: Received) -> str | Reply:
        if "system" in request:
            return ROOT
        if "tools" not in request:
            return "no tools offered"
        last = request["messages"][-1]["content"]
        result = [b for b in last if b.get("type") == "tool_result"]
        return Reply(f"got {result[0]['content']}") if result else Reply("", tool_calls=CALL)

    with ToolAnthropicServer(reply, api_key="test-key") as server:
        model = AnthropicModel("claude-sonnet-4-5", options=options(server.url, api_key="test-key"))
        rlm = RLM(model, sandbox="inprocess", sub_call_tools={"weigh": weigh})
        result = rlm.completion("q", context="ctx")
    assert result.answer == 'got {"result": 1.5}'
    first, second = [r for r in server.requests if "system" not in r]
    assert first["tools"] == [
        {
            "name": "weigh",
            "description": "The weight of ``item`` in kg.",
            "input_schema": {
                "type": "object",
                "properties": {"item": {"type": "string"}},
                "required": ["item"],
            },
        }
    ]
    assistant, user = second["messages"][1:]
    (use,) = assistant["content"]
    use.pop("cache_control", None)  # a conversation that goes on: a cache breakpoint
    assert use == {
        "type": "tool_use",
        "id": "toolu_0",
        "name": "weigh",
        "input": {"item": "apples"},
    }
    assert user["role"] == "user"
    assert user["content"][0]["type"] == "tool_result"
    assert user["content"][0]["tool_use_id"] == "toolu_0"


@requires("google.genai")
def test_gemini_sub_model_uses_a_tool() -> None:
    def reply(request: Received) -> str | Reply:
        if "systemInstruction" in request:
            return ROOT
        parts = request["contents"][-1]["parts"]
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if responses:
            return Reply(f"got {responses[0]['response']['result']}")
        return Reply("", tool_calls=CALL)

    with ToolGeminiServer(reply, api_key="test-key") as server:
        model = GeminiModel("gemini-2.5-flash", options=options(server.url, api_key="test-key"))
        rlm = RLM(model, sandbox="inprocess", sub_call_tools={"weigh": weigh})
        result = rlm.completion("q", context="ctx")
    assert result.answer == "got 1.5"
    first, second = [r for r in server.requests if "systemInstruction" not in r]
    (declaration,) = first["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "weigh"
    # the SDK sends the schema under its proto field name, which the API takes as well
    assert declaration["parameters_json_schema"]["required"] == ["item"]
    model_turn, user_turn = second["contents"][1:]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0]["functionCall"]["args"] == {"item": "apples"}
    response = user_turn["parts"][0]["functionResponse"]
    assert response["name"] == "weigh" and response["id"] == "fc_0"
