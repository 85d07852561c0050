"""Sandboxes: where model-written code runs.

``make_sandbox(spec)`` builds one from a name (``sandbox_names()`` lists them) or
from a zero-argument factory that returns a :class:`Sandbox`. Names come from one
registry, the ``recursa.sandboxes`` entry-point group, which the built-ins use too
(pyproject.toml)::

    [project.entry-points."recursa.sandboxes"]
    subprocess = "recursa.repl.subprocess:SubprocessSandbox"   # the default
    inprocess = "recursa.repl.inprocess:InProcessSandbox"
    docker = "recursa.repl.docker:DockerSandbox"

How to add a sandbox
--------------------
1. Write one module with a class (or function) that takes no required arguments
   and returns an object with the :class:`Sandbox` methods: ``isolation`` (say
   honestly what it protects against), ``start(config)``, ``run(code, timeout=)``
   and ``close()``. Its REPL is :class:`recursa.repl.runtime.Repl`; every call the
   REPL makes to the host goes through
   :func:`recursa.repl.protocol.decode_request` before ``config.host`` sees it.
   A backend that runs ``worker.py`` in another process (a VM, a remote box)
   subclasses :class:`recursa.repl.process.WorkerSandbox` and uses the rest of
   :mod:`recursa.repl.process` (the private directory with the worker's code,
   limits, reaping, hello) and :class:`recursa.repl.channel.WorkerLink`; it never
   imports another backend's module.
2. Register it under a name in the package that ships it::

       [project.entry-points."recursa.sandboxes"]
       firecracker = "my_package.sandbox:FirecrackerSandbox"

   and ``RLM(..., sandbox="firecracker")`` or ``--sandbox firecracker`` picks it.
   Without packaging, pass the factory itself: ``make_sandbox(FirecrackerSandbox)``
   (or ``functools.partial(FirecrackerSandbox, vcpus=2)``).
3. Run the contract suite (``tests/repl/test_contract.py``) against it: it covers
   every registered name.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint

from ..errors import ConfigError
from ..plugins import registered
from .base import CellResult, HostCallback, Sandbox, SandboxConfig, ToolSpec
from .protocol import HostRequest

__all__ = [
    "ENTRY_POINT_GROUP",
    "CellResult",
    "HostCallback",
    "HostRequest",
    "Sandbox",
    "SandboxConfig",
    "SandboxFactory",
    "ToolSpec",
    "make_sandbox",
    "sandbox_factory",
    "sandbox_names",
]

ENTRY_POINT_GROUP = "recursa.sandboxes"

#: What builds a sandbox: a class or function called with no arguments.
SandboxFactory = Callable[[], Sandbox]


def _registered() -> dict[str, EntryPoint]:
    """Name -> entry point of the sandboxes (one scan per process: :mod:`recursa.plugins`)."""
    return registered(ENTRY_POINT_GROUP)


def sandbox_names() -> list[str]:
    """The registered sandbox names, sorted (factories are imported only when used)."""
    return sorted(_registered())


def sandbox_factory(name_or_factory: str | SandboxFactory) -> SandboxFactory:
    """The factory registered under a name, or the factory given; ConfigError for an
    unknown name (the message lists the known ones) or one that cannot be loaded."""
    if not isinstance(name_or_factory, str):
        if not callable(name_or_factory):
            raise ConfigError(
                f"a sandbox is a name or a zero-argument factory, not {name_or_factory!r:.80}"
            )
        return name_or_factory
    name = name_or_factory
    ep = _registered().get(name)
    if ep is not None:
        try:
            factory: SandboxFactory = ep.load()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"sandbox {name!r} cannot be loaded ({exc})") from None
        return factory
    known = ", ".join(sandbox_names()) or "none"
    raise ConfigError(f"unknown sandbox {name!r} (choose one of: {known})")


def make_sandbox(spec: str | SandboxFactory) -> Sandbox:
    """A new, unstarted sandbox: ``spec`` is a registered name or a zero-argument factory."""
    sandbox = sandbox_factory(spec)()
    missing = [m for m in ("start", "run", "close") if not callable(getattr(sandbox, m, None))]
    if missing:
        raise ConfigError(
            f"the sandbox factory {spec!r:.80} returned {type(sandbox).__name__}, which has no "
            f"{', '.join(missing)}: not a Sandbox"
        )
    return sandbox
