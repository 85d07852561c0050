"""Running out of turns: one extraction call asks for the answer in plain text.

A code block is never an answer: a reply that is only code (or nothing) leaves
the REPL's held ``answer["content"]``. The node still ends with
``stopped="iterations"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from recursa import RLM
from recursa.errors import BudgetExceeded
from recursa.models.base import Message
from recursa.models.scripted import ScriptedModel
from recursa.session import Session
from recursa.testing import router

from .conftest import CONTEXT, cell, complete, prompt_of

EXPLORE = [
    cell("found = [3, 1, 4, 1, 5]\nnote = 'the code is 7391' + ' padding' * 100\nprint('seen')"),
    cell("print(len(found), 'items')"),
]


def test_a_plain_text_extraction_is_the_answer(sandbox: str) -> None:
    result, model = complete([*EXPLORE, "The secret code is 7391."], sandbox, max_iterations=2)
    assert result.answer == "The secret code is 7391."
    assert result.stopped == "iterations"
    assert result.iterations == 2
    assert result.usage.calls == 3  # the extraction is one metered call
    extraction = prompt_of(model)
    assert "out of turns" in extraction and "Do not write code" in extraction
    assert "What is the secret code?" in extraction  # the query, again
    assert "5 items" in extraction  # the last cells' outputs
    # the variables: names, types and sizes, short previews
    assert "found: list, len 5 = [3, 1, 4, 1, 5]" in extraction
    assert "note: str, len 816 = 'the code is 7391" in extraction
    assert "padding" * 100 not in extraction.replace(" ", "")
    assert "context:" not in extraction and "__recursa" not in extraction
    # one user turn for the extraction (the last outputs are in it, not a turn of their own)
    assert model.calls[-1].messages[-2]["role"] == "assistant"


def test_the_listing_leaves_no_name_behind(sandbox: str) -> None:
    replies = [*EXPLORE, "done", cell("print(sorted(SHOW_VARS()))\nFINAL('x')")]
    model = ScriptedModel(router(replies))
    rlm = RLM(model, sandbox=sandbox, max_iterations=2)
    with Session(rlm, CONTEXT) as session:
        assert session.completion("first?").answer == "done"
        second = session.completion("second?")
    assert second.answer == "x"
    assert "__recursa" not in json.dumps([c.messages for c in model.calls])


def test_a_code_only_extraction_is_never_the_answer(sandbox: str) -> None:
    code = cell("FINAL('from code')")
    result, _ = complete([*EXPLORE, code], sandbox, max_iterations=2)
    assert result.answer == ""  # nothing held: empty, never the code block
    assert "```" not in result.answer and "from code" not in result.answer
    assert result.stopped == "iterations"


def test_a_code_only_extraction_leaves_the_held_answer(sandbox: str, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    replies = [
        cell("answer['content'] = 'probably 7391'"),
        cell("print('checking')"),
        cell("answer['content'] = 'overwritten'\nprint('ran')"),
    ]
    result, model = complete(replies, sandbox, max_iterations=2, trace=trace)
    assert result.answer == "probably 7391"  # the extraction's code did not run
    assert result.stopped == "iterations"
    extraction = prompt_of(model)
    assert "not marked ready" in extraction and "probably 7391" in extraction
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [e["code"].strip() for e in events if e["type"] == "cell"] == [
        "answer['content'] = 'probably 7391'",
        "print('checking')",
    ]
    end = events[-1]
    assert end["type"] == "run_end" and end["stopped"] == "iterations"
    assert end["answer"] == "probably 7391"


def test_an_empty_extraction_leaves_the_held_answer(sandbox: str) -> None:
    replies = [cell("answer['content'] = 'held'"), cell("print(1)"), "   "]
    result, _ = complete(replies, sandbox, max_iterations=2)
    assert (result.answer, result.stopped) == ("held", "iterations")


def test_no_held_answer_is_not_mentioned(sandbox: str) -> None:
    result, model = complete([*EXPLORE, "7391"], sandbox, max_iterations=2)
    assert result.answer == "7391"
    assert "not marked ready" not in prompt_of(model)


def test_final_in_the_extraction_and_prose_around_code(sandbox: str) -> None:
    result, _ = complete([*EXPLORE, "I checked.\nFINAL(7391)"], sandbox, max_iterations=2)
    assert (result.answer, result.stopped) == ("7391", "iterations")
    result, _ = complete([*EXPLORE, "FINAL_VAR(found)"], sandbox, max_iterations=2)
    assert result.answer == "[3, 1, 4, 1, 5]"
    mixed = "The code is 7391.\n" + cell("print('not run')")
    result, _ = complete([*EXPLORE, mixed], sandbox, max_iterations=2)
    assert result.answer == "The code is 7391."


def test_typed_answers_from_the_extraction_validate(sandbox: str) -> None:
    result, _ = complete([*EXPLORE, "7391"], sandbox, max_iterations=2, output_type=int)
    assert (result.output, result.stopped, result.error) == (7391, "iterations", None)
    result, _ = complete([*EXPLORE, "no idea"], sandbox, max_iterations=2, output_type=int)
    assert result.stopped == "iterations" and result.error is not None
    assert result.output is None


def test_a_budget_stop_during_the_extraction_keeps_the_held_answer(sandbox: str) -> None:
    play = router([cell("answer['content'] = 'partial'"), cell("print(1)"), "unused"])
    asked: list[str] = []

    def reply(messages: list[Message]) -> str:
        if "out of turns" in str(messages[-1]["content"]):
            asked.append("extraction")
            raise BudgetExceeded("tokens")
        return play(messages)

    model = ScriptedModel(reply)
    result = RLM(model, sandbox=sandbox, max_iterations=2).completion("q", CONTEXT)
    assert (result.answer, result.stopped) == ("partial", "budget")
    assert asked == ["extraction"]


def test_no_code_ever_ran_needs_no_sandbox() -> None:
    model = ScriptedModel(router(["Thinking.", "Still thinking.", "7391"]))
    result = RLM(model, sandbox="subprocess", max_iterations=2).completion("q", CONTEXT)
    assert (result.answer, result.stopped) == ("7391", "iterations")
    assert "variables" not in prompt_of(model)
