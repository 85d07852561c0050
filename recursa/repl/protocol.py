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
``rlm_query``, ``rlm_batch``, ``cancel``, ``budget``, ``tool`` or ``cite``;
:func:`encode_request` is its inverse (the payload the REPL sends).

The source channel (a second socket, :mod:`recursa.repl.source_server`) has its own
small binary format, :data:`SOURCE_NUMBER`, :data:`SOURCE_HEADER` and
:data:`SOURCE_ENTRY`, defined here so that both ends read the same structs.

Text that does not decode as UTF-8 arrives with U+FFFD in place of the bad bytes
(as the host always read it), so a lone surrogate the REPL printed never reaches
the host as an unencodable ``str``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

HEADER_BYTES = 4
#: The largest frame either side accepts; a bigger one is a protocol error.
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: Longest model spec, tool name or group id a request may carry.
MAX_NAME_CHARS = 256
#: Most prompts in one batch request.
MAX_BATCH = 100_000
#: Most tools one sub-call may name (``llm_query(..., tools=[...])``).
MAX_TOOL_NAMES = 64
#: Most entries in a Hello's ``limits``, and the longest str value one may have.
MAX_LIMITS = 64
MAX_LIMIT_CHARS = 1_000
#: The largest pid or call id a frame may carry.
MAX_ID = 2**63 - 1
#: Most citations one ``cite`` request (and one answer) may carry, the longest quote one
#: may hold, and the longest list index / dict key naming where it is.
MAX_CITATIONS = 64
MAX_QUOTE_CHARS = 4_000
MAX_ITEM_CHARS = 1_000
#: The source channel, little-endian: a request is 1 to :data:`SOURCE_BATCH`
#: ``SOURCE_NUMBER``s; a reply is a ``SOURCE_HEADER`` (entries, linked files in the pack)
#: and per number asked a ``SOURCE_ENTRY`` (number, status 0 ok / 1 refused, length of
#: the error text that follows), the descriptors of the ok ones attached in order.
SOURCE_NUMBER = struct.Struct("<I")
SOURCE_HEADER = struct.Struct("<HI")
SOURCE_ENTRY = struct.Struct("<IBH")
SOURCE_BATCH = 32
#: The image types a sub-call may carry, by the bytes they must start with (the host
#: builds a ``data:`` URL from checked bytes only: never a URL the model wrote).
IMAGE_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # and "WEBP" at byte 8
}
# A model a sub-call names is a registry name ("provider/name"), never a URL or a path
# out of a directory: no scheme, no "..", no query, fragment, userinfo or whitespace.
_MODEL_SPEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")


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
    """A duration: a finite, non-negative number."""
    value = _field(msg, name, (int, float), 0.0, what)
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        raise ProtocolError(f"{what or msg.get('op')!s:.40}: {name!r} is out of range") from None
    if not math.isfinite(number) or number < 0:
        raise ProtocolError(f"{what or msg.get('op')!s:.40}: {name!r} is out of range")
    return number


def _id(msg: dict[str, Any], name: str) -> int:
    value: int = _field(msg, name, int)
    if not 0 <= value <= MAX_ID:
        raise ProtocolError(f"{msg.get('op')!s:.40}: {name!r} is out of range")
    return value


def _limits(msg: dict[str, Any]) -> dict[str, Any]:
    """A Hello's ``limits``: a few str keys with short scalar values."""
    limits: dict[str, Any] = _field(msg, "limits", dict, {})
    if len(limits) > MAX_LIMITS:
        raise ProtocolError(f"hello: more than {MAX_LIMITS} limits")
    for key, value in limits.items():
        if not isinstance(key, str) or len(key) > MAX_NAME_CHARS:
            raise ProtocolError("hello: a limit's name must be a short str")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(f"hello: limit {key[:40]!r} must be finite")
        if isinstance(value, str):
            if len(value) > MAX_LIMIT_CHARS:
                raise ProtocolError(f"hello: limit {key[:40]!r} is too long")
        elif value is not None and not isinstance(value, bool | int | float):
            raise ProtocolError(f"hello: limit {key[:40]!r} must be a number, str or bool")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ID:
            raise ProtocolError(f"hello: limit {key[:40]!r} is out of range")
    return dict(limits)


