"""The OpenAI chat-completions protocol as the server reads and writes it, free of HTTP.

:func:`parse_chat` validates a request body into a :class:`ChatRequest` (an
:class:`HTTPError` 400 for anything wrong); :func:`completion`, :func:`usage` and
:func:`extension` build the reply's parts from a :class:`~recursa.result.Result`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..budget import Budget
from ..context import Context
from ..errors import ConfigError
from ..prompts import QUERY_PREVIEW_CHARS
from ..result import Result
from .runs import BUDGET_FIELDS, RunOptions

# The root model's first turn cuts queries at QUERY_PREVIEW_CHARS; ours is cut
# (with our note) below that, so the note survives.
QUERY_MAX_CHARS = QUERY_PREVIEW_CHARS - 500
RLM_FIELDS = frozenset({"context", "max_depth", "max_iterations", "budget", "progress"})


class HTTPError(Exception):
    """An OpenAI-style error response; ``close`` ends the connection after it (the
    request's body was not read)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        if close:
            self.headers["connection"] = "close"

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return dumps(self.payload())


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def bad(message: str, param: str | None = None) -> HTTPError:
    return HTTPError(400, message, param=param)


@dataclass
class ChatRequest:
    model_name: str
    query: str
    context: str | list[str] | dict[str, Any]
    options: RunOptions
    stream: bool
    include_usage: bool
    output_type: dict[str, Any] | None = None  # a JSON Schema, from response_format
    progress_events: bool = False  # rlm.progress: progress as chunks, not comments


def _content_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
        return "\n".join(parts)
    raise bad(f"{where}.content must be a string or a list of content parts", where)


def _last_user(messages: list[dict[str, Any]]) -> tuple[int, str]:
    """The index and text of the last user message: the query."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last is None:
        raise bad("the conversation has no user message: it is the query", "messages")
    query = _content_text(messages[last].get("content"), f"messages[{last}]")
    if not query.strip():
        raise bad("the last user message (the query) is empty", f"messages[{last}]")
    return last, query


def conversation(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """``(query shown to the root, context text)`` from a chat's messages."""
    texts = [
        (str(m["role"]), _content_text(m.get("content"), f"messages[{i}]"))
        for i, m in enumerate(messages)
    ]
    last, query = _last_user(messages)
    long = len(query) > QUERY_MAX_CHARS
    if len(texts) == 1:
        context = query
        where = "it is the whole of `context`"
    else:
        parts = [f"### {role}\n{text}" for i, (role, text) in enumerate(texts) if i != last]
        if long:
            parts.append(f"### user (the query, in full)\n{query}")
        context = "\n\n".join(parts)
        where = "it is in full at the end of `context`"
    if long:
        query = (
            query[:QUERY_MAX_CHARS]
            + f"\n[the query is {len(query):,} characters, cut here; {where}]"
        )
    return query, context


def _int_field(ext: dict[str, Any], name: str, minimum: int) -> int | None:
    value = ext.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise bad(f"rlm.{name} must be an integer >= {minimum}", f"rlm.{name}")
    return value


def _budget_field(value: Any) -> Budget | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad("rlm.budget must be an object with usd, tokens, calls, seconds", "rlm.budget")
    unknown = set(value) - set(BUDGET_FIELDS)
    if unknown:
        raise bad(f"rlm.budget: unknown field {sorted(unknown)[0]!r}", "rlm.budget")
    for name, limit in value.items():
        if limit is not None and (
            not isinstance(limit, int | float) or isinstance(limit, bool) or limit <= 0
        ):
            raise bad(f"rlm.budget.{name} must be a positive number", f"rlm.budget.{name}")
    try:
        return Budget(**value)
    except (ConfigError, TypeError) as exc:
        raise bad(f"rlm.budget: {exc}", "rlm.budget") from exc


def output_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON Schema a ``response_format`` asks the answer to match (None: free text)."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise bad(
            "response_format.type must be 'text', 'json_object' or 'json_schema'",
            "response_format",
        )
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise bad(
            "response_format.json_schema.schema must be a JSON Schema object",
            "response_format.json_schema.schema",
        )
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise bad(
            f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}",
            "response_format.json_schema.schema",
        ) from None
    return schema


def parse_chat(body: Any, *, model_name: str, model_allowed: Callable[[str], bool]) -> ChatRequest:
    """Validate a decoded chat-completions body (400 for anything wrong, 404 for a model
    the server does not serve)."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' is required: a non-empty list of messages", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad(f"messages[{i}] must be an object with a 'role'", f"messages[{i}]")
    name = body.get("model") or model_name
    if not isinstance(name, str):
        raise bad("'model' must be a string", "model")
    model: str | None = None
    if name != model_name:
        if not model_allowed(name):
            raise unknown_model(name, model_name)
        model = name
    n = body.get("n")
    if n not in (None, 1):
        raise bad("only n=1 is supported: one RLM run answers one request", "n")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise bad("'stream' must be a boolean", "stream")
    stream_options = body.get("stream_options") or {}
    include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
    schema = output_schema(body.get("response_format"))
    ext = body.get("rlm") or {}
    if not isinstance(ext, dict):
        raise bad("'rlm' must be an object", "rlm")
    unknown = set(ext) - RLM_FIELDS
    if unknown:
        raise bad(
            f"rlm: unknown field {sorted(unknown)[0]!r} (known: {', '.join(sorted(RLM_FIELDS))})",
            "rlm",
        )
    progress = ext.get("progress", False)
    if not isinstance(progress, bool):
        raise bad("rlm.progress must be a boolean", "rlm.progress")
    if ext.get("context") is not None:
        context_value: Any = ext["context"]
        if not (
            isinstance(context_value, str | dict)
            or (isinstance(context_value, list) and all(isinstance(v, str) for v in context_value))
        ):
            raise bad("rlm.context must be a string, a list of strings or an object", "rlm.context")
        # The whole query goes to the run (the first turn cuts it when long).
        query = _last_user(messages)[1]
    else:
        query, context_value = conversation(messages)
    try:
        Context(context_value)  # validated now, while an error can still be a 400
    except ConfigError as exc:
        raise bad(str(exc), "rlm.context") from exc
    options = RunOptions(
        model=model,
        max_depth=_int_field(ext, "max_depth", 0),
        max_iterations=_int_field(ext, "max_iterations", 1),
        budget=_budget_field(ext.get("budget")),
    )
    return ChatRequest(name, query, context_value, options, stream, include_usage, schema, progress)


def unknown_model(name: str, served: str) -> HTTPError:
    return HTTPError(
        404,
        f"The model {name!r} does not exist or is not served here (use {served!r})",
        code="model_not_found",
        param="model",
    )


def usage(result: Result) -> dict[str, Any]:
    u = result.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def extension(result: Result) -> dict[str, Any]:
    info = result.to_dict()
    info.pop("answer", None)
    return info


def completion(
    completion_id: str, created: int, chat: ChatRequest, result: Result
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": chat.model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.answer},
                "finish_reason": "length" if result.stopped else "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(result),
        "rlm": extension(result),
    }
