"""User functions exposed in the REPL: they run in the host, the sandbox calls them.

A tool may hold credentials the sandbox must never see, so it is never sent
into the sandbox: the REPL gets a stub of the same name that asks the host to
run it. Arguments and results cross as JSON; an exception in the tool is
raised in the model's cell with the tool's message.

A tool may return more than JSON's types: :func:`jsonable` converts its result on
the host, recursively, before it crosses. Dataclasses become dicts, pydantic models
``model_dump(mode="json")``, tuples/lists/sets/frozensets lists (a set sorted when
its items sort), ``date``/``datetime``/``time`` ISO 8601 strings, ``timedelta``
seconds (a float), ``Decimal`` a string (exact: ``str(Decimal("0.10"))`` is
``"0.10"``; a float would round), an ``Enum`` its value, a ``Path`` its string,
``UUID`` its string; mapping keys become strings where JSON would (ints, floats,
bools, None) and must be strings or those otherwise. ``bytes`` are refused, as is
anything else, with an error naming the type and where it was (decode bytes in the
tool, or base64 them, and say which in its docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import decimal
import enum
import importlib
import inspect
import json
import math
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

from .errors import ConfigError
from .repl.base import ToolSpec
from .repl.runtime import CORE_NAMES, SUBCALL_NAMES

Tool = Callable[..., Any]
RESERVED = frozenset(CORE_NAMES) | frozenset(SUBCALL_NAMES) | {"SubcallError", "Image", "Budget"}


class ToolError(Exception):
    """A tool failed or was misused; the message is what the model sees."""


class ToolSet:
    """Named host functions, validated once, with the specs the REPL and prompt need."""

    def __init__(
        self, tools: Mapping[str, Tool] | None = None, *, sub_call: ToolSet | None = None
    ) -> None:
        """``sub_call`` are the tools this REPL's ``llm_query(..., tools=[...])`` may grant
        its sub-model: they run on the host for the sub-model, and are never callables in
        the REPL itself (see :mod:`recursa.subcall_tools`)."""
        self._sub_call = sub_call
        self.tools: dict[str, Tool] = {}
        for name, fn in (tools or {}).items():
            if not name.isidentifier() or name.startswith("_"):
                raise ConfigError(f"tool name {name!r} is not a public Python identifier")
            if name in RESERVED:
                raise ConfigError(f"tool name {name!r} is reserved by the REPL")
            if not callable(fn):
                raise ConfigError(f"tool {name!r} is not callable")
            self.tools[name] = fn

    def __bool__(self) -> bool:
        """Whether there is any tool, for the REPL or for its sub-calls."""
        return bool(self.tools) or bool(self._sub_call)

    @property
    def sub_call(self) -> ToolSet:
        """The tools this REPL's sub-calls may be granted (empty when none are)."""
        return self._sub_call if self._sub_call is not None else ToolSet()

    def specs(self) -> list[ToolSpec]:
        return [_spec(name, fn) for name, fn in self.tools.items()]

    async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        fn = self.tools.get(name)
        if fn is None:
            raise ToolError(f"no tool named {name!r}")
        _require_json(f"arguments of {name}()", [args, kwargs])
        try:
            if inspect.iscoroutinefunction(fn):
                result = await fn(*args, **kwargs)
            else:
                result = await asyncio.to_thread(fn, *args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            raise ToolError(f"{name}() raised {type(exc).__name__}: {exc}") from exc
        try:
            result = jsonable(result)
        except TypeError as exc:
            raise ToolError(f"the result of {name}() cannot cross as JSON: {exc}") from None
        _require_json(f"the result of {name}()", result)
        return result


def _require_json(what: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ToolError(f"{what} must be JSON-serialisable: {exc}") from None


MAX_DEPTH = 200


def jsonable(value: Any, *, where: str = "result", _depth: int = 0) -> Any:
    """``value`` as JSON's types (see the module docstring); ``TypeError`` names what
    cannot be converted and where it is (``result[0]['when']``)."""
    if _depth > MAX_DEPTH:
        raise TypeError(f"{where} is nested more than {MAX_DEPTH} levels deep (a cycle?)")
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, enum.Enum):  # an IntEnum/StrEnum: its plain value
            return jsonable(value.value, where=where, _depth=_depth + 1)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}, which JSON cannot hold")
        return value
    deeper = _depth + 1
    if isinstance(value, enum.Enum):
        return jsonable(value.value, where=where, _depth=deeper)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            text = _key(key, where)
            out[text] = jsonable(item, where=f"{where}[{key!r}]", _depth=deeper)
        return out
    if isinstance(value, list | tuple):
        return [jsonable(v, where=f"{where}[{i}]", _depth=deeper) for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = list(value)
        with contextlib.suppress(TypeError):  # mixed types keep iteration order
            items.sort()
        return [jsonable(v, where=f"{where}[{i}]", _depth=deeper) for i, v in enumerate(items)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return jsonable(fields, where=where, _depth=deeper)
    if _is_pydantic_model(value):
        return jsonable(value.model_dump(mode="json"), where=where, _depth=deeper)
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise TypeError(f"{where} is Decimal({str(value)!r}), which JSON cannot hold")
        return str(value)
    if isinstance(value, PurePath | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(
            f"{where} is {type(value).__name__}, which JSON cannot hold: decode it in the "
            "tool (or base64 it) and return a str"
        )
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which JSON "
        "cannot hold: return dicts, lists, str, int, float, bool or None (or a dataclass, "
        "pydantic model, tuple, set, date, Decimal, Enum or Path)"
    )


def _key(key: Any, where: str) -> str:
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    if isinstance(key, datetime.date | datetime.time | decimal.Decimal | PurePath | uuid.UUID):
        return str(jsonable(key, where=where))
    raise TypeError(f"{where} has a key of type {type(key).__name__}; JSON keys are strings")


def _spec(name: str, fn: Tool) -> ToolSpec:
    try:
        signature = str(inspect.signature(fn, eval_str=True))
    except (TypeError, ValueError, NameError):
        try:
            signature = str(inspect.signature(fn))
        except (TypeError, ValueError):
            signature = "(*args, **kwargs)"
    return ToolSpec(name, signature, inspect.getdoc(fn) or "")


def load_tools(target: str, *, flag: str = "--tools") -> dict[str, Tool]:
    """Load ``module:attr`` naming a dict of tools (for ``--tools``, ``--sub-call-tools``)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{flag} wants module:attr (a dict of functions), got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{flag}: cannot import {module_name!r}: {exc}") from None
    value = getattr(module, attr, None)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{flag}: {target} is not a dict of functions")
    return dict(value)


def _is_pydantic_model(value: Any) -> bool:
    """A pydantic model instance, without importing pydantic for tools that never use it
    (an instance of one means pydantic is imported already)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)
