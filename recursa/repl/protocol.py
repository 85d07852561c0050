"""The host <-> REPL protocol: one dataclass per message, and checked encode/decode.

Everything that crosses between a sandbox's REPL and the host is one of the
messages below. The worker process (an untrusted peer: model-written code runs
in it) and the host use only these; :func:`decode_frame` and
:func:`decode_request` check every field's type and every size, so a frame that
does not decode raises :class:`ProtocolError`, which the host reports and
survives. Nothing ill-typed ever reaches the engine.

This module uses the standard library only and imports nothing from recursa:
the subprocess and Docker sandboxes copy it into the sandbox beside
``worker.py`` and ``runtime.py``.

Frames are a 4-byte big-endian length and a UTF-8 JSON object with an ``op``::

    host -> worker   RunCell   {"op": "run", "code"}
                     Reply     {"op": "reply", "id", "ok": value} | {"op": "reply", "id", "error"}
                     Close     {"op": "close"}
    worker -> host   Hello     {"op": "hello", "pid", "context_s", "limits"}
                     Call      {"op": "call", "id", "name", "payload"}
                     CellDone  {"op": "result", "output", "error", "final", "duration_s",
                                "interrupted"}

A :class:`Call` carries one host request, decoded by :func:`decode_request` into
its own dataclass (:data:`HostRequest`): ``llm_query``, ``llm_batch``,
``rlm_query``, ``rlm_batch``, ``cancel``, ``budget`` or ``tool``;
:func:`encode_request` is its inverse (the payload the REPL sends).

Text that does not decode as UTF-8 arrives with U+FFFD in place of the bad bytes
(as the host always read it), so a lone surrogate the REPL printed never reaches
the host as an unencodable ``str``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

HEADER_BYTES = 4
#: The largest frame either side accepts; a bigger one is a protocol error.
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: Longest model spec, tool name or group id a request may carry.
MAX_NAME_CHARS = 256
#: Most prompts in one batch request.
MAX_BATCH = 100_000


class ProtocolError(Exception):
    """A frame or request that does not decode: wrong shape, type or size."""


# -- frames ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunCell:
    """Host -> worker: run one cell of code."""

    code: str
    op: Literal["run"] = "run"


@dataclass(frozen=True)
class Reply:
    """Host -> worker: the answer to the worker's :class:`Call` ``id``: a value or an error."""

    id: int
    ok: Any = None
    error: str | None = None
    op: Literal["reply"] = "reply"


@dataclass(frozen=True)
class Close:
    """Host -> worker: exit now."""

    op: Literal["close"] = "close"


@dataclass(frozen=True)
class Hello:
    """Worker -> host: the worker is ready (its pid, how long the context took to load,
    the limits in force)."""

    pid: int
    context_s: float = 0.0
    limits: dict[str, Any] = field(default_factory=dict)
    op: Literal["hello"] = "hello"


@dataclass(frozen=True)
class Call:
    """Worker -> host: a host request (``name`` and its JSON ``payload``), answered by a
    :class:`Reply` with the same ``id``."""

    id: int
    name: str
    payload: dict[str, Any]
    op: Literal["call"] = "call"


@dataclass(frozen=True)
class CellDone:
    """Worker -> host: the outcome of the cell sent last."""

    output: str = ""
    error: str | None = None
    final: str | None = None
    duration_s: float = 0.0
    interrupted: bool = False
    op: Literal["result"] = "result"


Frame = RunCell | Reply | Close | Hello | Call | CellDone


