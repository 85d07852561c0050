"""Fixtures of the CLI replay tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def env(clean_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """No provider key, a config file of the test's own, and no runs directory of the user's."""
    return {
        **clean_env,
        "RECURSA_CONFIG": str(tmp_path / "config.toml"),
        "RECURSA_RUNS_DIR": str(tmp_path / "runs"),
    }
