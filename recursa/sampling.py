"""How a model samples: temperature, top-p, seed, output cap and reasoning effort.

One frozen :class:`Sampling` per role: ``Settings.model_settings`` for the root
model's turns, ``Settings.sub_model_settings`` for sub-calls (``llm_query`` and
child RLMs). Values left ``None`` are not sent, so the provider's defaults hold.
Each provider maps the fields it supports onto its API and refuses the others
with a :class:`~recursa.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

#: Reasoning efforts the providers' APIs name (OpenAI's ``reasoning_effort``; others map).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """Sampling options for one model role; ``None`` leaves the provider's default.

    ``max_tokens`` caps one reply's output tokens (a budget may cap it lower, never
    higher); ``reasoning_effort`` is one of :data:`REASONING_EFFORTS`.
    """

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None

    def __post_init__(self) -> None:
        if self.temperature is not None:
            _check_number("temperature", self.temperature, 0.0, 2.0)
        if self.top_p is not None:
            _check_number("top_p", self.top_p, 0.0, 1.0)
            if self.top_p == 0:
                raise ConfigError("top_p must be in (0, 1], got 0")
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens <= 0
        ):
            raise ConfigError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ConfigError(
                f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}, "
                f"got {self.reasoning_effort!r}"
            )

    @classmethod
    def of(cls, value: SamplingInput) -> Sampling:
        """A :class:`Sampling` from itself, a mapping of its fields, or ``None`` (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, Sampling):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"model settings must be a Sampling or a dict of its fields, got {value!r}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                f"unknown model setting(s) {', '.join(map(str, unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set (what a trace records and a cache key includes)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def replace(self, **changes: Any) -> Sampling:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def __bool__(self) -> bool:
        return bool(self.to_dict())


#: What ``model_settings=``/``sub_model_settings=`` accept.
SamplingInput = Sampling | Mapping[str, Any] | None


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ConfigError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