def _encode_json(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(f"a frame of {len(data):,} bytes is over the {MAX_FRAME_BYTES:,} limit")
    return len(data).to_bytes(HEADER_BYTES, "big") + data


def encode_frame(frame: Frame) -> bytes:
    """The wire form of ``frame``. Raises TypeError/ValueError for a value that is not
    JSON, :class:`ProtocolError` for one over :data:`MAX_FRAME_BYTES`."""
    msg = dict(frame.__dict__)
    if isinstance(frame, Reply):
        msg = {"op": "reply", "id": frame.id}
        if frame.error is not None:
            msg["error"] = frame.error
        else:
            msg["ok"] = frame.ok
    return _encode_json(msg)


def frame_length(header: bytes, limit: int = MAX_FRAME_BYTES) -> int:
    """The body length a frame header announces; :class:`ProtocolError` past ``limit``."""
    size = int.from_bytes(header, "big")
    if size > limit:
        raise ProtocolError(f"a frame of {size:,} bytes is over the {limit:,}-byte limit")
    return size


def _field(msg: dict[str, Any], name: str, types: Any, default: Any = ..., what: str = "") -> Any:
    if name not in msg or msg[name] is None:
        if default is ...:
            raise ProtocolError(f"{what or msg.get('op')!s:.40}: missing {name!r}")
        return default
    value = msg[name]
    # bool is an int subclass: never accept it where a number is meant
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
        raise ProtocolError(
            f"{what or msg.get('op')!s:.40}: {name!r} must be {_names(types)}, "
            f"not {type(value).__name__}"
        )
    return value


def _tuple(types: Any) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _names(types: Any) -> str:
    return " or ".join(t.__name__ for t in _tuple(types))


def _number(msg: dict[str, Any], name: str, what: str = "") -> float:
    value = _field(msg, name, (int, float), 0.0, what)
    try:
        return float(value)
    except OverflowError:  # an int too big for a float
        raise ProtocolError(f"{what or msg.get('op')!s:.40}: {name!r} is out of range") from None


def decode_frame(body: bytes) -> Frame:
    """One frame's body (after its header) as a message; :class:`ProtocolError` if it is not
    a JSON object of a known ``op`` with fields of the right types."""
    try:
        msg = json.loads(body.decode("utf-8", "replace"))
    except RecursionError:
        raise ProtocolError("a frame is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(f"a frame is not JSON: {str(exc)[:200]}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a frame is not a JSON object")
    return _frame(msg)


def _frame(msg: dict[str, Any]) -> Frame:
    op = msg.get("op")
    if op == "run":
        return RunCell(_field(msg, "code", str))
    if op == "reply":
        error = _field(msg, "error", str, None)
        return Reply(_field(msg, "id", int), None if error is not None else msg.get("ok"), error)
    if op == "close":
        return Close()
    if op == "hello":
        return Hello(_field(msg, "pid", int), _number(msg, "context_s"),
                     _field(msg, "limits", dict, {}))  # fmt: skip
    if op == "call":
        return Call(_field(msg, "id", int), _field(msg, "name", str), _field(msg, "payload", dict))
    if op == "result":
        return CellDone(
            output=_field(msg, "output", str, ""),
            error=_field(msg, "error", str, None),
            final=_field(msg, "final", str, None),
            duration_s=_number(msg, "duration_s"),
            interrupted=bool(_field(msg, "interrupted", bool, False)),
        )
    raise ProtocolError(f"unknown message {str(op)[:40]!r}")


#: What each side may receive: the host reads worker frames, the worker host frames.
FROM_WORKER: tuple[type, ...] = (Hello, Call, CellDone)
FROM_HOST: tuple[type, ...] = (RunCell, Reply, Close)


# -- host requests (the payload of a Call) ----------------------------------------------------
@dataclass(frozen=True)
class ImageData:
    """An image from the context, as the REPL sends it: a MIME type and base64 data."""

    mime: str
    base64: str

    def to_json(self) -> dict[str, str]:
        return {"__recursa_image__": self.mime, "base64": self.base64}


@dataclass(frozen=True)
class LlmQuery:
    """``llm_query(prompt, model=None, images=None)``; ``group`` ties it to an
    ``llm_batch(stop_when=...)`` that a :class:`Cancel` may end early."""

    prompt: str
    model: str | None = None
    images: tuple[ImageData, ...] = ()
    group: str | None = None
    name: Literal["llm_query"] = "llm_query"


@dataclass(frozen=True)
class LlmBatch:
    """``llm_batch(prompts, model=None)``: concurrent sub-calls, order kept."""

    prompts: tuple[str, ...]
    model: str | None = None
    name: Literal["llm_batch"] = "llm_batch"


@dataclass(frozen=True)
class BudgetLimits:
    """A child's own cap in ``rlm_query(..., budget=Budget(...))``; ``None`` is no limit."""

    usd: float | None = None
    tokens: int | None = None
    seconds: float | None = None
    calls: int | None = None


@dataclass(frozen=True)
class RlmQuery:
    """``rlm_query(prompt, context=None, budget=None)``: a child RLM one level deeper."""

    prompt: str
    context: Any = None
    budget: BudgetLimits | None = None
    name: Literal["rlm_query"] = "rlm_query"


@dataclass(frozen=True)
class RlmBatch:
    """``rlm_batch(prompts, contexts=None)``: children, concurrently."""

    prompts: tuple[str, ...]
    contexts: tuple[Any, ...] | None = None
    name: Literal["rlm_batch"] = "rlm_batch"


@dataclass(frozen=True)
class Cancel:
    """End the sub-calls of an ``llm_batch(stop_when=...)`` group still in flight."""

    group: str
    name: Literal["cancel"] = "cancel"


@dataclass(frozen=True)
class BudgetQuery:
    """``BUDGET()``: what is left of each limit."""

    name: Literal["budget"] = "budget"


@dataclass(frozen=True)
class ToolCall:
    """A host tool: ``tool(*args, **kwargs)``, arguments as JSON values."""

    tool: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: Literal["tool"] = "tool"


HostRequest = LlmQuery | LlmBatch | RlmQuery | RlmBatch | Cancel | BudgetQuery | ToolCall


def _name_field(payload: dict[str, Any], key: str, what: str, *, required: bool = False) -> Any:
    value = _field(payload, key, str, ... if required else None, what)
    if value is not None and len(value) > MAX_NAME_CHARS:
        raise ProtocolError(f"{what}: {key!r} is over {MAX_NAME_CHARS} characters")
    return value


def _prompts(payload: dict[str, Any], what: str) -> tuple[str, ...]:
    prompts = _field(payload, "prompts", list, what=what)
    if len(prompts) > MAX_BATCH:
        raise ProtocolError(f"{what}: more than {MAX_BATCH:,} prompts")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ProtocolError(f"{what}: prompt {i} must be str, not {type(p).__name__}")
    return tuple(prompts)


def _image(value: Any, what: str) -> ImageData:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("__recursa_image__"), str)
        or not isinstance(value.get("base64"), str)
    ):
        raise ProtocolError(f"{what}: an image must come from the context (Image objects)")
    return ImageData(value["__recursa_image__"], value["base64"])


