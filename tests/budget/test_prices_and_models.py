"""Model code spends only on models the user chose, and an unpriced model cannot switch
a USD limit off: under a USD budget it is refused unless the user gave it a price."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recursa import RLM, Budget
from recursa.errors import ConfigError
from recursa.models.scripted import ScriptedModel
from recursa.serve import RunOptions, rlm_factory
from recursa.testing import ScriptedServer, http_router, is_root_turn, router
from tests.helpers import run_cli

SANDBOXES = ["inprocess", "subprocess"]


def _try(call: str) -> list[str]:
    """Root turns that make ``call`` and answer with its result or its error."""
    return [
        "```repl\ntry:\n    out = " + call + "\nexcept Exception as exc:\n"
        "    out = 'ERROR: ' + str(exc)\nFINAL(out)\n```"
    ]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_an_unpriced_sub_model_is_refused_to_the_repl_under_a_usd_budget(sandbox: str) -> None:
    with ScriptedServer(lambda body: "sub answer") as server:
        rlm = RLM(
            ScriptedModel(router(_try("llm_query('hi')"))), "openai/mystery",
            base_url=server.url, sandbox=sandbox, budget=Budget(usd=1.0),
        )  # fmt: skip
        result = rlm.completion("q", context="c")
        assert server.requests == []  # nothing was spent on it
    assert result.answer.startswith("ERROR: ")
    assert "openai/mystery has no known price" in result.answer
    assert "--price openai/mystery=IN,OUT" in result.answer
    assert result.stopped is None


def test_an_unpriced_root_model_fails_the_run_under_a_usd_budget() -> None:
    with ScriptedServer(lambda body: "```repl\nFINAL('x')\n```") as server:
        rlm = RLM("openai/mystery", base_url=server.url, sandbox="inprocess",
                  budget=Budget(usd=1.0))  # fmt: skip
        with pytest.raises(ConfigError, match="openai/mystery has no known price"):
            rlm.completion("q", context="c")
        assert server.requests == []


def test_a_user_price_meters_the_model() -> None:
    def reply(body: dict[str, object]) -> str:
        return "```repl\nFINAL(llm_query('hi'))\n```" if is_root_turn(body["messages"]) else "ok"  # type: ignore[arg-type]

    with ScriptedServer(reply) as server:
        rlm = RLM("openai/mystery", base_url=server.url, sandbox="inprocess",
                  budget=Budget(usd=1.0), prices={"openai/mystery": (1.0, 2.0)})  # fmt: skip
        result = rlm.completion("q", context="c")
    assert result.answer == "ok"
    u = result.usage
    assert u.cost_usd == pytest.approx((u.input_tokens * 1.0 + u.output_tokens * 2.0) / 1e6)
    # no USD budget: an unpriced model still runs, its cost is unknown (None), never zero
    with ScriptedServer(reply) as server:
        plain = RLM("openai/mystery", base_url=server.url, sandbox="inprocess")
        assert plain.completion("q", context="c").usage.cost_usd is None


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_model_code_cannot_name_a_model_the_user_did_not_choose(sandbox: str) -> None:
    with ScriptedServer(lambda body: "other answer") as server:
        rlm = RLM(
            ScriptedModel(router(_try("llm_query('hi', model='openai/expensive')"))),
            base_url=server.url, sandbox=sandbox,
        )  # fmt: skip
        refused = rlm.completion("q", context="c")
        assert server.requests == []
        allowed = rlm.with_settings(allowed_models=("openai/expensive",))
        assert allowed.completion("q", context="c").answer == "other answer"
        assert len(server.requests) == 1
    assert "ERROR: " in refused.answer and "'openai/expensive' is not allowed" in refused.answer
    assert "--allow-model" in refused.answer


def test_the_root_and_sub_models_are_always_allowed() -> None:
    model = ScriptedModel(router(_try("llm_query('hi', model='scripted/scripted')")))
    result = RLM(model, sandbox="inprocess").completion("q", context="c")
    assert result.answer.startswith("sub:")


def test_a_batch_naming_a_foreign_model_gets_the_error_per_item() -> None:
    turns = _try("llm_batch(['a', 'b'], model='openai/elsewhere')")
    with ScriptedServer(lambda body: "x") as server:
        result = RLM(ScriptedModel(router(turns)), base_url=server.url,
                     sandbox="inprocess").completion("q", context="c")  # fmt: skip
        assert server.requests == []
    assert "not allowed" in result.answer


def test_serve_allowlist_feeds_the_runs_allowed_models() -> None:
    template = RLM(ScriptedModel(["x"]), sandbox="inprocess", allowed_models=["openai/a"])
    make = rlm_factory(template, allowed_models={"openai/b"})
    rlm = make(RunOptions())
    assert set(rlm.settings.allowed_models) == {"openai/a", "openai/b"}
    assert rlm_factory(template)(RunOptions()).settings.allowed_models == ("openai/a",)


def test_cli_price_and_allow_model(tmp_path: Path, clean_env: dict[str, str]) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    turns = _try("llm_query('hi', model='openai/other')")
    with ScriptedServer(http_router(turns, sub=lambda p: "from other")) as server:
        base = ["run", "q", "-c", str(ctx), "--model", "openai/s", "--base-url", server.url,
                "--sandbox", "inprocess", "--json"]  # fmt: skip
        unpriced = run_cli([*base, "--budget-usd", "1"], clean_env)
        assert unpriced.returncode == 2 and "openai/s has no known price" in unpriced.stderr
        refused = run_cli(base, clean_env)
        assert refused.returncode == 0, refused.stderr
        assert "is not allowed" in json.loads(refused.stdout)["answer"]
        ok = run_cli(
            [*base, "--budget-usd", "1", "--price", "openai/s=1,2", "--price",
             "openai/other=0.5,0.5", "--allow-model", "openai/other"],
            clean_env,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        out = json.loads(ok.stdout)
        assert out["answer"] == "from other" and out["usage"]["cost_usd"] > 0
        bad = run_cli([*base, "--price", "openai/s=1"], clean_env)
        assert bad.returncode == 2 and "MODEL=IN,OUT" in bad.stderr
