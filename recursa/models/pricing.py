"""Prices in USD per million tokens, for cost accounting.

Where a price comes from, first match wins:

1. the user's (``RLM(prices=...)``, ``--price MODEL=IN,OUT``), by exact spec;
2. `genai-prices <https://github.com/pydantic/genai-prices>`_, pydantic's maintained
   table of list prices (imported on the first lookup, never at ``import recursa``);
3. the small table below, for names genai-prices lacks: by exact name, or by a name
   that differs only by a snapshot suffix (``-2025-08-07``, ``-20250929``,
   ``-latest``), never by any other prefix (``gpt-5-pro`` is not ``gpt-5``).

A model served from a base URL that is not its provider's own (a self-hosted vLLM,
llama.cpp or Ollama server, a proxy) is *unpriced* unless the user prices it: what
it costs is the user's business, not a list price. A URL genai-prices knows as a
provider's (``api.openai.com``, ``api.groq.com``, ``openrouter.ai``...) is priced
as that provider's model. ``cached`` is the price of input tokens served from the
provider's prompt cache; cached tokens are counted inside ``input_tokens``.
Anthropic's cache writes have prices of their own (``cache_write``,
``cache_write_1h``). An unpriced model's cost is ``None``, never a silent zero.
Prices are standard-tier list prices for prompts under 200K tokens.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: User prices: ``{"provider/name": (input, output)}`` in USD per million tokens
#: (``RLM(prices=...)``, ``--price``). They win over every table.
Prices = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached: float
    #: cache writes (Anthropic's 5-minute cache), where the provider bills them apart
    cache_write: float | None = None
    #: cache writes to Anthropic's 1-hour cache
    cache_write_1h: float | None = None


#: The fallback for names genai-prices lacks (see the module's docstring).
PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5.1": Price(1.25, 10.00, 0.125),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o3": Price(2.00, 8.00, 0.50),
    "o4-mini": Price(1.10, 4.40, 0.275),
    # Anthropic (cache reads at 0.1x input, writes at 1.25x for 5 minutes, 2x for 1 hour)
    "claude-opus-4-1": Price(15.00, 75.00, 1.50, 18.75, 30.00),
    "claude-opus-4": Price(15.00, 75.00, 1.50, 18.75, 30.00),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30, 3.75, 6.00),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30, 3.75, 6.00),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10, 1.25, 2.00),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08, 1.00, 1.60),
    # Google Gemini
    "gemini-2.5-pro": Price(1.25, 10.00, 0.31),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.075),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.025),
}

# Providers whose calls cost nothing: embedded models and the scripted test model.
FREE_PROVIDERS = frozenset({"local", "scripted"})

#: recursa's provider names to genai-prices' provider ids.
GENAI_PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "openrouter": "openrouter",
    "azure": "azure",
    "litellm": "litellm",
}

#: The endpoints of the providers :data:`PRICES` covers, for the fallback (and for
#: telling a provider's own URL from a custom one when genai-prices is missing).
OWN_ENDPOINTS: dict[str, str] = {
    "openai": r"https://api\.openai\.com",
    "anthropic": r"https://api\.anthropic\.com",
    "google": r"https://(.*\.)?googleapis\.com",
    "openrouter": r"https://(api\.)?openrouter\.ai",
    "azure": r"https://[^/]+\.(openai\.azure\.com|cognitiveservices\.azure\.com)",
}

# The suffixes a provider gives a dated or moving snapshot of a model it lists.
_SNAPSHOT = r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$"


def lookup(
    spec: str, overrides: Prices | None = None, *, base_url: str | None = None
) -> Price | None:
    """The price of ``provider/name`` served at ``base_url`` (``None``: the provider's
    default endpoint): the user's (``overrides``, exact spec; cached input at the input
    price), else genai-prices', else the fallback table's; ``None`` when unpriced."""
    if overrides and spec in overrides:
        given_in, given_out = overrides[spec]
        return Price(float(given_in), float(given_out), float(given_in))
    provider, _, name = spec.partition("/")
    if provider in FREE_PROVIDERS:
        return Price(0.0, 0.0, 0.0)
    return _listed(provider, name.lower(), base_url.rstrip("/") if base_url else None)


def lookup_for(model: object, overrides: Prices | None = None) -> Price | None:
    """:func:`lookup` for a model object: its spec, at its endpoint (see :func:`endpoint`)."""
    return lookup(str(getattr(model, "spec", "")), overrides, base_url=endpoint(model))


def endpoint(model: object) -> str | None:
    """The base URL ``model`` (or the model a wrapper wraps) is served from, from its
    ``cache_identity``; ``None`` for the provider's default endpoint."""
    current: Any = model
    for _ in range(16):
        identity = getattr(current, "cache_identity", None)
        if isinstance(identity, dict):
            base_url = identity.get("base_url")
            return base_url if isinstance(base_url, str) and base_url else None
        current = getattr(current, "inner", None)
        if current is None:
            break
    return None