def _budget(value: Any, what: str) -> BudgetLimits | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what}: budget must be a Budget(...) or a dict")
    unknown = set(value) - {"usd", "tokens", "seconds", "calls"}
    if unknown:
        raise ProtocolError(f"{what}: unknown budget field {sorted(unknown)[0]!r:.40}")
    for key, val in value.items():
        if val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise ProtocolError(f"{what}: budget {key!r} must be a number")
        if isinstance(val, float) and not math.isfinite(val):
            raise ProtocolError(f"{what}: budget {key!r} must be a finite number, got {val!r}")
        if val <= 0:
            raise ProtocolError(f"{what}: budget {key!r} must be positive, got {val!r}")
        if key in ("tokens", "calls") and isinstance(val, float) and not val.is_integer():
            raise ProtocolError(f"{what}: budget {key!r} must be a whole number, got {val!r}")
    return BudgetLimits(
        usd=value.get("usd"),
        tokens=None if value.get("tokens") is None else int(value["tokens"]),
        seconds=value.get("seconds"),
        calls=None if value.get("calls") is None else int(value["calls"]),
    )


def decode_request(name: str, payload: dict[str, Any]) -> HostRequest:
    """The typed request a :class:`Call` carries; :class:`ProtocolError` when ``name`` is
    unknown or a field has the wrong type or size."""
    what = str(name)[:40]
    if not isinstance(name, str):
        raise ProtocolError(f"a host function name must be str, not {type(name).__name__}")
    if not isinstance(payload, dict):
        raise ProtocolError(f"{what}: the payload must be a dict, not {type(payload).__name__}")
    if name == "llm_query":
        images = _field(payload, "images", list, [], what)
        return LlmQuery(
            prompt=_field(payload, "prompt", str, what=what),
            model=_name_field(payload, "model", what),
            images=tuple(_image(i, what) for i in images),
            group=_name_field(payload, "group", what),
        )
    if name == "llm_batch":
        return LlmBatch(_prompts(payload, what), _name_field(payload, "model", what))
    if name == "rlm_query":
        return RlmQuery(
            prompt=_field(payload, "prompt", str, what=what),
            context=payload.get("context"),
            budget=_budget(payload.get("budget"), what),
        )
    if name == "rlm_batch":
        prompts = _prompts(payload, what)
        contexts = _field(payload, "contexts", list, None, what)
        if contexts is not None and len(contexts) != len(prompts):
            raise ProtocolError(f"{what}: prompts and contexts differ in length")
        return RlmBatch(prompts, None if contexts is None else tuple(contexts))
    if name == "cancel":
        return Cancel(_name_field(payload, "group", what, required=True))
    if name == "budget":
        return BudgetQuery()
    if name == "tool":
        return ToolCall(
            tool=_name_field(payload, "name", what, required=True),
            args=tuple(_field(payload, "args", list, [], what)),
            kwargs=_field(payload, "kwargs", dict, {}, what),
        )
    raise ProtocolError(f"unknown host function {what!r}")


def encode_request(request: HostRequest) -> tuple[str, dict[str, Any]]:
    """The ``name`` and JSON ``payload`` of ``request``, as the REPL sends them: the inverse
    of :func:`decode_request`."""
    payload: dict[str, Any]
    if isinstance(request, LlmQuery):
        payload = {"prompt": request.prompt, "model": request.model}
        if request.images:
            payload["images"] = [i.to_json() for i in request.images]
        if request.group is not None:
            payload["group"] = request.group
    elif isinstance(request, LlmBatch):
        payload = {"prompts": list(request.prompts), "model": request.model}
    elif isinstance(request, RlmQuery):
        budget = request.budget
        payload = {
            "prompt": request.prompt,
            "context": request.context,
            "budget": None if budget is None else dict(budget.__dict__),
        }
    elif isinstance(request, RlmBatch):
        contexts = None if request.contexts is None else list(request.contexts)
        payload = {"prompts": list(request.prompts), "contexts": contexts}
    elif isinstance(request, Cancel):
        payload = {"group": request.group}
    elif isinstance(request, BudgetQuery):
        payload = {}
    elif isinstance(request, ToolCall):
        payload = {"name": request.tool, "args": list(request.args), "kwargs": request.kwargs}
    else:
        raise TypeError(f"not a host request: {request!r:.80}")
    return request.name, payload
