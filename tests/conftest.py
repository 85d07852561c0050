from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OPENROUTER_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_API_VERSION",
    "ANTHROPIC_BASE_URL",
    "RECURSA_MODEL",
)


@pytest.fixture(autouse=True)
def _no_real_providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reaches a real provider by accident: keys and endpoints are removed."""
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for CLI subprocesses, without provider keys."""
    return {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
