"""Usage accounting and budgets shared by every node of one completion.

One :class:`Ledger` is created per completion and handed to every node of the
recursion tree, so a sub-call four levels down is charged to the same totals as
the root's own turns. A :class:`Budget` caps that ledger: once a limit is
reached no new model call starts anywhere, and the run ends with the best
answer it has. A call reserves its worst case before it starts and settles after, so
no limit is overshot at any concurrency (see :meth:`Ledger.reserve`).
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


@dataclass
class Reservation:
    """What one call holds of every ledger in its chain until it is settled or released.

    ``max_output_tokens`` is the most the call may ask the provider to write, and
    what it reserved (``None``: no token or USD limit applies, so the request goes
    without a cap of ours).
    """

    ledger: Ledger
    model: str
    prompt_tokens: int
    max_output_tokens: int | None
    tokens: int
    usd: float
    price: tuple[float, float] | None
    done: bool = False


class Ledger:
    """Charges every model call of a completion and enforces a :class:`Budget`.

    A ledger may have a parent: a child's charges also go to its parent, and a
    call may start only if neither the child's nor any ancestor's budget is spent.
    That is how a branch gets its own cap within the run's.

    Calls *reserve* before they start (:meth:`reserve`): the worst case of the call,
    its prompt plus the most output it may ask for, priced, must fit in what every
    level has left after the calls already in flight; then it is *settled* with the
    actual usage (:meth:`settle`) or *released* (:meth:`release`). One lock guards a
    whole tree of ledgers, so a reservation across levels is atomic on any thread.
    """

    def __init__(self, budget: Budget | None = None, parent: Ledger | None = None) -> None:
        self.budget = budget or Budget()
        self.parent = parent
        self.started_at = time.monotonic()
        self._lock: threading.RLock = parent._lock if parent is not None else threading.RLock()
        self._total = Usage()
        self._by_model: dict[str, Usage] = {}
        self._by_depth: dict[int, Usage] = {}
        self._started_calls = 0
        self._reserved_tokens = 0
        self._reserved_usd = 0.0
        self._unpriced_models: set[str] = set()
        self.exhausted: str | None = None

    def child(self, budget: Budget | None = None) -> Ledger:
        """A ledger for one branch: charges flow up, limits apply at every level."""
        return Ledger(budget, parent=self)

    def _chain(self) -> list[Ledger]:
        chain: list[Ledger] = []
        ledger: Ledger | None = self
        while ledger is not None:
            chain.append(ledger)
            ledger = ledger.parent
        return chain

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

    def _check_locked(self) -> None:
        for ledger in self._chain():
            if ledger.exhausted is None:
                ledger.exhausted = ledger._limit_reached()
            if ledger.exhausted is not None:
                raise BudgetExceeded(ledger.exhausted)

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` if this ledger or an ancestor is spent."""
        with self._lock:
            self._check_locked()

    def begin_call(self) -> None:
        """Count one call, unreserved (its cost is charged after); raises
        :class:`BudgetExceeded` instead of starting it. The engine uses :meth:`reserve`."""
        with self._lock:
            self._check_locked()
            for ledger in self._chain():
                if ledger.budget.calls is not None and ledger._started_calls >= ledger.budget.calls:
                    raise BudgetExceeded("calls")
            self._count_started()

    def reserve(
        self,
        prompt_tokens: int,
        max_output_tokens: int | None,
        price: tuple[float, float] | None,
        *,
        model: str,
    ) -> Reservation:
        """Hold one call's worst case at every level, or raise instead of starting it.

        The worst case is the prompt plus ``max_output_tokens`` (the most the request
        may ask the provider to write), priced at ``price``: USD per token ``(input,
        output)``, or ``None`` for an unpriced model. It must fit in what the token and
        USD limits of every level leave after their spending and the other calls in
        flight, and a call must be left, else :class:`BudgetExceeded`. Under a USD limit
        an unpriced model raises :class:`ConfigError`: its cost could never be counted.
        The reservation's ``max_output_tokens`` is what the request must then ask for
        (``None`` when no token or USD limit applies: nothing needs the cap).
        """
        reservation = self.try_reserve(prompt_tokens, max_output_tokens, price, model=model)
        if isinstance(reservation, str):
            raise BudgetExceeded(reservation)
        return reservation

    def try_reserve(
        self,
        prompt_tokens: int,
        max_output_tokens: int | None,
        price: tuple[float, float] | None,
        *,
        model: str,
    ) -> Reservation | str:
        """:meth:`reserve`, except that a call that would fit once the calls in flight
        have settled is not refused: the limit it waits for (``"tokens"``, ``"usd"``) is
        returned instead, and the caller may try again after a settlement. A call that
        cannot fit even then raises :class:`BudgetExceeded`."""
        with self._lock:
            self._check_locked()
            chain = self._chain()
            output = max_output_tokens or 0
            tokens = prompt_tokens + output
            usd = 0.0 if price is None else prompt_tokens * price[0] + output * price[1]
            limited = False  # some level limits tokens or USD: the request needs the cap
            waiting: str | None = None
            for ledger in chain:
                b, u = ledger.budget, ledger._total
                if b.calls is not None and ledger._started_calls + 1 > b.calls:
                    raise BudgetExceeded("calls")
                if b.tokens is not None:
                    limited = True
                    if u.total_tokens + tokens > b.tokens:
                        raise BudgetExceeded("tokens")
                    if u.total_tokens + ledger._reserved_tokens + tokens > b.tokens:
                        waiting = waiting or "tokens"
                if b.usd is not None:
                    limited = True
                    if price is None:
                        raise ConfigError(
                            f"{model} has no known price, so a USD budget cannot meter it: "
                            f"give one with RLM(prices={{{model!r}: (IN, OUT)}}) or "
                            f"--price {model}=IN,OUT (USD per million tokens)"
                        )
                    if (u.cost_usd or 0.0) + usd > b.usd:
                        raise BudgetExceeded("usd")
                    if (u.cost_usd or 0.0) + ledger._reserved_usd + usd > b.usd:
                        waiting = waiting or "usd"
            if waiting is not None:
                return waiting
            for ledger in chain:
                ledger._started_calls += 1
                ledger._reserved_tokens += tokens
                ledger._reserved_usd += usd
            cap = max_output_tokens if limited else None
            return Reservation(self, model, prompt_tokens, cap, tokens, usd, price)

    def _unreserve(self, reservation: Reservation) -> bool:
        if reservation.done:
            return False
        reservation.done = True
        for ledger in reservation.ledger._chain():
            ledger._reserved_tokens -= reservation.tokens
            ledger._reserved_usd -= reservation.usd
        return True

    def settle(self, reservation: Reservation, depth: int, usage: Usage) -> None:
        """Replace a reservation with the call's actual usage. Usage beyond the
        reservation (a provider that ignored ``max_tokens``) is charged as it is: the
        ledger never under-reports, and the limit it crossed is then spent."""
        with self._lock:
            if self._unreserve(reservation):
                self.charge(reservation.model, depth, usage)

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (the call failed before any usage); the
        call itself still counts as started."""
        with self._lock:
            self._unreserve(reservation)

    def _count_started(self) -> None:
        with self._lock:
            for ledger in self._chain():
                ledger._started_calls += 1

    def deadline(self) -> float | None:
        """The earliest ``time.monotonic()`` at which a ``seconds`` limit of this ledger
        or an ancestor runs out, or ``None``."""
        ends = [
            ledger.started_at + ledger.budget.seconds
            for ledger in self._chain()
            if ledger.budget.seconds is not None
        ]
        return min(ends) if ends else None

    def seconds_left(self) -> float | None:
        """Seconds until :meth:`deadline` (never negative), or ``None``."""
        deadline = self.deadline()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    # -- charging ----------------------------------------------------------
    def charge(self, model: str, depth: int, usage: Usage) -> None:
        """Record one finished (or cancelled, partly paid) model call."""
        with self._lock:
            for ledger in self._chain():
                ledger._total.add(usage)
                ledger._by_model.setdefault(model, Usage()).add(usage)
                ledger._by_depth.setdefault(depth, Usage()).add(usage)
                if usage.cost_usd is None:
                    ledger._unpriced_models.add(model)

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
        """What is left of each limit (``None`` where unlimited), the tightest level
        wins; what calls in flight have reserved counts as used."""
        with self._lock:
            out: dict[str, float | int | None] = {
                "usd": None, "tokens": None, "calls": None, "seconds": None
            }  # fmt: skip
            for ledger in self._chain():
                b, u = ledger.budget, ledger._total
                mine: dict[str, float | int | None] = {
                    "usd": None
                    if b.usd is None
                    else max(0.0, b.usd - (u.cost_usd or 0.0) - ledger._reserved_usd),
                    "tokens": None
                    if b.tokens is None
                    else max(0, b.tokens - u.total_tokens - ledger._reserved_tokens),
                    "calls": None if b.calls is None else max(0, b.calls - ledger._started_calls),
                    "seconds": None
                    if b.seconds is None
                    else max(0.0, b.seconds - (time.monotonic() - ledger.started_at)),
                }
                for key, value in mine.items():
                    other = out[key]
                    out[key] = (
                        other if value is None else value if other is None else min(value, other)
                    )
            return out


def _copy(u: Usage) -> Usage:
    return Usage(u.input_tokens, u.output_tokens, u.cached_tokens, u.calls, u.cost_usd)
