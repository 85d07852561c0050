"""The RLM loop against the scripted model, in the in-process sandbox (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recursa import RLM, Budget, ConfigError
from recursa.models.scripted import ScriptedModel
from recursa.testing import router

CONTEXT = "alpha beta gamma\n" * 200 + "The secret code is 7391.\n" + "delta\n" * 200


def rlm(replies: list[str] | dict[str, list[str]], **kw: object) -> tuple[RLM, ScriptedModel]:
    model = ScriptedModel(router(replies))
    options: dict[str, object] = {"sandbox": "inprocess", **kw}
    return RLM(model, **options), model  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("```repl\nFINAL('7391')\n```", "7391"),
        ("```repl\nx = '7391'\nFINAL_VAR('x')\n```", "7391"),
        ("```repl\nx = '7391'\nFINAL_VAR(x)\n```", "7391"),
        ("```repl\nanswer['content'] = '7391'\nanswer['ready'] = True\n```", "7391"),
        ("The code is known.\nFINAL(7391)", "7391"),
    ],
)
def test_finishing_styles(reply: str, expected: str) -> None:
    r, _ = rlm([reply])
    result = r.completion("What is the secret code?", CONTEXT)
    assert result.answer == expected
    assert result.stopped is None
    assert result.iterations == 1


def test_final_var_in_prose_after_code_runs_the_code_first() -> None:
    r, _ = rlm(["```repl\nres = context.split('code is ')[1][:4]\n```\nFINAL_VAR(res)"])
    assert r.completion("code?", CONTEXT).answer == "7391"


def test_final_var_in_prose_for_a_missing_variable_is_reported() -> None:
    r, model = rlm(["FINAL_VAR(nope)", "```repl\nFINAL('ok')\n```"])
    result = r.completion("q", CONTEXT)
    assert result.answer == "ok" and result.iterations == 2
    feedback = model.calls[1].messages[-1]["content"]
    assert "NameError" in str(feedback) or "nope" in str(feedback)


def test_variables_survive_cells_and_exceptions_and_tracebacks_reach_the_model() -> None:
    r, model = rlm(
        [
            "```repl\nx = 41\n```\n```repl\n1/0\n```",
            "```repl\nFINAL(x + 1)\n```",
        ]
    )
    result = r.completion("q", CONTEXT)
    assert result.answer == "42"
    feedback = str(model.calls[1].messages[-1]["content"])
    assert "ZeroDivisionError" in feedback and "[cell 2]" in feedback


def test_output_is_truncated_with_a_note() -> None:
    r, model = rlm(["```repl\nprint('x' * 50_000)\n```", "FINAL(done)"], max_output_chars=1000)
    r.completion("q", CONTEXT)
    feedback = str(model.calls[1].messages[-1]["content"])
    assert "output truncated" in feedback and "50,001" in feedback
    assert len(feedback) < 2000


def test_root_model_never_receives_the_context() -> None:
    marker = "UNIQUE-NEEDLE-4471"
    context = "filler " * 5000 + marker + " filler" * 5000
    r, model = rlm(["```repl\nprint(len(context))\n```", "FINAL(done)"])
    r.completion("q", context)
    for call in model.calls:
        assert marker not in json.dumps(call.messages)
    system = str(model.calls[0].messages[0]["content"])
    assert f"{len(context):,} characters" in system


def test_list_context_metadata_is_described() -> None:
    r, model = rlm(["```repl\nFINAL(len(context))\n```"])
    assert r.completion("q", ["aa", "bbbb", "c"]).answer == "3"
    system = str(model.calls[0].messages[0]["content"])
    assert "a list of 3 strings" in system and "[2, 4, 1]" in system


def test_dict_context() -> None:
    r, _ = rlm(["```repl\nFINAL(sorted(context))\n```"])
    assert r.completion("q", {"b": "x", "a": "y"}).answer == '["a", "b"]'


def test_last_turn_after_max_iterations_asks_for_an_answer_without_code() -> None:
    r, model = rlm(
        ["```repl\nprint(1)\n```", "```repl\nprint(2)\n```", "FINAL(best guess)"], max_iterations=2
    )
    result = r.completion("q", CONTEXT)
    assert result.answer == "best guess"
    assert result.stopped == "iterations"
    assert "out of turns" in str(model.calls[-1].messages[-1]["content"])


def test_max_depth_zero_has_no_subcall_functions() -> None:
    r, model = rlm(["```repl\nllm_query('hi')\n```", "FINAL(x)"], max_depth=0)
    r.completion("q", CONTEXT)
    assert "NameError" in str(model.calls[1].messages[-1]["content"])
    assert "no sub-model functions" in str(model.calls[0].messages[0]["content"])


def test_depth_two_child_rlm_falls_back_to_plain_subcall() -> None:
    replies = {
        "Query: outer": [
            "```repl\nr = rlm_query('inner task', context='child text 7391')\nprint(r)\n```",
            "```repl\nFINAL(r)\n```",
        ],
        "Query: inner": [
            "```repl\nv = rlm_query('extract ' + context)\nprint(v)\n```",
            "```repl\nFINAL('child:' + v)\n```",
        ],
    }
    model = ScriptedModel(router(replies, sub=lambda p: "leaf" if "extract" in p else "?"))
    result = RLM(model, sandbox="inprocess", max_depth=2).completion("outer", CONTEXT)
    assert result.answer == "child:leaf"
    assert result.usage.calls == 5
    assert result.depth_reached == 2
    assert {d: u.calls for d, u in result.usage.by_depth.items()} == {0: 2, 1: 2, 2: 1}


def test_llm_batch_keeps_order_and_isolates_failures() -> None:
    def sub(prompt: str) -> str:
        if prompt == "boom":
            raise ConnectionError("sub model down")
        return prompt.upper()

    from recursa.errors import ModelError

    def sub_model_error(prompt: str) -> str:
        try:
            return sub(prompt)
        except ConnectionError as exc:
            raise ModelError(str(exc)) from exc

    code = (
        "```repl\nout = llm_batch(['a', 'boom', 'c'])\n"
        "print([isinstance(x, SubcallError) for x in out])\nFINAL(out)\n```"
    )
    model = ScriptedModel(router([code], sub=sub_model_error))
    result = RLM(model, sandbox="inprocess").completion("q", CONTEXT)
    assert json.loads(result.answer) == ["A", "[error: sub model down]", "C"]


def test_budget_exhaustion_mid_batch_stops_the_run() -> None:
    code = (
        "```repl\nanswer['content'] = 'partial'\nout = llm_batch([str(i) for i in range(10)])\n```"
    )
    model = ScriptedModel(router([code, "FINAL(never)"], sub=lambda p: "ok"))
    result = RLM(model, sandbox="inprocess", budget=Budget(calls=5)).completion("q", CONTEXT)
    assert result.stopped == "budget"
    assert result.usage.calls == 5  # 1 root turn + 4 of the 10 sub-calls
    assert result.answer == "partial"


def test_bad_configuration_is_refused() -> None:
    model = ScriptedModel(["x"])
    with pytest.raises(ConfigError):
        RLM(model, max_iterations=0)
    with pytest.raises(ConfigError):
        RLM(model, sandbox="nope")
    with pytest.raises(ConfigError):
        RLM(model, sandbox="inprocess").completion("q", "")
    with pytest.raises(ConfigError):
        RLM("nonexistent-provider/x")


def test_trace_has_tree_and_usage_matching_the_ledger(tmp_path: Path) -> None:
    from recursa.trace import load

    path = tmp_path / "run.jsonl"
    r, _ = rlm(["```repl\nv = llm_batch(['a', 'b'])\n```", "FINAL(done)"], trace=path)
    result = r.completion("q", CONTEXT)
    trace = load(path)
    assert trace.root is not None and trace.run_end is not None
    calls = [e for e in trace.events if e["type"] == "model_call"]
    assert sum(e["usage"]["input_tokens"] for e in calls) == result.usage.input_tokens
    assert len([e for e in trace.events if e["type"] == "subcall"]) == 2
    assert trace.run_end["usage"]["calls"] == result.usage.calls == 4
