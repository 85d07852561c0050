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


#: The local test servers play the providers' own APIs, so the models they serve are
#: priced at list prices, in this process and in CLI subprocesses (a test of how a
#: self-hosted server is priced removes it).
LOCAL_SERVERS = r"http://127\.0\.0\.1:"


@pytest.fixture(autouse=True)
def _local_servers_stand_in_for_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECURSA_LIST_PRICED_URLS", LOCAL_SERVERS)


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for CLI subprocesses, without provider keys."""
    return {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
