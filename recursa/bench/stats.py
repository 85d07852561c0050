"""95% confidence intervals for a cell's mean score.

Scores that are all 0 or 1 (sniah, browsecomp-lite, codeqa-lite) get the Wilson score
interval, which stays inside ``[0, 1]`` and is sensible for small ``n`` and for means
of 0 or 1. Continuous scores (oolong's partial credit, oolong-pairs' F1) get a
percentile bootstrap of the mean with a fixed seed, so a report is the same every
time it is written.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "Interval", "bootstrap", "interval", "wilson"]

#: z for a two-sided 95% interval
_Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2_000
BOOTSTRAP_SEED = 0

Method = Literal["wilson", "bootstrap"]


@dataclass(frozen=True)
class Interval:
    """``[low, high]`` around a mean, and how it was computed."""

    low: float
    high: float
    method: Method


def wilson(successes: float, n: int) -> tuple[float, float]:
    """The Wilson score interval (95%) for ``successes`` out of ``n`` trials."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    p = successes / n
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """The percentile bootstrap interval (95%) of the mean of ``values``, seeded."""
    if not values:
        raise ValueError("no values to bootstrap")
    rng = random.Random(BOOTSTRAP_SEED)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))
    return means[int(0.025 * (resamples - 1))], means[math.ceil(0.975 * (resamples - 1))]


def interval(scores: Sequence[float]) -> Interval:
    """Wilson when every score is 0 or 1, else the bootstrap (see the module's doc)."""
    if all(s in (0.0, 1.0) for s in scores):
        return Interval(*wilson(sum(scores), len(scores)), "wilson")
    return Interval(*bootstrap(scores), "bootstrap")
