"""A custom system prompt (``RLM(system_prompt=...)``) and its placeholders."""

from __future__ import annotations

import pytest

from recursa import RLM, ConfigError, prompts
from recursa.context import Context
from recursa.models.scripted import ScriptedModel
from recursa.prompts_compact import compact_system_prompt
from recursa.testing import router

from .conftest import CONTEXT, cell

ALL = (
    "Custom. {context_description}\nFunctions:\n{repl_functions}{tools}"
    'Depth {max_depth}. Reply as JSON: {{"answer": "..."}}'
)


def lookup(name: str) -> str:
    """Look a name up in the directory."""
    return name.upper()


def system_of(model: ScriptedModel, call: int = 0) -> str:
    return str(model.calls[call].messages[0]["content"])


def test_every_placeholder_is_filled_in(sandbox: str) -> None:
    model = ScriptedModel(router([cell("FINAL(lookup('x') + str(len(context)))")]))
    rlm = RLM(model, sandbox=sandbox, system_prompt=ALL, tools={"lookup": lookup})
    result = rlm.completion("q", CONTEXT)
    assert result.answer == f"X{len(CONTEXT)}"  # the REPL is the same as ever
    system = system_of(model)
    assert system.startswith("Custom. `context` is a string of ")
    assert f"{len(CONTEXT):,} characters" in system
    assert "- `llm_query(prompt, model=None) -> str`" in system
    assert "- `FINAL(answer)`" in system
    assert "- `lookup(name: str) -> str`: Look a name up in the directory." in system
    assert 'Depth 1. Reply as JSON: {"answer": "..."}' in system
    assert "How to work" not in system  # nothing of the built-in text besides the pieces
    assert "{" + "tools}" not in system


def test_the_pieces_follow_the_depth() -> None:
    replies = {
        "Query: outer": [cell("r = rlm_query('inner task', context='c')\nFINAL(r)")],
        "Query: inner": ["FINAL(leaf)"],
    }
    model = ScriptedModel(router(replies))
    template = "D={max_depth}\n{repl_functions}{tools}"
    result = RLM(model, sandbox="inprocess", max_depth=2, system_prompt=template).completion(
        "outer", CONTEXT
    )
    assert result.answer == "leaf"
    root, child = system_of(model, 0), system_of(model, 1)
    assert root.startswith("D=2\n") and child.startswith("D=2\n")
    assert "start a child RLM" in root and "start a child RLM" not in child
    assert "the same as llm_query/llm_batch" in child
    assert "D=0" in system_of_run(template, max_depth=0)
    assert "no sub-model functions" in system_of_run(template, max_depth=0)


def system_of_run(template: str, **options: object) -> str:
    model = ScriptedModel(router(["FINAL(x)"]))
    RLM(model, sandbox="inprocess", system_prompt=template, **options).completion(  # type: ignore[arg-type]
        "q", "ctx"
    )
    return system_of(model)


def test_no_tools_leave_the_tools_placeholder_empty() -> None:
    assert system_of_run("[{tools}]") == "[]"


def test_the_built_in_prompt_is_built_from_the_same_pieces() -> None:
    info = Context(CONTEXT).info
    specs = RLM(ScriptedModel(["x"]), tools={"lookup": lookup}).tools.specs()
    built_in = prompts.system_prompt(info, max_depth=2, depth=1, sub_window=1000, tools=specs)
    for piece in (
        prompts.describe_context(info),
        prompts.repl_functions(2, 1, 1000),
        prompts.tool_lines(specs),
    ):
        assert piece and piece in built_in
    same = prompts.system_prompt(
        info, max_depth=2, depth=1, sub_window=1000, tools=specs,
        template=prompts.BUILTIN_SYSTEM_PROMPT,
    )  # fmt: skip
    assert same == built_in
    assert system_of_run("x {max_depth}") != system_of_run(prompts.BUILTIN_SYSTEM_PROMPT)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Hi {foo}", r"unknown placeholder \{foo\}"),
        ("Hi {}", r"unknown placeholder \{\}"),
        ("Hi {0}", r"unknown placeholder \{0\}"),
        ("Hi {context_description.__class__}", "unknown placeholder"),
        ('JSON: {"a": 1}', "unknown placeholder"),
        ("Hi {max_depth!r}", "plain"),
        ("Hi {max_depth:>4}", "plain"),
        ("Hi {tools", "literal braces"),
        ("Hi }", "literal braces"),
    ],
)
def test_bad_templates_are_refused_when_the_rlm_is_built(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        RLM(ScriptedModel(["x"]), system_prompt=template)
    for name in prompts.PLACEHOLDERS:
        assert "{" + name + "}" in str(caught.value)


def test_literal_braces_and_every_placeholder_are_accepted() -> None:
    template = " ".join("{" + name + "}" for name in prompts.PLACEHOLDERS) + " {{x}} {{"
    RLM(ScriptedModel(["x"]), system_prompt=template)
    assert system_of_run('{{"k": [1, 2]}} }}{{') == '{"k": [1, 2]} }{'


def test_placeholders_are_documented_one_line_each() -> None:
    assert set(prompts.PLACEHOLDERS) == {"context_description", "repl_functions", "tools",
                                         "max_depth"}  # fmt: skip
    assert all(text and "\n" not in text for text in prompts.PLACEHOLDERS.values())


def test_braces_in_the_context_preview_are_kept() -> None:
    model = ScriptedModel(router(["FINAL(x)"]))
    RLM(model, sandbox="inprocess", system_prompt="C: {context_description}").completion(
        "q", '{"a": "{b}"}'
    )
    assert '{"a": "{b}"}' in system_of(model)


def test_the_compact_style_takes_the_custom_prompt(sandbox: str) -> None:
    model = ScriptedModel(router([cell("FINAL(lookup('y'))")]))
    model.prompt_style = "compact"  # type: ignore[attr-defined]
    rlm = RLM(model, sandbox=sandbox, system_prompt=ALL, tools={"lookup": lookup})
    assert rlm.completion("q", CONTEXT).answer == "Y"
    system = system_of(model)
    assert system.startswith("Custom. `context` is a str of ")
    assert "- llm_query(prompt) asks a helper model" in system
    assert "reply with FINAL(answer) in a code block" in system
    assert "- `lookup(name: str) -> str`" in system
    assert 'Depth 1. Reply as JSON: {"answer": "..."}' in system
    assert "Example. Query" not in system
    # without a custom prompt, the compact built-in one
    info = Context(CONTEXT).info
    assert compact_system_prompt(info, subcalls=True, max_depth=1).startswith(
        "You answer a query about a very long text."
    )
