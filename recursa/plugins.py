"""recursa's plugin entry points (providers, sandboxes), read once per process.

Scanning the installed distributions for entry points costs 10-70 ms each time;
a run needs the sandbox group and the provider group at start-up (and every
model it resolves asks again), so one scan serves every group. A plugin
installed while a process runs is seen by the next process.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Protocol, cast


class _Selectable(Protocol):
    """What ``entry_points()`` returns (``SelectableGroups`` before 3.12)."""

    def select(self, *, group: str) -> Iterable[EntryPoint]: ...


@functools.cache
def _scan() -> _Selectable:
    return cast(_Selectable, entry_points())


def registered(group: str) -> dict[str, EntryPoint]:
    """Name -> entry point of ``group`` (loading one is left to the caller)."""
    return {ep.name: ep for ep in _scan().select(group=group)}
