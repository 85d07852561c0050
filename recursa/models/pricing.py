"""Prices in USD per million tokens, for cost accounting.

``cached`` is the price of input tokens served from the provider's prompt cache;
cached tokens are counted inside ``input_tokens``. A model missing here is
*unpriced*: its cost is ``None``, never a silent zero. Prices are list prices
as published by each provider (standard tier, prompts under 200K tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: User prices: ``{"provider/name": (input, output)}`` in USD per million tokens
#: (``RLM(prices=...)``, ``--price``). They win over the table below.
Prices = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached: float


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
    # Anthropic (cache reads at 0.1x input; cache writes are priced by the backend)
    "claude-opus-4-1": Price(15.00, 75.00, 1.50),
    "claude-opus-4": Price(15.00, 75.00, 1.50),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
    # Google Gemini
    "gemini-2.5-pro": Price(1.25, 10.00, 0.31),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.075),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.025),
}

# Providers whose calls cost nothing: embedded models and the scripted test model.
FREE_PROVIDERS = frozenset({"local", "scripted"})


def lookup(spec: str, overrides: Prices | None = None) -> Price | None:
    """Find a price for ``provider/name``: the user's (``overrides``, exact spec; cached
    input at the input price), else by exact name, then by longest known prefix (so
    dated snapshots like ``gpt-5-mini-2025-08-07`` resolve)."""
    if overrides and spec in overrides:
        given_in, given_out = overrides[spec]
        return Price(float(given_in), float(given_out), float(given_in))
    provider, _, name = spec.partition("/")
    if provider in FREE_PROVIDERS:
        return Price(0.0, 0.0, 0.0)
    name = name.rsplit("/", 1)[-1].lower()  # "openrouter/openai/gpt-5" -> "gpt-5"
    if name in PRICES:
        return PRICES[name]
    matches = [k for k in PRICES if name.startswith(k + "-")]
    return PRICES[max(matches, key=len)] if matches else None


def cost(
    spec: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    overrides: Prices | None = None,
) -> float | None:
    """Cost of one call in USD, or ``None`` when the model is unpriced."""
    price = lookup(spec, overrides)
    if price is None:
        return None
    fresh = max(0, input_tokens - cached_tokens)
    return (fresh * price.input + cached_tokens * price.cached + output_tokens * price.output) / 1e6


#: The most output one request asks for (``max_tokens``) when a token or USD budget
#: applies, by longest known prefix of the name, as for prices. This is a request cap
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
