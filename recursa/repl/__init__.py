"""Sandboxes: where model-written code runs. ``make_sandbox(name)`` picks one by name."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from ..errors import ConfigError
from .base import CellResult, HostCallback, Sandbox, SandboxConfig, ToolSpec

__all__ = [
    "SANDBOXES",
    "CellResult",
    "HostCallback",
    "Sandbox",
    "SandboxConfig",
    "ToolSpec",
    "make_sandbox",
]

#: name -> "module:Class", imported only when chosen.
SANDBOXES: dict[str, str] = {
    "subprocess": "recursa.repl.subprocess:SubprocessSandbox",
    "inprocess": "recursa.repl.inprocess:InProcessSandbox",
    "docker": "recursa.repl.docker:DockerSandbox",
}


def sandbox_factory(name: str) -> Callable[[], Sandbox]:
    try:
        target = SANDBOXES[name]
    except KeyError:
        known = ", ".join(SANDBOXES)
        raise ConfigError(f"unknown sandbox {name!r} (choose one of: {known})") from None
    module, _, attr = target.partition(":")
    factory: Callable[[], Sandbox] = getattr(import_module(module), attr)
    return factory


def make_sandbox(name: str) -> Sandbox:
    return sandbox_factory(name)()
