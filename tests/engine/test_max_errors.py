"""``max_errors``: a node stops after that many failed cells in a row (``stopped="errors"``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recursa import RLM, ConfigError
from recursa.models.scripted import ScriptedModel

from .conftest import cell, complete

FAIL = cell("1 / 0")
OK = cell("print('fine')")


def test_stops_after_n_failed_cells_in_a_row(sandbox: str, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    replies = [cell("answer['content'] = 'held so far'"), FAIL, FAIL, cell("FINAL('late')")]
    result, model = complete(replies, sandbox, max_errors=2, trace=trace)
    assert (result.answer, result.stopped, result.iterations) == ("held so far", "errors", 3)
    assert len(model.calls) == 3  # no more turns after the second failure
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    ends = [e for e in events if e["type"] in ("node_end", "run_end")]
    assert [e["stopped"] for e in ends] == ["errors", "errors"]
    assert ends[-1]["answer"] == "held so far"


def test_a_successful_cell_resets_the_count(sandbox: str) -> None:
    replies = [FAIL, OK, FAIL, OK, FAIL, cell("FINAL('done')")]
    result, _ = complete(replies, sandbox, max_errors=2)
    assert (result.answer, result.stopped, result.iterations) == ("done", None, 6)


def test_failures_within_one_reply_count_and_the_rest_does_not_run(sandbox: str) -> None:
    reply = f"{FAIL}\n{FAIL}\n{cell('FINAL(1)')}"
    result, model = complete([reply], sandbox, max_errors=2)
    assert (result.answer, result.stopped, result.iterations) == ("", "errors", 1)
    assert len(model.calls) == 1


def test_a_timed_out_cell_counts_as_failed(sandbox: str) -> None:
    spin = cell("answer['content'] = 'before'\nwhile True:\n    pass")
    result, _ = complete([spin, cell("FINAL('x')")], sandbox, max_errors=1, cell_timeout=0.5)
    assert (result.answer, result.stopped, result.iterations) == ("before", "errors", 1)


def test_off_by_default(sandbox: str) -> None:
    result, model = complete([FAIL, FAIL, FAIL, "gave up: unknown"], sandbox, max_iterations=3)
    assert result.stopped == "iterations" and result.answer == "gave up: unknown"
    assert len(model.calls) == 4


def test_a_missing_final_var_is_a_failed_cell(sandbox: str) -> None:
    result, _ = complete(["FINAL_VAR(nope)", "FINAL_VAR(nope)", "FINAL(x)"], sandbox, max_errors=2)
    assert (result.stopped, result.iterations) == ("errors", 2)


def test_each_query_of_a_session_counts_afresh() -> None:
    from recursa.session import Session

    # the first query ends on a failed cell and a FINAL without code: one failure held
    model = ScriptedModel([FAIL, "FINAL(a)", FAIL, cell("FINAL('b')")])
    with Session(RLM(model, sandbox="inprocess", max_errors=2), "ctx") as session:
        assert session.completion("one").answer == "a"
        second = session.completion("two")
    assert (second.answer, second.stopped) == ("b", None)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_bad_values_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_errors"):
        RLM(ScriptedModel(["x"]), max_errors=bad)  # type: ignore[arg-type]
