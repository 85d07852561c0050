"""The REPL's scaffold survives model code, and ``rlm_query`` takes ``model=`` (issue 15).

A cell that rebinds or deletes a scaffold name (``context``, ``llm_query``, ``FINAL``, a
tool, ...) gets it back after the cell, with a note; ``answer`` is the model's to set.
``rlm_query(prompt, context=None, model=None, budget=None)`` runs a child on a model the
user allowed, and ``rlm_query_batched`` is ``rlm_batch``. Every test runs in real
sandboxes: a worker process and the in-process one.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from recursa import RLM
from recursa.models.scripted import ScriptedModel
from recursa.repl.protocol import BudgetLimits, RlmBatch, RlmQuery
from recursa.repl.runtime import SCAFFOLD_NAMES
from recursa.testing import ScriptedServer, is_root_turn, router

from .sandboxes import FakeHost, started

SANDBOXES = ["subprocess", "inprocess"]
T = 30.0
#: Every name restored in the test sandboxes: the scaffold and the one tool (``add``).
NAMES = [*SCAFFOLD_NAMES, "add"]


# -- the scaffold is restored ---------------------------------------------------------------
@pytest.mark.parametrize("backend", SANDBOXES)
async def test_a_rebound_scaffold_name_is_restored_with_a_note(backend: str) -> None:
    async with started(backend) as sb:
        first = await sb.run("llm_query = 'my notes'\nprint('stored')", timeout=T)
        assert first.error is None
        assert first.output == (
            "stored\n[note: `llm_query` is a reserved name and was restored; "
            "store your data under another name]"
        )
        after = await sb.run("print(llm_query('hi'))", timeout=T)
        assert after.output == "echo:hi\n" and after.error is None


@pytest.mark.parametrize("backend", SANDBOXES)
async def test_every_scaffold_name_comes_back_rebound_or_deleted(backend: str) -> None:
    async with started(backend) as sb:
        setup = f"NAMES = {NAMES!r}\n__orig = {{n: globals()[n] for n in NAMES}}\n"
        assert (await sb.run(setup, timeout=T)).output == ""
        rebound = await sb.run("for n in NAMES:\n    globals()[n] = 'x'\n", timeout=T)
        assert "are reserved names and were restored" in rebound.output
        assert all(f"`{n}`" in rebound.output for n in NAMES)
        check = "print(all(globals()[n] is __orig[n] for n in NAMES))"
        assert (await sb.run(check, timeout=T)).output.startswith("True\n")
        deleted = await sb.run("for n in NAMES:\n    del globals()[n]\n", timeout=T)
        assert all(f"`{n}`" in deleted.output for n in NAMES)
        assert (await sb.run(check, timeout=T)).output.startswith("True\n")
        works = await sb.run(
            "print(context, add(1, 2), llm_batch(['a'])[0], type(SHOW_VARS()).__name__)\n"
            "FINAL('done')",
            timeout=T,
        )
        assert works.output == "a short context 3 echo:a dict\n" and works.final == "done"


@pytest.mark.parametrize("backend", SANDBOXES)
async def test_the_original_context_object_comes_back(backend: str) -> None:
    async with started(backend, context=["one", "two"]) as sb:
        await sb.run("__orig = context\ncontext.append('three')", timeout=T)
        rebound = await sb.run("context = 'mine'", timeout=T)
        assert "`context` is a reserved name" in rebound.output
        # the same object, changed in place (an in-place change is the model's own)
        same = await sb.run("print(context is __orig, context)", timeout=T)
        assert same.output == "True ['one', 'two', 'three']\n"


@pytest.mark.parametrize("backend", SANDBOXES)
async def test_a_name_is_restored_even_when_the_cell_fails(backend: str) -> None:
    async with started(backend) as sb:
        failed = await sb.run("FINAL = print\n1 / 0", timeout=T)
        assert failed.error is not None and "ZeroDivisionError" in failed.error
        assert "`FINAL` is a reserved name and was restored" in failed.output
        done = await sb.run("FINAL('ok')", timeout=T)
        assert done.final == "ok" and done.output == ""


@pytest.mark.parametrize("backend", SANDBOXES)
async def test_answer_and_other_names_are_left_alone(backend: str) -> None:
    async with started(backend) as sb:
        own = await sb.run(
            "answer['content'] = 'draft'\nanswer = {'content': 'mine', 'ready': False}\n"
            "results = [1, 2]\nre = None",
            timeout=T,
        )
        assert own.output == "" and own.error is None
        kept = await sb.run("print(answer['content'], results, re)", timeout=T)
        assert kept.output == "mine [1, 2] None\n"


@pytest.mark.parametrize("backend", SANDBOXES)
async def test_a_clean_cell_gets_no_note(backend: str) -> None:
    async with started(backend) as sb:
        plain = await sb.run("x = llm_query('a')\nprint(x)", timeout=T)
        assert plain.output == "echo:a\n"


# -- rlm_query(model=...), rlm_query_batched: what the REPL sends -----------------------------
@pytest.mark.parametrize("backend", SANDBOXES)
async def test_rlm_query_and_its_batch_alias_send_the_model(backend: str) -> None:
    host = FakeHost()
    async with started(backend, host=host) as sb:
        cells = [
            "rlm_query('p', model='openai/other')",
            "rlm_query('p', 'ctx', 'openai/other', Budget(calls=2))",
            "rlm_query('p', 'ctx', Budget(calls=2))",  # the old positional budget
            "rlm_query_batched(['a', 'b'], model='openai/other')",
            "rlm_batch(['a'], ['c'])",
        ]
        for code in cells:
            result = await sb.run(code, timeout=T)  # the fake host knows no rlm calls
            assert result.error is not None and "unknown call" in result.error
    assert host.requests == [
        RlmQuery("p", model="openai/other"),
        RlmQuery("p", "ctx", BudgetLimits(calls=2), "openai/other"),
        RlmQuery("p", "ctx", BudgetLimits(calls=2)),
        RlmBatch(("a", "b"), model="openai/other"),
        RlmBatch(("a",), ("c",)),
    ]


@pytest.mark.parametrize("backend", SANDBOXES)
async def test_rlm_query_with_a_model_that_is_not_a_name_is_refused(backend: str) -> None:
    host = FakeHost()
    async with started(backend, host=host) as sb:
        result = await sb.run("rlm_query('p', model='http://evil/x')", timeout=T)
        assert result.error is not None and "is not a model name" in result.error
        result = await sb.run("rlm_query('p', model=5)", timeout=T)
        assert result.error is not None and "'model' must be str" in result.error
    assert host.requests == []


# -- rlm_query(model=...) and rlm_query_batched in a real run -------------------------------
def _other(body: dict[str, Any]) -> str:
    """The allowed third model: a node turn finishes at once; a sub-call answers plainly."""
    if body["messages"][0]["role"] == "system":
        return "```repl\nFINAL('child on other')\n```"
    return "plain other"


def _run(root_code: str, server: ScriptedServer, sandbox: str, **kw: Any) -> tuple[str, RLM]:
    replies = {
        "Query: outer": [f"```repl\ntry:\n    out = {root_code}\nexcept Exception as exc:\n"
                         "    out = 'ERROR: ' + str(exc)\nFINAL(out)\n```"],
        "Query: ": ["```repl\nFINAL('child on scripted: ' + context)\n```"],
    }  # fmt: skip
    rlm = RLM(
        ScriptedModel(router(replies)), sandbox=sandbox, base_url=server.url,
        allowed_models=["openai/other"], max_depth=2, **kw,
    )  # fmt: skip
    return rlm.completion("outer", context="root context").answer, rlm


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_rlm_query_runs_the_child_on_the_model_it_names(sandbox: str) -> None:
    with ScriptedServer(_other) as server:
        answer, _ = _run("rlm_query('inner job', model='openai/other')", server, sandbox)
        assert answer == "child on other"
        # the child's own turn went to the named model, with the system prompt of a node
        assert len(server.requests) == 1
        assert is_root_turn(server.requests[0]["messages"])
        assert "inner job" in str(server.requests[0]["messages"][1]["content"])


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_rlm_query_without_a_model_stays_on_the_sub_model(sandbox: str) -> None:
    with ScriptedServer(_other) as server:
        answer, _ = _run("rlm_query('inner job', context='given')", server, sandbox)
        assert answer == "child on scripted: given"
        assert server.requests == []


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_rlm_query_refuses_a_model_the_user_did_not_allow(sandbox: str) -> None:
    with ScriptedServer(_other) as server:
        answer, _ = _run("rlm_query('inner job', model='openai/expensive')", server, sandbox)
        assert server.requests == []
    assert answer.startswith("ERROR: ") and "'openai/expensive' is not allowed" in answer


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_rlm_query_batched_is_rlm_batch_with_a_model(sandbox: str) -> None:
    with ScriptedServer(_other) as server:
        code = "str(rlm_query_batched(['job a', 'job b'], contexts=['x', 'y']))"
        answer, _ = _run(code, server, sandbox)
        assert answer == "['child on scripted: x', 'child on scripted: y']"
        code = "str(rlm_query_batched(['job a', 'job b'], model='openai/other'))"
        answer, _ = _run(code, server, sandbox)
        assert answer == "['child on other', 'child on other']"
        assert len(server.requests) == 2


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_rlm_query_at_max_depth_is_a_sub_call_on_the_named_model(sandbox: str) -> None:
    with ScriptedServer(_other) as server:
        answer, rlm = _run("rlm_query('leaf', model='openai/other')", server, sandbox)
        assert answer == "child on other"
        depth_one = rlm.with_settings(max_depth=1)
        assert depth_one.completion("outer", context="c").answer == "plain other"
        assert not is_root_turn(server.requests[-1]["messages"])


def test_the_in_process_streams_pass_on_what_the_replaced_stream_has() -> None:
    """ipykernel routes a cell's output with ``sys.stdout.set_parent``: the in-process
    REPL's stream wrapper must still offer it, or later notebook cells print nothing."""
    from recursa.repl.runtime import _ThreadStream

    class KernelStream(io.StringIO):
        parent: object = None

        def set_parent(self, parent: object) -> None:
            self.parent = parent

    inner = KernelStream()
    wrapped = _ThreadStream(inner)
    wrapped.set_parent("cell-7")
    assert inner.parent == "cell-7"
    wrapped.write("shown")
    assert inner.getvalue() == "shown"
    with pytest.raises(AttributeError):
        wrapped.no_such_attribute  # noqa: B018
