from __future__ import annotations

import pytest

from recursa.budget import Budget, Ledger, Usage
from recursa.errors import BudgetExceeded, ConfigError
from recursa.models import pricing


def test_charges_split_by_model_and_depth() -> None:
    ledger = Ledger()
    ledger.charge("openai/gpt-5", 0, Usage(100, 10, 0, 1, 0.5))
    ledger.charge("openai/gpt-5-mini", 1, Usage(50, 5, 20, 1, 0.1))
    ledger.charge("openai/gpt-5-mini", 1, Usage(50, 5, 0, 1, 0.1))
    r = ledger.report()
    assert (r.input_tokens, r.output_tokens, r.cached_tokens, r.calls) == (200, 20, 20, 3)
    assert r.cost_usd == pytest.approx(0.7)
    assert r.by_model["openai/gpt-5-mini"].calls == 2
    assert r.by_depth[1].input_tokens == 100
    assert r.to_dict()["by_depth"]["0"]["calls"] == 1


def test_unknown_cost_is_null_not_zero() -> None:
    ledger = Ledger()
    ledger.charge("openai/gpt-5", 0, Usage(1, 1, 0, 1, 0.01))
    ledger.charge("openai/some-private-model", 1, Usage(1, 1, 0, 1, None))
    assert ledger.report().cost_usd is None
    assert ledger.unpriced_models == {"openai/some-private-model"}


def test_call_budget_stops_new_calls() -> None:
    ledger = Ledger(Budget(calls=2))
    ledger.begin_call()
    ledger.begin_call()
    with pytest.raises(BudgetExceeded) as info:
        ledger.begin_call()
    assert info.value.limit == "calls"
    assert ledger.exhausted == "calls"


def test_usd_and_token_budgets() -> None:
    ledger = Ledger(Budget(usd=1.0))
    ledger.begin_call()
    ledger.charge("m/a", 0, Usage(10, 10, 0, 1, 1.2))
    with pytest.raises(BudgetExceeded, match="usd"):
        ledger.begin_call()
    tokens = Ledger(Budget(tokens=100))
    tokens.charge("m/a", 0, Usage(90, 20, 0, 1, 0.0))
    with pytest.raises(BudgetExceeded, match="tokens"):
        tokens.check()


def test_child_ledger_charges_parent_and_obeys_both_caps() -> None:
    parent = Ledger(Budget(calls=10))
    child = parent.child(Budget(calls=1))
    child.begin_call()
    child.charge("m/a", 1, Usage(5, 5, 0, 1, 0.0))
    assert parent.report().calls == 1
    with pytest.raises(BudgetExceeded):
        child.begin_call()
    parent.begin_call()  # the parent still has room
    assert child.remaining()["calls"] == 0
    assert parent.remaining()["calls"] == 8


def test_budget_rejects_non_positive_limits() -> None:
    with pytest.raises(ConfigError):
        Budget(usd=0)
    with pytest.raises(ConfigError):
        Budget(calls=-1)


def test_pricing_known_dated_and_unknown_models() -> None:
    assert pricing.cost("openai/gpt-5-mini", 1_000_000, 0) == pytest.approx(0.25)
    dated = pricing.cost("openai/gpt-5-mini-2025-08-07", 0, 1_000_000)
    assert dated == pytest.approx(2.0)
    cached = pricing.cost("openai/gpt-5", 1_000_000, 0, cached_tokens=1_000_000)
    assert cached == pytest.approx(0.125)
    assert pricing.cost("openai/mystery-model", 10, 10) is None
    assert pricing.cost("local/qwen2.5-coder-0.5b", 10, 10) == 0.0
