"""Both system prompts teach citing: the full one and the compact one small models get
(built in or through a custom template's ``{repl_functions}``), in a line that names no
task's answer."""

from __future__ import annotations

import pytest

from recursa.context import Context
from recursa.models.base import Message
from recursa.models.scripted import ScriptedModel
from recursa.prompts import system_prompt
from recursa.prompts_compact import compact_system_prompt
from recursa.rlm import RLM
from recursa.testing import router

CONTEXT = "Log: the backup failed on host db-7.\n" * 20
CITE = "FINAL(answer, cite=[quote"


@pytest.mark.parametrize("subcalls", [True, False])
def test_the_compact_prompt_teaches_cite(subcalls: bool) -> None:
    info = Context(CONTEXT).info
    built_in = compact_system_prompt(info, subcalls=subcalls, max_depth=1)
    custom = compact_system_prompt(
        info, subcalls=subcalls, max_depth=1, template="Custom.\n{repl_functions}"
    )
    for prompt in (built_in, custom):
        (line,) = [x for x in prompt.splitlines() if CITE in x]
        assert "exact quotes" in line and "db-7" not in line
    assert CITE in system_prompt(info, max_depth=1)  # as the full prompt does


def test_a_compact_model_is_taught_cite_and_its_citation_verifies() -> None:
    seen: list[str] = []

    def reply(messages: list[Message]) -> str:
        seen.append(str(messages[0]["content"]))
        return router(["```python\nFINAL('db-7', cite=['failed on host db-7'])\n```"])(messages)

    model = ScriptedModel(reply)
    model.prompt_style = "compact"  # type: ignore[attr-defined]
    result = RLM(model, sandbox="inprocess").completion("Which host failed?", CONTEXT)
    assert seen[0].startswith("You answer a query about a very long text.") and CITE in seen[0]
    assert [(c.quote, c.verified) for c in result.citations] == [("failed on host db-7", True)]