def decode_frame(body: bytes | bytearray | str) -> Frame:
    """One frame's body (after its header) as a message; :class:`ProtocolError` if it is not
    a JSON object of a known ``op`` with fields of the right types. ``body`` may be the
    body already decoded as UTF-8 (with U+FFFD for bad bytes)."""
    try:
        msg = json.loads(body if isinstance(body, str) else body.decode("utf-8", "replace"))
    except RecursionError:
        raise ProtocolError("a frame is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(f"a frame is not JSON: {str(exc)[:200]}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a frame is not a JSON object")
    try:
        return _frame(msg)
    except ProtocolError:
        raise
    except Exception as exc:  # any other surprise in a peer's frame is a protocol error too
        raise ProtocolError(f"a frame does not decode: {type(exc).__name__}") from None


def _frame(msg: dict[str, Any]) -> Frame:
    op = msg.get("op")
    if op == "run":
        return RunCell(_field(msg, "code", str))
    if op == "reply":
        error = _field(msg, "error", str, None)
        return Reply(_id(msg, "id"), None if error is not None else msg.get("ok"), error)
    if op == "close":
        return Close()
    if op == "hello":
        return Hello(_id(msg, "pid"), _number(msg, "context_s"), _limits(msg))
    if op == "call":
        return Call(_id(msg, "id"), _field(msg, "name", str), _field(msg, "payload", dict))
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
    """``llm_query(prompt, model=None, images=None, tools=None)``; ``group`` ties it to an
    ``llm_batch(stop_when=...)`` that a :class:`Cancel` may end early; ``tools`` names host
    tools the sub-model may call (the host checks they were granted)."""

    prompt: str
    model: str | None = None
    images: tuple[ImageData, ...] = ()
    group: str | None = None
    tools: tuple[str, ...] = ()
    name: Literal["llm_query"] = "llm_query"


@dataclass(frozen=True)
class LlmBatch:
    """``llm_batch(prompts, model=None, tools=None)``: concurrent sub-calls, order kept."""

    prompts: tuple[str, ...]
    model: str | None = None
    tools: tuple[str, ...] = ()
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
    """``rlm_query(prompt, context=None, model=None, budget=None)``: a child RLM one level
    deeper, on ``model`` (a spec the user allowed) or the sub-model."""

    prompt: str
    context: Any = None
    budget: BudgetLimits | None = None
    model: str | None = None
    name: Literal["rlm_query"] = "rlm_query"


@dataclass(frozen=True)
class RlmBatch:
    """``rlm_batch(prompts, contexts=None, model=None)`` (alias ``rlm_query_batched``):
    children, concurrently."""

    prompts: tuple[str, ...]
    contexts: tuple[Any, ...] | None = None
    model: str | None = None
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


@dataclass(frozen=True)
class CitationRef:
    """One citation as the REPL sends it, untrusted: a ``quote`` to find, or ``start``/``end``
    character offsets to read back (with an optional ``quote`` they must hold), in the
    context or in its item ``item`` (a list index or a dict key). The host never trusts
    it: it reads the context itself (:mod:`recursa.citations`)."""

    quote: str | None = None
    start: int | None = None
    end: int | None = None
    item: str | int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Cite:
    """``cite(...)`` / ``FINAL(answer, cite=[...])``: evidence for this node's answer."""

    citations: tuple[CitationRef, ...]
    name: Literal["cite"] = "cite"


HostRequest = LlmQuery | LlmBatch | RlmQuery | RlmBatch | Cancel | BudgetQuery | ToolCall | Cite


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


def _tool_names(payload: dict[str, Any], what: str) -> tuple[str, ...]:
    names = _field(payload, "tools", list, [], what)
    if len(names) > MAX_TOOL_NAMES:
        raise ProtocolError(f"{what}: more than {MAX_TOOL_NAMES} tools")
    for name in names:
        if type(name) is not str or not name.isidentifier() or len(name) > MAX_NAME_CHARS:
            raise ProtocolError(f"{what}: a tool must be named by a str identifier")
    return tuple(names)


def _image(value: Any, what: str) -> ImageData:
    if (
        type(value) is not dict
        or set(value) != {"__recursa_image__", "base64"}
        or type(value["__recursa_image__"]) is not str
        or type(value["base64"]) is not str
    ):
        raise ProtocolError(f"{what}: an image must come from the context (Image objects)")
    # the type and the encoding here; the host checks the bytes' magic when it builds the
    # message (check_image), so nothing but a checked image ever reaches a provider
    return ImageData(*check_image(value["__recursa_image__"], value["base64"], what, magic=False))


def check_image(
    mime: Any, data: Any, what: str = "image", *, magic: bool = True
) -> tuple[str, str]:
    """``(mime, base64)`` of an image a sub-call may carry, re-encoded from its checked
    bytes: ``mime`` from :data:`IMAGE_MAGIC`, ``data`` valid base64 of bytes that start
    with that type's magic (unless ``magic`` is False). :class:`ProtocolError` for anything
    else (a URL, text, a type the bytes are not)."""
    if type(mime) is not str or mime not in IMAGE_MAGIC:
        raise ProtocolError(
            f"{what}: an image must be one of {', '.join(IMAGE_MAGIC)}, not {str(mime)[:40]!r}"
        )
    if type(data) is not str or not data.isascii():
        raise ProtocolError(f"{what}: an image's data must be base64 text")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{what}: an image's data is not valid base64") from None
    webp = mime != "image/webp" or raw[8:12] == b"WEBP"
    if magic and (not raw.startswith(IMAGE_MAGIC[mime]) or not webp):
        raise ProtocolError(f"{what}: the image's bytes are not {mime}")
    return mime, base64.b64encode(raw).decode("ascii")


def _model_field(payload: dict[str, Any], what: str) -> str | None:
    spec = _name_field(payload, "model", what)
    if spec is not None and (
        not _MODEL_SPEC.fullmatch(spec) or "//" in spec or ".." in spec.split("/")
    ):
        raise ProtocolError(f"{what}: {spec[:60]!r} is not a model name (provider/name)")
    return spec


def _budget(value: Any, what: str) -> BudgetLimits | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what}: budget must be a Budget(...) or a dict")
    unknown = set(value) - {"usd", "tokens", "seconds", "calls"}
    if unknown:
        raise ProtocolError(f"{what}: unknown budget field {sorted(map(repr, unknown))[0]:.40}")
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
    unknown or a field has the wrong type or size (never any other exception)."""
    try:
        return _request(name, payload)
    except ProtocolError:
        raise
    except Exception as exc:  # an ill-typed value deeper down (in-process calls skip JSON)
        raise ProtocolError(f"a host request does not decode: {type(exc).__name__}") from None


def _request(name: str, payload: dict[str, Any]) -> HostRequest:
    what = name[:40] if type(name) is str else type(name).__name__
    if not isinstance(name, str):
        raise ProtocolError(f"a host function name must be str, not {type(name).__name__}")
    if not isinstance(payload, dict):
        raise ProtocolError(f"{what}: the payload must be a dict, not {type(payload).__name__}")
    if name == "llm_query":
        images = _field(payload, "images", list, [], what)
        return LlmQuery(
            prompt=_field(payload, "prompt", str, what=what),
            model=_model_field(payload, what),
            images=tuple(_image(i, what) for i in images),
            group=_name_field(payload, "group", what),
            tools=_tool_names(payload, what),
        )
    if name == "llm_batch":
        return LlmBatch(
            _prompts(payload, what), _model_field(payload, what), _tool_names(payload, what)
        )
    if name == "rlm_query":
        return RlmQuery(
            prompt=_field(payload, "prompt", str, what=what),
            context=payload.get("context"),
            budget=_budget(payload.get("budget"), what),
            model=_model_field(payload, what),
        )
    if name == "rlm_batch":
        prompts = _prompts(payload, what)
        contexts = _field(payload, "contexts", list, None, what)
        if contexts is not None and len(contexts) != len(prompts):
            raise ProtocolError(f"{what}: prompts and contexts differ in length")
        return RlmBatch(
            prompts, None if contexts is None else tuple(contexts), _model_field(payload, what)
        )
    if name == "cancel":
        return Cancel(_name_field(payload, "group", what, required=True))
    if name == "budget":
        return BudgetQuery()
    if name == "cite":
        return Cite(_citations(payload, what))
    if name == "tool":
        return ToolCall(
            tool=_name_field(payload, "name", what, required=True),
            args=tuple(_field(payload, "args", list, [], what)),
            kwargs=_field(payload, "kwargs", dict, {}, what),
        )
    raise ProtocolError(f"unknown host function {what!r}")


def _citations(payload: dict[str, Any], what: str) -> tuple[CitationRef, ...]:
    """A ``cite`` request's citations: at most :data:`MAX_CITATIONS`, each a dict with a
    str ``quote`` (at most :data:`MAX_QUOTE_CHARS`) and/or int ``start`` and ``end``, and
    an optional ``item`` (an int index or a str key)."""
    refs = _field(payload, "citations", list, what=what)
    if len(refs) > MAX_CITATIONS:
        raise ProtocolError(f"{what}: more than {MAX_CITATIONS} citations")
    out: list[CitationRef] = []
    for i, ref in enumerate(refs):
        label = f"{what}: citation {i}"
        if type(ref) is not dict:
            raise ProtocolError(f"{label} must be a dict, not {type(ref).__name__}")
        unknown = set(ref) - {"quote", "start", "end", "item"}
        if unknown:
            raise ProtocolError(f"{label}: unknown field {sorted(map(repr, unknown))[0]:.40}")
        quote = _field(ref, "quote", str, None, label)
        if quote is not None and len(quote) > MAX_QUOTE_CHARS:
            raise ProtocolError(f"{label}: a quote is over {MAX_QUOTE_CHARS:,} characters")
        start, end = _field(ref, "start", int, None, label), _field(ref, "end", int, None, label)
        if (start is None) != (end is None):
            raise ProtocolError(f"{label}: give both start and end, or neither")
        if quote is None and start is None:
            raise ProtocolError(f"{label}: give a quote or (start, end)")
        for value in (start, end):
            if value is not None and abs(value) > MAX_ID:
                raise ProtocolError(f"{label}: an offset is out of range")
        item = _field(ref, "item", (str, int), None, label)
        for value in (quote, start, end, item):  # exact types: no subclass's methods run
            if value is not None and type(value) not in (str, int):
                raise ProtocolError(f"{label}: {type(value).__name__} is not a plain str or int")
        if isinstance(item, str) and len(item) > MAX_ITEM_CHARS:
            raise ProtocolError(f"{label}: an item key is over {MAX_ITEM_CHARS} characters")
        if isinstance(item, int) and abs(item) > MAX_ID:
            raise ProtocolError(f"{label}: an item index is out of range")
        out.append(CitationRef(quote, start, end, item))
    return tuple(out)


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
        if request.tools:
            payload["tools"] = list(request.tools)
    elif isinstance(request, LlmBatch):
        payload = {"prompts": list(request.prompts), "model": request.model}
        if request.tools:
            payload["tools"] = list(request.tools)
    elif isinstance(request, RlmQuery):
        budget = request.budget
        payload = {
            "prompt": request.prompt,
            "context": request.context,
            "budget": None if budget is None else dict(budget.__dict__),
            "model": request.model,
        }
    elif isinstance(request, RlmBatch):
        contexts = None if request.contexts is None else list(request.contexts)
        payload = {"prompts": list(request.prompts), "contexts": contexts, "model": request.model}
    elif isinstance(request, Cancel):
        payload = {"group": request.group}
    elif isinstance(request, BudgetQuery):
        payload = {}
    elif isinstance(request, ToolCall):
        payload = {"name": request.tool, "args": list(request.args), "kwargs": request.kwargs}
    elif isinstance(request, Cite):
        payload = {"citations": [c.to_json() for c in request.citations]}
    else:
        raise TypeError(f"not a host request: {request!r:.80}")
    return request.name, payload
