"""What every benchmark task produces (:class:`Item`) and implements (:class:`Task`)."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Protocol

from ..tokens import format_length

__all__ = ["Item", "Task", "check_args", "item_id", "item_rng"]


@dataclass(frozen=True)
class Item:
    """One benchmark question with its context and gold answer.

    ``context`` is what the RLM receives as ``context``; ``length_tokens`` is the
    length that was *requested* (the actual length is within 5% of it).
    """

    id: str
    task: str
    context: str | list[str]
    query: str
    gold: Any
    length_tokens: int
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)


class Task(Protocol):
    """A generator of :class:`Item` s and a scorer for predictions on them."""

    @property
    def name(self) -> str:
        """The registry key, e.g. ``"sniah"``."""
        ...

    def generate(self, n: int, length_tokens: int, seed: int) -> list[Item]:
        """``n`` items of about ``length_tokens`` tokens each, the same for the same seed."""
        ...

    def score(self, prediction: str, gold: Any) -> float:
        """How right ``prediction`` is, in ``[0, 1]``."""
        ...


def item_id(task: str, length_tokens: int, seed: int, index: int) -> str:
    """The stable id of item ``index``: ``"sniah-8k-s0-3"``."""
    return f"{task}-{format_length(length_tokens)}-s{seed}-{index}"


def item_rng(task: str, length_tokens: int, seed: int, index: int) -> random.Random:
    """A private RNG for one item, so item ``i`` does not depend on how many are generated.

    String seeds are hashed with SHA-512 by :class:`random.Random`, so this is
    stable across processes and independent of ``PYTHONHASHSEED``.
    """
    return random.Random(f"recursa-bench/{task}/{length_tokens}/{seed}/{index}")


def check_args(n: int, length_tokens: int) -> None:
    """Reject nonsense counts and lengths early, with a clear message."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if length_tokens < 1_000:
        raise ValueError(f"length_tokens must be at least 1000, got {length_tokens}")
