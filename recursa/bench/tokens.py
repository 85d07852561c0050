"""Token counting for benchmark lengths: one token is four characters.

Benchmark lengths are a property of the *data*, not of a model, so they are
counted with a fixed, tokenizer-free rule (``ceil(chars / 4)``). A list
context counts as the sum of its items' characters.

Lengths are written as ``"8k"`` (8,000), ``"1m"`` (1,000,000) or a plain
number; ``"8ki"`` / ``"1mi"`` give the binary sizes (8,192 and 1,048,576) used
by RULER and OOLONG.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = ["CHARS_PER_TOKEN", "count_tokens", "format_length", "parse_length"]

CHARS_PER_TOKEN = 4

_LENGTH_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(k|ki|m|mi)?\s*$", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "k": 1_000, "ki": 1_024, "m": 1_000_000, "mi": 1_048_576}


def count_tokens(text: str | Sequence[str]) -> int:
    """Tokens in ``text`` (a string, or a list of strings summed) as ``ceil(chars / 4)``."""
    chars = len(text) if isinstance(text, str) else sum(len(part) for part in text)
    return math.ceil(chars / CHARS_PER_TOKEN)


def parse_length(value: str | int) -> int:
    """``"8k"`` -> 8000, ``"1m"`` -> 1000000, ``"8ki"`` -> 8192, ``"32000"`` -> 32000."""
    if isinstance(value, int):
        number = value
    else:
        match = _LENGTH_RE.match(value.replace("_", "").replace(",", ""))
        if match is None:
            raise ValueError(f"not a length: {value!r} (expected e.g. '8k', '1m', '32000')")
        number = round(float(match.group(1)) * _MULTIPLIERS[(match.group(2) or "").lower()])
    if number <= 0:
        raise ValueError(f"length must be positive, got {value!r}")
    return number


def format_length(tokens: int) -> str:
    """The shortest label that :func:`parse_length` maps back to ``tokens``: 8000 -> '8k'."""
    for suffix in ("m", "mi", "k", "ki"):
        unit = _MULTIPLIERS[suffix]
        if tokens % unit == 0:
            return f"{tokens // unit}{suffix}"
    return str(tokens)
