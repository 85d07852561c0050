"""Usage accounting and budgets shared by every node of one completion.

One :class:`Ledger` is created per completion and handed to every node of the
recursion tree, so a sub-call four levels down is charged to the same totals as
the root's own turns. A :class:`Budget` caps that ledger: once a limit is
reached no new model call starts anywhere, and the run ends with the best
answer it has.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import BudgetExceeded, ConfigError


def _add_cost(a: float | None, b: float | None) -> float | None:
    # Unknown cost is contagious: a total that includes an unpriced call is unknown.
    if a is None or b is None:
        return None
    return a + b


@dataclass
class Usage:
    """Token, call and cost totals. ``cost_usd`` is ``None`` when any call was unpriced."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    calls: int = 0
    cost_usd: float | None = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.calls += other.calls
        self.cost_usd = _add_cost(self.cost_usd, other.cost_usd)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "calls": self.calls,
            "cost_usd": self.cost_usd,
        }


@dataclass
class UsageReport(Usage):
    """Totals for a whole completion, broken down per model and per depth."""

    by_model: dict[str, Usage] = field(default_factory=dict)
    by_depth: dict[int, Usage] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["by_model"] = {k: v.to_dict() for k, v in self.by_model.items()}
        d["by_depth"] = {str(k): v.to_dict() for k, v in self.by_depth.items()}
        return d


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Limits for one completion, enforced across the whole recursion tree.

    Any field left as ``None`` is unlimited. ``tokens`` counts input plus output
    tokens; ``calls`` counts model requests; ``seconds`` is wall time since the
    run started. Keyword-only, so ``Budget(usd=..., calls=...)`` reads the same here
    and in the REPL, whose ``Budget`` has the same fields in the same order.
    """

    usd: float | None = None
    tokens: int | None = None
    seconds: float | None = None
    calls: int | None = None

    def __post_init__(self) -> None:
        for name in ("usd", "tokens", "seconds", "calls"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"Budget.{name} must be positive, got {value!r}")


class Ledger:
    """Charges every model call of a completion and enforces a :class:`Budget`.

    A ledger may have a parent: a child's charges also go to its parent, and a
    call may start only if neither the child's nor any ancestor's budget is spent.
    That is how a branch gets its own cap within the run's.
    """

    def __init__(self, budget: Budget | None = None, parent: Ledger | None = None) -> None:
        self.budget = budget or Budget()
        self.parent = parent
        self.started_at = time.monotonic()
        self._lock = threading.Lock()
        self._total = Usage()
        self._by_model: dict[str, Usage] = {}
        self._by_depth: dict[int, Usage] = {}
        self._started_calls = 0
        self._unpriced_models: set[str] = set()
        self.exhausted: str | None = None

    def child(self, budget: Budget | None = None) -> Ledger:
        """A ledger for one branch: charges flow up, limits apply at every level."""
        return Ledger(budget, parent=self)

    # -- enforcement -------------------------------------------------------
    def _limit_reached(self) -> str | None:
        b, u = self.budget, self._total
        if b.calls is not None and self._started_calls >= b.calls:
            return "calls"
        if b.tokens is not None and u.total_tokens >= b.tokens:
            return "tokens"
        if b.usd is not None and u.cost_usd is not None and u.cost_usd >= b.usd:
            return "usd"
        if b.seconds is not None and time.monotonic() - self.started_at >= b.seconds:
            return "seconds"
        return None

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` if this ledger or an ancestor is spent."""
        with self._lock:
            if self.exhausted is None:
                self.exhausted = self._limit_reached()
            if self.exhausted is not None:
                raise BudgetExceeded(self.exhausted)
        if self.parent is not None:
            self.parent.check()

    def begin_call(self) -> None:
        """Reserve one call; raises :class:`BudgetExceeded` instead of starting it."""
        self.check()
        with self._lock:
            self._started_calls += 1
        if self.parent is not None:
            self.parent._count_started()

    def _count_started(self) -> None:
        with self._lock:
            self._started_calls += 1
        if self.parent is not None:
            self.parent._count_started()

    # -- charging ----------------------------------------------------------
    def charge(self, model: str, depth: int, usage: Usage) -> None:
        """Record one finished (or cancelled, partly paid) model call."""
        with self._lock:
            self._total.add(usage)
            self._by_model.setdefault(model, Usage()).add(usage)
            self._by_depth.setdefault(depth, Usage()).add(usage)
            if usage.cost_usd is None:
                self._unpriced_models.add(model)
        if self.parent is not None:
            self.parent.charge(model, depth, usage)

    # -- reading -----------------------------------------------------------
    @property
    def unpriced_models(self) -> set[str]:
        return set(self._unpriced_models)

    def report(self) -> UsageReport:
        with self._lock:
            t = self._total
            return UsageReport(
                input_tokens=t.input_tokens,
                output_tokens=t.output_tokens,
                cached_tokens=t.cached_tokens,
                calls=t.calls,
                cost_usd=t.cost_usd,
                by_model={k: _copy(v) for k, v in self._by_model.items()},
                by_depth={k: _copy(v) for k, v in sorted(self._by_depth.items())},
            )

    def remaining(self) -> dict[str, float | int | None]:
        """What is left of each limit (``None`` where unlimited), the tightest level wins."""
        with self._lock:
            b, u = self.budget, self._total
            mine: dict[str, float | int | None] = {
                "usd": None if b.usd is None else max(0.0, b.usd - (u.cost_usd or 0.0)),
                "tokens": None if b.tokens is None else max(0, b.tokens - u.total_tokens),
                "calls": None if b.calls is None else max(0, b.calls - self._started_calls),
                "seconds": None
                if b.seconds is None
                else max(0.0, b.seconds - (time.monotonic() - self.started_at)),
            }
        if self.parent is None:
            return mine
        theirs = self.parent.remaining()
        out: dict[str, float | int | None] = {}
        for key, value in mine.items():
            other = theirs[key]
            out[key] = other if value is None else value if other is None else min(value, other)
        return out


def _copy(u: Usage) -> Usage:
    return Usage(u.input_tokens, u.output_tokens, u.cached_tokens, u.calls, u.cost_usd)
