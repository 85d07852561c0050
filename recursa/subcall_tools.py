"""Sub-models that use tools: ``llm_query(prompt, tools=["search", ...])``.

The user grants host tools to sub-calls (``RLM(sub_call_tools=...)``,
``--sub-call-tools``); model code names the ones a sub-call may use. The sub-model
then runs a function-calling loop on the host: each step is one metered model
request (the caller's ``ask``, which goes through ``Run.call_model``), each tool it
asks for runs through the :class:`~recursa.tools.ToolSet` (arguments and results as
JSON; an error goes back to the sub-model as the result), until it answers in text
or the step limit is spent. The tools never become callables in the REPL, so model
code (and whatever the context told it) cannot call them directly.

A model with native function calling (``supports_tools``: OpenAI-compatible servers,
Anthropic, Gemini) is offered the tools in its request (:func:`offer_tools`). Any
other model (the embedded local one) gets :data:`TEXT_PROTOCOL` in its prompt: it
calls a tool by replying with only a fenced ``tool`` block holding
``{"name": ..., "arguments": {...}}``, and reads each result in a ``tool_result``
block of the next user message.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import time
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .models.base import (
    Completion,
    Message,
    Model,
    ModelWrapper,
    ToolRequest,
    ToolSchema,
    offer_tools,
)
from .sampling import Sampling
from .tools import Tool, ToolError, ToolSet

#: What a model without native function calling is told (the tools listed after it).
TEXT_PROTOCOL = """You may call tools. To call one, reply with only this block and nothing else:
```tool
{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}
```
The result comes back in a ```tool_result block. When you have what you need, reply with \
your answer as plain text (no tool block).

Tools:
{tools}"""
_TOOL_BLOCK = re.compile(r"```tool[ \t]*\n(.*?)\n?```", re.DOTALL)
_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


@dataclass(frozen=True)
class ToolRun:
    """One tool the sub-model ran: what it asked for and what it got back (``result``
    is the JSON text the sub-model read; ``error`` is set when the tool failed)."""

    step: int
    tool: str
    arguments: Any
    result: str
    error: str | None
    t0: float
    duration_s: float


@dataclass
class Trail:
    """What a tool-using sub-call has done so far, for its trace (kept when it fails):
    every message of its conversation, and the model requests it made."""

    messages: list[Message] = field(default_factory=list)
    steps: int = 0


Ask = Callable[[list[Message]], Awaitable[Completion]]


def granted(tools: ToolSet, names: Sequence[str]) -> list[str]:
    """``names`` if every one is a tool granted to sub-calls; a :class:`ConfigError`
    (the REPL sees it) naming the granted ones otherwise."""
    allowed = sorted(tools.tools)
    for name in names:
        if name not in tools.tools:
            offer = ", ".join(allowed) if allowed else "none (grant some with sub_call_tools=)"
            raise ConfigError(
                f"llm_query(tools=...): {name!r} is not granted to sub-calls; granted: {offer}"
            )
    return list(dict.fromkeys(names))


def schemas(tools: ToolSet, names: Sequence[str]) -> list[ToolSchema]:
    """The granted ``names`` as the tool schemas a model is offered."""
    return [tool_schema(name, tools.tools[name]) for name in names]


def tool_schema(name: str, fn: Tool) -> ToolSchema:
    """A tool's schema from its signature: each parameter a property (typed when its
    annotation is a JSON type), those without a default required; its docstring the
    description."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (TypeError, ValueError, NameError):
        signature = inspect.Signature()
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            continue
        json_type = _json_type(param.annotation)
        properties[param.name] = {"type": json_type} if json_type else {}
        if param.default is param.empty:
            required.append(param.name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return ToolSchema(name, inspect.getdoc(fn) or name, parameters)


def _json_type(annotation: Any) -> str | None:
    origin = typing.get_origin(annotation) or annotation
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        return None
    return _JSON_TYPES.get(origin)


def text_instructions(tools: Sequence[ToolSchema]) -> str:
    """:data:`TEXT_PROTOCOL` with one line per tool: its name, arguments and description."""
    lines = "\n".join(
        f"- {t.name}({', '.join(t.parameters['properties'])}): "
        f"{t.description.strip().splitlines()[0] if t.description.strip() else ''}"
        for t in tools
    )
    return TEXT_PROTOCOL.format(tools=lines)


def text_requests(text: str, step: int) -> tuple[ToolRequest, ...]:
    """The ``tool`` blocks of a reply under the text protocol, in order. A block that is
    not ``{"name": str, "arguments": ...}`` is still a request (named as written, or
    ``""``), so the model is told what was wrong instead of the block being taken as its
    answer."""
    out: list[ToolRequest] = []
    for i, match in enumerate(_TOOL_BLOCK.finditer(text)):
        try:
            data = json.loads(match.group(1))
        except ValueError:
            data = None
        name = data.get("name") if isinstance(data, dict) else None
        arguments = data.get("arguments", {}) if isinstance(data, dict) else match.group(1)
        out.append(
            ToolRequest(f"text_{step}_{i}", name if isinstance(name, str) else "", arguments)
        )
    return tuple(out)


class ToolOffering(ModelWrapper):
    """The model of one tool-using sub-call: each request offers its tools, and the last
    reply is kept (:attr:`last`) so the loop reads the tool calls that the metered path
    (which returns text) does not pass on. Held open like the model it wraps."""

    def __init__(self, inner: Model, tools: Sequence[ToolSchema]) -> None:
        super().__init__(inner)
        self.tools = tuple(tools)
        self.last: Completion | None = None

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Completion:
        with offer_tools(self.tools):
            self.last = await self.inner.complete(
                messages, max_tokens=max_tokens, sampling=sampling
            )
        return self.last

    async def __aenter__(self) -> ToolOffering:
        if isinstance(self.inner, contextlib.AbstractAsyncContextManager):
            await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if isinstance(self.inner, contextlib.AbstractAsyncContextManager):
            await self.inner.__aexit__(*exc)


async def run_tool_loop(
    first: Message,
    tools: ToolSet,
    offered: Sequence[ToolSchema],
    *,
    native: bool,
    max_steps: int,
    ask: Ask,
    on_tool: Callable[[ToolRun], None],
    trail: Trail,
) -> str:
    """Ask, run the tools asked for, ask again, until a reply asks for none (its text is
    the answer) or ``max_steps`` requests are spent (a :class:`ToolError`). ``trail``
    follows the conversation as it goes."""
    if not native:
        instructions = text_instructions(offered)
        content = first["content"]
        if isinstance(content, str):
            first = {"role": "user", "content": f"{instructions}\n\n{content}"}
        else:
            first = {"role": "user", "content": [{"type": "text", "text": instructions}, *content]}
    messages = trail.messages
    messages.append(first)
    names = {t.name for t in offered}
    for step in range(1, max_steps + 1):
        trail.steps = step
        reply = await ask(list(messages))
        requests = reply.tool_calls if native else text_requests(reply.text, step)
        if not requests:
            messages.append({"role": "assistant", "content": reply.text})
            return reply.text
        if native:
            messages.append({"role": "assistant", "content": reply.text,
                             "tool_calls": [_wire_call(r) for r in requests]})  # fmt: skip
        else:
            messages.append({"role": "assistant", "content": reply.text})
        results = []
        for request in requests:
            use = await _use(tools, names, request, step)
            on_tool(use)
            if native:
                messages.append({"role": "tool", "tool_call_id": request.id, "content": use.result})
            else:
                results.append(f"```tool_result\n{use.result}\n```")
        if results:
            messages.append({"role": "user", "content": "\n".join(results)})
    raise ToolError(
        f"the sub-model still asked for tools after {max_steps} requests "
        "(sub_call_tool_steps); no answer"
    )


async def _use(tools: ToolSet, names: set[str], request: ToolRequest, step: int) -> ToolRun:
    """Run one requested tool; any failure becomes ``{"error": ...}`` for the sub-model."""
    t0 = time.time()
    error: str | None = None
    try:
        if request.name not in names:
            offered = ", ".join(sorted(names))
            raise ToolError(f"no tool named {request.name!r}; the tools are {offered}")
        if not isinstance(request.arguments, dict):
            raise ToolError(f"the arguments of {request.name} must be a JSON object")
        result = await tools.call(request.name, [], request.arguments)
        text = json.dumps({"result": result}, ensure_ascii=False)
    except ToolError as exc:
        error = str(exc)
        text = json.dumps({"error": error}, ensure_ascii=False)
    return ToolRun(step, request.name, request.arguments, text, error, t0, time.time() - t0)


def _wire_call(request: ToolRequest) -> dict[str, Any]:
    """A tool call in OpenAI's message shape (``arguments`` as a JSON string)."""
    arguments = request.arguments
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {
        "id": request.id,
        "type": "function",
        "function": {"name": request.name, "arguments": raw},
    }


__all__ = [
    "TEXT_PROTOCOL",
    "ToolOffering",
    "ToolRun",
    "Trail",
    "granted",
    "run_tool_loop",
    "schemas",
    "text_instructions",
    "text_requests",
    "tool_schema",
]
