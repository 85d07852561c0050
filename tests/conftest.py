from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from recursa.config import KEYS as CONFIG_KEYS
from recursa.config import env_name

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


@pytest.fixture(autouse=True, scope="session")
def _no_user_config_or_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads the user's config file, its RECURSA_<KEY> defaults, or writes its
    runs log: both point into a temporary folder, here and in CLI subprocesses."""
    home = tmp_path_factory.mktemp("recursa-user")
    with pytest.MonkeyPatch.context() as patch:
        for key in CONFIG_KEYS:
            patch.delenv(env_name(key), raising=False)
        patch.setenv("RECURSA_CONFIG", str(home / "config.toml"))
        patch.setenv("RECURSA_RUNS_DIR", str(home / "runs"))
        yield


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for CLI subprocesses, without provider keys."""
    return {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
