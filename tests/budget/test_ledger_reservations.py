"""The ledger's reservations: a call holds its worst case before it starts, across
every level of a tree of ledgers, from any thread, and settles with what it used."""

from __future__ import annotations

import threading

import pytest

from recursa.budget import Budget, Ledger, Usage
from recursa.errors import BudgetExceeded, ConfigError
from recursa.models import pricing
from recursa.settings import Settings

FREE = (0.0, 0.0)


def test_a_call_starts_only_if_prompt_plus_max_output_fits() -> None:
    ledger = Ledger(Budget(tokens=5000))
    first = ledger.reserve(600, 4096, FREE, model="m/a")
    assert first.max_output_tokens == 4096  # what the request must ask for
    with pytest.raises(BudgetExceeded, match="tokens"):
        ledger.reserve(600, 4096, FREE, model="m/a")  # 2 x 4696 > 5000, even in flight
    ledger.settle(first, 0, Usage(600, 50, 0, 1, 0.0))
    assert ledger.report().total_tokens == 650
    assert ledger.remaining()["tokens"] == 4350
    with pytest.raises(BudgetExceeded, match="tokens"):
        ledger.reserve(600, 4096, FREE, model="m/a")  # 650 + 4696 > 5000


def test_in_flight_reservations_count_and_release_gives_them_back() -> None:
    ledger = Ledger(Budget(tokens=10_000))
    a = ledger.reserve(1000, 4000, FREE, model="m/a")
    assert ledger.try_reserve(1000, 4000, FREE, model="m/a") != "tokens"  # 10 000: fits
    assert ledger.try_reserve(1000, 4000, FREE, model="m/a") == "tokens"  # wait for room
    assert ledger.remaining()["tokens"] == 0
    ledger.release(a)
    ledger.release(a)  # twice is once
    assert ledger.remaining()["tokens"] == 5000
    assert ledger.report().calls == 0  # a release charges nothing


def test_usd_reservation_is_priced_and_unpriced_models_are_refused() -> None:
    price = (0.25 / 1e6, 2.0 / 1e6)  # gpt-5-mini
    ledger = Ledger(Budget(usd=0.01))
    # 1000 in + 4096 out = $0.008442: one fits, a second would not even if the first were free
    r = ledger.reserve(1000, 4096, price, model="openai/gpt-5-mini")
    assert r.usd == pytest.approx(0.008442)
    with pytest.raises(BudgetExceeded, match="usd"):
        ledger.reserve(1000, 4096, price, model="openai/gpt-5-mini")
    with pytest.raises(ConfigError, match=r"no known price.*--price openai/mystery=IN,OUT"):
        ledger.reserve(10, 10, None, model="openai/mystery")
    assert Ledger().reserve(10, 10, None, model="openai/mystery").max_output_tokens is None


def test_no_limit_means_no_cap_on_the_request() -> None:
    assert Ledger(Budget(calls=3)).reserve(10, 4096, None, model="x/y").max_output_tokens is None
    assert Ledger(Budget(tokens=10**6)).reserve(10, 4096, None, model="x/y").max_output_tokens


def test_a_child_reserves_on_every_ancestor_atomically() -> None:
    root = Ledger(Budget(tokens=7000))
    left = root.child(Budget(tokens=100_000))
    right = root.child()
    held = left.reserve(1000, 4000, FREE, model="m/a")
    assert right.try_reserve(1000, 4000, FREE, model="m/a") == "tokens"  # the root is full
    with pytest.raises(BudgetExceeded):
        right.reserve(1000, 4000, FREE, model="m/a")
    assert root.report().calls == 0 and right.remaining()["tokens"] == 2000
    left.settle(held, 1, Usage(1000, 10, 0, 1, 0.0))
    assert root.report().total_tokens == 1010 and left.report().total_tokens == 1010
    right.reserve(1000, 4000, FREE, model="m/a")  # fits now


def test_a_refusal_at_one_level_holds_nothing_at_the_others() -> None:
    root = Ledger(Budget(calls=5))
    child = root.child(Budget(tokens=100))
    with pytest.raises(BudgetExceeded, match="tokens"):
        child.reserve(50, 4096, FREE, model="m/a")
    assert root.remaining()["calls"] == 5


def test_concurrent_threads_never_overshoot_any_limit() -> None:
    root = Ledger(Budget(tokens=50_000, calls=40, usd=0.05))
    children = [root.child(Budget(tokens=20_000)) for _ in range(4)]
    price = (1e-6, 2e-6)
    errors: list[BaseException] = []

    def worker(ledger: Ledger) -> None:
        for _ in range(50):
            try:
                r = ledger.try_reserve(300, 700, price, model="m/a")
            except BudgetExceeded:
                return
            if isinstance(r, str):
                continue
            # the worst case: the call used all it reserved
            ledger.settle(r, 1, Usage(300, 700, 0, 1, 300 * price[0] + 700 * price[1]))

    threads = [threading.Thread(target=worker, args=(c,)) for c in children for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = root.report()
    assert report.total_tokens <= 50_000 and report.calls <= 40
    assert report.cost_usd is not None and report.cost_usd <= 0.05 + 1e-12
    for child in children:
        assert child.report().total_tokens <= 20_000


def test_usage_beyond_the_reservation_is_charged_as_it_is() -> None:
    """A provider that ignored max_tokens: the ledger never under-reports; the limit is
    then spent and nothing more starts."""
    ledger = Ledger(Budget(tokens=1000))
    r = ledger.reserve(100, 200, FREE, model="m/a")
    ledger.settle(r, 0, Usage(100, 2000, 0, 1, 0.0))
    assert ledger.report().total_tokens == 2100
    with pytest.raises(BudgetExceeded, match="tokens"):
        ledger.check()


def test_deadline_is_the_tightest_level() -> None:
    root = Ledger(Budget(seconds=100))
    child = root.child(Budget(seconds=5))
    assert child.deadline() == pytest.approx(child.started_at + 5)
    assert 4 < (child.seconds_left() or 0) <= 5
    assert Ledger().deadline() is None


def test_user_prices_win_and_request_caps() -> None:
    prices = {"openai/mine": (1.0, 3.0), "openai/gpt-5": (0.0, 0.0)}
    assert pricing.cost("openai/mine", 1_000_000, 1_000_000, overrides=prices) == 4.0
    assert pricing.cost("openai/gpt-5", 10, 10, overrides=prices) == 0.0
    assert pricing.cost("openai/mine", 10, 10) is None
    assert pricing.max_output_tokens("openai/gpt-5-mini-2025-08-07") == 16_384
    assert pricing.max_output_tokens("openai/some-local") == pricing.DEFAULT_MAX_OUTPUT_TOKENS


def test_settings_check_prices_allowlist_and_children() -> None:
    s = Settings(
        model="scripted/x",
        prices={"a/b": [1, 2]},  # type: ignore[dict-item]
        allowed_models=["c/d"],  # type: ignore[arg-type]
    )
    assert s.prices == {"a/b": (1.0, 2.0)} and s.allowed_models == ("c/d",)
    assert s.max_child_sandboxes >= 2
    for bad in ({"a/b": (1,)}, {"a/b": (-1, 2)}, {"a/b": (float("nan"), 1)}, {"": (1, 1)}):
        with pytest.raises(ConfigError, match="prices"):
            Settings(model="scripted/x", prices=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="allowed_models"):
        Settings(model="scripted/x", allowed_models="c/d")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_child_sandboxes"):
        Settings(model="scripted/x", max_child_sandboxes=0)
