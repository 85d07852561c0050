"""No limit is overshot at any concurrency: a call reserves its worst case (prompt plus
the output it asks for, priced) after it gets its model's slot, and settles after.
Runs against a real OpenAI-compatible HTTP server, in both sandboxes."""

from __future__ import annotations

import pytest

from recursa import RLM, Budget
from recursa.models import pricing
from recursa.models.scripted import ScriptedModel
from recursa.testing import ScriptedServer, http_router, router

SANDBOXES = ["inprocess", "subprocess"]

# two turns that each fan out 30 sub-calls, then a turn that would answer
FAN_OUT = [
    "```repl\nr = llm_batch(['x' * 4000 + str(i) for i in range(30)])\n"
    "answer['content'] = 'partial'\nprint(sum(isinstance(a, str) for a in r))\n```",
    "```repl\nr = llm_batch(['y' * 4000 + str(i) for i in range(30)])\nprint(len(r))\n```",
    "```repl\nFINAL('done')\n```",
]


def _server(latency: float = 0.02) -> ScriptedServer:
    return ScriptedServer(http_router(FAN_OUT, sub=lambda p: "z" * 2000), latency=latency)


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("concurrency", [1, 32])
def test_token_budget_is_never_overshot(sandbox: str, concurrency: int) -> None:
    with _server() as server:
        rlm = RLM(
            "openai/s", base_url=server.url, sandbox=sandbox, max_concurrency=concurrency,
            budget=Budget(tokens=20_000),
        )  # fmt: skip
        result = rlm.completion("q", context="hello")
        bodies = server.bodies
    assert result.stopped == "budget"
    assert result.answer == "partial"  # the best answer the REPL held
    assert result.usage.total_tokens <= 20_000  # the usage the server reported
    assert result.usage.calls == len(bodies) > 1
    # every request asked for no more output than it reserved
    assert all(b.get("max_tokens") == pricing.DEFAULT_MAX_OUTPUT_TOKENS for b in bodies)


def test_budget_tokens_5000_at_concurrency_1_stays_under() -> None:
    """Measured before: 45,627 tokens for this run (queued calls started past the limit)."""
    with _server(latency=0.0) as server:
        rlm = RLM(
            "openai/s", base_url=server.url, sandbox="inprocess", max_concurrency=1,
            budget=Budget(tokens=5000),
        )  # fmt: skip
        result = rlm.completion("q", context="hello " * 100)
    assert result.stopped == "budget" and result.usage.total_tokens <= 5000


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_usd_budget_is_never_overshot(sandbox: str) -> None:
    with _server() as server:
        rlm = RLM(
            "openai/gpt-5-mini", base_url=server.url, sandbox=sandbox,
            budget=Budget(usd=0.05),
        )  # fmt: skip
        result = rlm.completion("q", context="hello")
        bodies = server.bodies
    assert result.stopped == "budget"
    assert result.usage.cost_usd is not None and 0 < result.usage.cost_usd <= 0.05
    assert result.usage.calls == len(bodies) > 1
    # the gpt-5 family's request cap, under the name its API takes
    assert all(b.get("max_completion_tokens") == 16_384 for b in bodies)


def test_usd_budget_with_a_user_price_and_a_tiny_limit() -> None:
    """Measured before: Budget(usd=0.002) spent $0.00275 (checks came before the wait)."""
    with _server() as server:
        rlm = RLM(
            "openai/s", base_url=server.url, sandbox="inprocess",
            budget=Budget(usd=0.002), prices={"openai/s": (0.25, 0.10)},
        )  # fmt: skip
        result = rlm.completion("q", context="hello")
    assert result.stopped == "budget"
    assert result.usage.cost_usd is not None and 0 < result.usage.cost_usd <= 0.002


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_call_budget_is_never_overshot_by_a_wide_batch(sandbox: str) -> None:
    with _server() as server:
        rlm = RLM("openai/s", base_url=server.url, sandbox=sandbox, budget=Budget(calls=5))
        result = rlm.completion("q", context="hello")
        served = len(server.requests)
    assert result.stopped == "budget"
    assert served == result.usage.calls == 5


def test_a_branch_cap_and_the_run_limit_both_hold_in_a_recursive_run() -> None:
    child_turns = [
        "```repl\nr = llm_batch(['w' * 2000 + str(i) for i in range(20)])\n"
        "answer['content'] = 'child partial'\n```",
        "```repl\nFINAL('child done')\n```",
    ]
    root_turns = [
        "```repl\nout = rlm_batch(['branch A', 'branch B', 'branch C'])\n"
        "answer['content'] = str(out)\nprint(out)\n```",
        "```repl\nFINAL(answer['content'])\n```",
    ]
    model = ScriptedModel(router({"branch": child_turns, "": root_turns}, sub=lambda p: "s" * 400))
    rlm = RLM(model, max_depth=2, sandbox="inprocess", budget=Budget(tokens=30_000))
    result = rlm.completion("q", context="ctx")
    assert result.usage.total_tokens <= 30_000
    assert result.usage.by_depth[2].calls > 0  # the children's sub-calls ran


def test_calls_that_fit_once_others_settle_wait_instead_of_failing() -> None:
    """Two reservations fit at once, four in sequence: all four sub-calls are answered."""
    turns = [
        "```repl\nr = llm_batch(['x' * 4000 + str(i) for i in range(4)])\n"
        "FINAL(str(sum(isinstance(a, str) for a in r)))\n```"
    ]
    with ScriptedServer(http_router(turns, sub=lambda p: "z" * 400), latency=0.2) as server:
        rlm = RLM("openai/s", base_url=server.url, sandbox="inprocess",
                  budget=Budget(tokens=12_000))  # fmt: skip
        result = rlm.completion("q", context="c")
    assert result.answer == "4", result
    assert result.usage.total_tokens <= 12_000


def test_the_output_cap_fits_a_known_context_window() -> None:
    from recursa.engine.run import max_output_tokens

    assert max_output_tokens(ScriptedModel(["x"], context_window=2000), 1500) == 500
    assert max_output_tokens(ScriptedModel(["x"], context_window=2000), 1990) == 256
    assert max_output_tokens(ScriptedModel(["x"])) == pricing.DEFAULT_MAX_OUTPUT_TOKENS