#: Base URLs (regular expressions matched at the start) that serve each provider's
#: models at its list prices although they are not its API: a gateway that passes calls
#: through unchanged, or a test server standing in for the provider. Empty by default;
#: ``$RECURSA_LIST_PRICED_URLS`` (whitespace-separated) adds to it.
LIST_PRICED_URLS: list[str] = []


def custom_endpoint(base_url: str | None) -> bool:
    """Whether ``base_url`` is no provider's own API (a self-hosted server, a proxy):
    then no table prices what it serves."""
    if base_url is None or _list_priced(base_url):
        return False
    return _known_endpoint(base_url.rstrip("/")) is None


def _list_priced(base_url: str) -> bool:
    patterns = [*LIST_PRICED_URLS, *os.environ.get("RECURSA_LIST_PRICED_URLS", "").split()]
    return any(re.match(pattern, base_url) for pattern in patterns)


def _listed(provider: str, name: str, base_url: str | None) -> Price | None:
    if base_url is None or _list_priced(base_url):
        # a provider plugin named as genai-prices names a provider ("mistral") is its
        provider_id: str | None = GENAI_PROVIDERS.get(provider, provider)
    else:
        provider_id = _known_endpoint(base_url)
    if provider_id is None:
        return None  # a self-hosted server or a proxy: only the user can price it
    return _price(provider_id, name)


@functools.lru_cache(maxsize=1024)
def _price(provider_id: str, name: str) -> Price | None:
    """genai-prices' price of ``name`` at ``provider_id``, else the fallback table's."""
    snapshot = _genai_snapshot()
    if snapshot is not None:
        price = _genai_price(snapshot, provider_id, name)
        if price is not None:
            return price
    if provider_id not in OWN_ENDPOINTS and provider_id != "litellm":
        return None  # the fallback table lists only the providers named there
    return _fallback(name.rsplit("/", 1)[-1])  # "openai/gpt-5" (OpenRouter) -> "gpt-5"


def _fallback(name: str) -> Price | None:
    if name in PRICES:
        return PRICES[name]
    base, count = re.subn(_SNAPSHOT, "", name)
    return PRICES.get(base) if count else None


@functools.lru_cache(maxsize=256)
def _known_endpoint(base_url: str) -> str | None:
    """The genai-prices provider id whose API ``base_url`` is, or ``None`` for a custom
    endpoint."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost") or _loopback_or_private(host):
        return None  # decided without importing genai-prices
    snapshot = _genai_snapshot()
    if snapshot is not None:
        try:
            patterns = [(str(p.id), str(p.api_pattern)) for p in snapshot.providers]
        except Exception:  # a genai-prices whose API moved
            patterns = list(OWN_ENDPOINTS.items())
    else:
        patterns = list(OWN_ENDPOINTS.items())
    for provider_id, pattern in patterns:
        if re.match(pattern, base_url):
            return provider_id
    return None


def _loopback_or_private(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


@functools.cache
def _genai_snapshot() -> Any:
    """genai-prices' bundled price data, or ``None`` when it is not installed."""
    try:
        from genai_prices import data_snapshot
    except ImportError:
        return None
    return data_snapshot.get_snapshot()


