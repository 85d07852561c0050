"""Helpers shared by the tests. Scripting a run (``router``, ``http_router``,
``is_root_turn``, ...) is public test support: see :mod:`recursa.testing`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recursa.models.base import installed


def run_cli(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m recursa ARGS`` as a real process, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "recursa", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
    )


def requires(*modules: str) -> pytest.MarkDecorator:
    """Skip where an optional package is not installed (``pip install -e ".[dev]"`` alone):
    CI and the README's test command install them all, so there these tests run."""
    missing = [m for m in modules if not installed(m)]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")
