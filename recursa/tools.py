"""User functions exposed in the REPL: they run in the host, the sandbox calls them.

A tool may hold credentials the sandbox must never see, so it is never sent
into the sandbox: the REPL gets a stub of the same name that asks the host to
run it. Arguments and results cross as JSON; an exception in the tool is
raised in the model's cell with the tool's message.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
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

    def __init__(self, tools: Mapping[str, Tool] | None = None) -> None:
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
        return bool(self.tools)

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
        _require_json(f"the result of {name}()", result)
        return result


def _require_json(what: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ToolError(f"{what} must be JSON-serialisable: {exc}") from None


def _spec(name: str, fn: Tool) -> ToolSpec:
    try:
        signature = str(inspect.signature(fn, eval_str=True))
    except (TypeError, ValueError, NameError):
        try:
            signature = str(inspect.signature(fn))
        except (TypeError, ValueError):
            signature = "(*args, **kwargs)"
    return ToolSpec(name, signature, inspect.getdoc(fn) or "")


def load_tools(target: str) -> dict[str, Tool]:
    """Load ``module:attr`` naming a dict of tools (for ``--tools``)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--tools wants module:attr (a dict of functions), got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--tools: cannot import {module_name!r}: {exc}") from None
    value = getattr(module, attr, None)
    if not isinstance(value, Mapping):
        raise ConfigError(f"--tools: {target} is not a dict of functions")
    return dict(value)
