"""Prices come from genai-prices (pydantic's maintained table), recursa's own small
table only backs it up for names it lacks, and never by a prefix that belongs to a
pricier model; the user's prices win over both; a self-hosted server is unpriced
unless the user prices it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from recursa import RLM
from recursa.models import pricing
from recursa.models.anthropic import anthropic_cost
from recursa.models.base import BaseModel, Completion, Message
from recursa.testing import ScriptedServer, http_router

genai_prices = pytest.importorskip("genai_prices")


def listed(provider_id: str, name: str) -> tuple[float, float]:
    """genai-prices' own input and output price of a model, per million tokens."""
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    _, model = snapshot.find_provider_model(name, None, provider_id, None)
    prices = model.get_prices(datetime.now(tz=UTC))
    return float(prices.input_mtok), float(prices.output_mtok)


@pytest.fixture
def self_hosted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local servers are what they are here: self-hosted, not a provider's stand-in."""
    monkeypatch.delenv("RECURSA_LIST_PRICED_URLS", raising=False)


@pytest.fixture
def without_genai_prices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if genai-prices were not installed: only the fallback table prices."""
    pricing._price.cache_clear()
    pricing._known_endpoint.cache_clear()
    monkeypatch.setattr(pricing, "_genai_snapshot", lambda: None)
    yield
    pricing._price.cache_clear()
    pricing._known_endpoint.cache_clear()


@pytest.mark.parametrize(
    ("name", "cheaper"),
    [("gpt-5-pro", "gpt-5"), ("o3-pro", "o3"), ("o3-mini", "o3"), ("o3-deep-research", "o3")],
)
def test_models_named_like_others_have_their_own_price(name: str, cheaper: str) -> None:
    price = pricing.lookup(f"openai/{name}")
    assert price is not None
    assert (price.input, price.output) == listed("openai", name)
    other = pricing.lookup(f"openai/{cheaper}")
    assert other is not None and (price.input, price.output) != (other.input, other.output)


def test_gpt_5_pro_costs_what_its_list_price_says() -> None:
    pro = pricing.cost("openai/gpt-5-pro", 1_000_000, 1_000_000)
    base = pricing.cost("openai/gpt-5", 1_000_000, 1_000_000)
    assert pro is not None and base is not None and pro > 10 * base


def test_dated_snapshots_resolve_to_their_model() -> None:
    assert pricing.lookup("openai/gpt-5-mini-2025-08-07") == pricing.lookup("openai/gpt-5-mini")
    assert pricing.lookup("openai/gpt-5-2025-08-07") == pricing.lookup("openai/gpt-5")
    dated = pricing.lookup("anthropic/claude-sonnet-4-5-20250929")
    assert dated == pricing.lookup("anthropic/claude-sonnet-4-5")
    assert dated is not None and dated.cache_write is not None  # cache writes are priced


def test_cached_and_cache_write_prices_come_from_the_table() -> None:
    gpt = pricing.lookup("openai/gpt-5")
    assert gpt is not None and gpt.cached < gpt.input
    sonnet = pricing.lookup("anthropic/claude-sonnet-4-5")
    assert sonnet is not None and sonnet.cache_write is not None
    assert sonnet.cache_write_1h is not None
    cost = anthropic_cost(
        "anthropic/claude-sonnet-4-5",
        uncached=0,
        cache_write=1_000_000,
        cache_write_1h=1_000_000,
        cache_read=1_000_000,
        output=0,
    )
    assert cost == pytest.approx(sonnet.cache_write + sonnet.cache_write_1h + sonnet.cached)


def test_the_fallback_never_prices_a_model_by_a_cheaper_ones_prefix(
    without_genai_prices: None,
) -> None:
    assert pricing.lookup("openai/gpt-5") == pricing.PRICES["gpt-5"]
    assert pricing.lookup("openai/gpt-5-2025-08-07") == pricing.PRICES["gpt-5"]
    assert pricing.lookup("openai/gpt-5-mini-latest") == pricing.PRICES["gpt-5-mini"]
    assert pricing.lookup("anthropic/claude-opus-4-1-20250805") == pricing.PRICES["claude-opus-4-1"]
    for name in ("gpt-5-pro", "o3-pro", "o3-mini", "o3-deep-research", "gpt-5-pro-2025-10-06"):
        assert pricing.lookup(f"openai/{name}") is None, name
    # the provider's own URL is told from a custom one without genai-prices too
    assert pricing.lookup("openai/gpt-5", base_url="https://api.openai.com/v1") is not None
    assert pricing.lookup("openai/gpt-5", base_url="https://gateway.example.com/v1") is None


def test_the_users_price_wins_everywhere() -> None:
    mine = {"openai/gpt-5-pro": (1.0, 2.0), "openai/gpt-5": (0.0, 0.0)}
    assert pricing.lookup("openai/gpt-5-pro", mine) == pricing.Price(1.0, 2.0, 1.0)
    assert pricing.cost("openai/gpt-5", 10, 10, overrides=mine) == 0.0
    local = "http://localhost:8000/v1"
    assert pricing.lookup("openai/gpt-5-pro", mine, base_url=local) == pricing.Price(1.0, 2.0, 1.0)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8000/v1", "http://127.0.0.1:8000/v1", "http://10.0.0.5/v1",
     "https://llm.internal.example.com/v1"],
)  # fmt: skip
def test_a_custom_base_url_is_unpriced(url: str, self_hosted: None) -> None:
    assert pricing.custom_endpoint(url)
    assert pricing.lookup("openai/gpt-5", base_url=url) is None
    assert pricing.cost("openai/gpt-5", 10, 10, base_url=url) is None


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        ("openai/gpt-5", "https://api.openai.com/v1"),
        ("openai/gpt-5", "https://api.openai.com/v1/"),
        ("anthropic/claude-sonnet-4-5", "https://api.anthropic.com"),
        ("gemini/gemini-2.5-flash", "https://generativelanguage.googleapis.com"),
        ("openrouter/openai/gpt-5", "https://openrouter.ai/api/v1"),
    ],
)
def test_the_providers_own_url_is_priced(spec: str, url: str, self_hosted: None) -> None:
    assert not pricing.custom_endpoint(url)
    assert pricing.lookup(spec, base_url=url) == pricing.lookup(spec) is not None


def test_a_hosted_openai_compatible_provider_is_priced_as_itself(self_hosted: None) -> None:
    price = pricing.lookup(
        "openai/llama-3.3-70b-versatile", base_url="https://api.groq.com/openai/v1"
    )
    assert price is not None
    assert (price.input, price.output) == listed("groq", "llama-3.3-70b-versatile")


class _Reporting(BaseModel):
    """A backend at ``base_url`` that reports its own cost (as OpenRouter and LiteLLM do)."""

    provider = "openai"

    def __init__(self, base_url: str | None) -> None:
        super().__init__("gpt-5")
        self.base_url = base_url

    async def _request(
        self, messages: object, max_tokens: int | None, *args: object, **kw: object
    ) -> Completion:
        return Completion("ok", self.spec, 1000, 10, cost_usd=0.5)


async def test_a_custom_endpoint_drops_costs_the_backend_reckoned(self_hosted: None) -> None:
    hi: list[Message] = [{"role": "user", "content": "hi"}]
    assert (await _Reporting("http://localhost:8000/v1").complete(hi)).cost_usd is None
    assert (await _Reporting(None).complete(hi)).cost_usd == 0.5
    assert (await _Reporting("https://api.openai.com/v1").complete(hi)).cost_usd == 0.5


def test_a_self_hosted_server_is_unpriced_unless_the_user_prices_it(self_hosted: None) -> None:
    with ScriptedServer(http_router(["```repl\nFINAL('x')\n```"] * 2)) as server:
        plain = RLM("openai/gpt-5", base_url=server.url, sandbox="inprocess")
        assert plain.completion("q", context="c").usage.cost_usd is None
        priced = plain.with_settings(prices={"openai/gpt-5": (1.0, 2.0)})
        usage = priced.completion("q", context="c").usage
    assert usage.cost_usd == pytest.approx((usage.input_tokens + 2 * usage.output_tokens) / 1e6)


def test_import_recursa_does_not_import_genai_prices() -> None:
    code = "import sys, recursa; print('genai_prices' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
