"""Tools for the CLI's --tools test: a value only the host process knows."""

from __future__ import annotations

import os


def host_secret() -> str:
    """Return the host's secret (read from the host environment)."""
    return os.environ.get("RECURSA_TEST_HOST_SECRET", "missing")


TOOLS = {"host_secret": host_secret}