def _genai_price(snapshot: Any, provider_id: str, name: str) -> Price | None:
    from datetime import UTC, datetime

    try:
        _, model = snapshot.find_provider_model(name, None, provider_id, None)
        prices = model.get_prices(datetime.now(tz=UTC))
        given_in = _mtok(getattr(prices, "input_mtok", None))
        given_out = _mtok(getattr(prices, "output_mtok", None))
        cached = _mtok(getattr(prices, "cache_read_mtok", None))
        cache_write = _mtok(getattr(prices, "cache_write_mtok", None))
        cache_write_1h = _mtok(getattr(prices, "cache_write_1h_mtok", None))
    except Exception:  # not listed (LookupError), or a genai-prices whose API moved
        return None
    if given_in is None or given_out is None:
        return None  # priced by something other than text tokens (images, audio)
    cached = given_in if cached is None else cached
    return Price(given_in, given_out, cached, cache_write, cache_write_1h)


def _mtok(value: Any) -> float | None:
    """A genai-prices price as a float: a tiered one at its base tier (prompts under
    the first threshold, usually 200K tokens)."""
    if value is None:
        return None
    return float(getattr(value, "base", value))


def cost(
    spec: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    overrides: Prices | None = None,
    *,
    base_url: str | None = None,
) -> float | None:
    """Cost of one call in USD, or ``None`` when the model is unpriced."""
    price = lookup(spec, overrides, base_url=base_url)
    if price is None:
        return None
    fresh = max(0, input_tokens - cached_tokens)
    return (fresh * price.input + cached_tokens * price.cached + output_tokens * price.output) / 1e6


#: The most output one request asks for (``max_tokens``) when a token or USD budget
#: applies, by longest known prefix of the name. This is a request cap
#: chosen here, not the provider's maximum (often 64K-128K, which would make every
#: reservation huge): reasoning models get room for their thinking, which is billed as
#: output; Anthropic models the 8192 their backend asks for anyway. A budget reserves a
#: call's prompt plus this much output, priced, before the call starts, and the request
#: asks the provider for no more, so the call cannot cost more than it reserved.
MAX_OUTPUT: dict[str, int] = {
    "gpt-5": 16_384,
    "o3": 16_384,
    "o4-mini": 16_384,
    "claude": 8_192,
    "gemini-2.5": 16_384,
}
#: For any other model that sets no ``max_output_tokens`` of its own.
DEFAULT_MAX_OUTPUT_TOKENS = 4096


def max_output_tokens(spec: str) -> int:
    """The most output one request to ``spec`` asks for (see :data:`MAX_OUTPUT`)."""
    name = spec.rsplit("/", 1)[-1].lower()
    matches = [k for k in MAX_OUTPUT if name == k or name.startswith(k + "-")]
    return MAX_OUTPUT[max(matches, key=len)] if matches else DEFAULT_MAX_OUTPUT_TOKENS


def listed_models(provider: str) -> dict[str, int | None]:
    """The model names genai-prices lists for recursa's ``provider`` (``"gemini"`` reads
    its ``google``), each with its context window in tokens where listed; empty when
    genai-prices is not installed or lists no such provider. Prices: :func:`lookup`."""
    snapshot = _genai_snapshot()
    if snapshot is None:
        return {}
    provider_id = GENAI_PROVIDERS.get(provider, provider)
    try:
        found = [p for p in snapshot.providers if str(p.id) == provider_id]
        models = found[0].models if found else []
        return {str(m.id): int(m.context_window) if m.context_window else None for m in models}
    except Exception:  # a genai-prices whose API moved
        return {}
