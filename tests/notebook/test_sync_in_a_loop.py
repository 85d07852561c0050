"""The blocking API inside a running event loop (as in a notebook cell): the run goes on a
private loop in a worker thread; results, exceptions, context variables and Ctrl-C make
it back. And how a result shows in a notebook (``_repr_html_``)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import signal
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM, ConfigError, Result
from recursa.guards import LoopThread, run_blocking
from recursa.models.scripted import ScriptedModel
from recursa.testing import router

CONTEXT = "filler\n" * 100 + "The code is 7391.\n"
WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def in_a_cell(work: Coroutine[Any, Any, Any]) -> Any:
    """Run ``work`` the way a kernel runs a cell: inside a plain running loop, with
    Python's own SIGINT handler (``KeyboardInterrupt``)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(work)
    finally:
        loop.close()


def scripted_rlm(replies: list[str], **options: Any) -> RLM:
    return RLM(ScriptedModel(router(replies)), sandbox="inprocess", **options)


def test_completion_inside_a_running_loop_answers_on_a_worker_thread() -> None:
    seen: list[tuple[str, str]] = []

    def reply(messages: list[Any]) -> str:
        seen.append((WHO.get(), threading.current_thread().name))
        return "```repl\nFINAL(context.split('code is ')[1][:4])\n```"

    rlm = RLM(ScriptedModel(reply), sandbox="inprocess")

    async def cell() -> Result:
        asyncio.get_running_loop()  # a loop runs here, as in a notebook
        WHO.set("the caller")
        return rlm.completion("What is the code?", CONTEXT)

    result = in_a_cell(cell())
    assert result.answer == "7391" and result.stopped is None
    assert seen == [("the caller", "recursa-loop")]  # context copied; not the caller's thread


async def test_completion_inside_pytest_asyncio_and_acompletion_on_the_same_loop() -> None:
    rlm = scripted_rlm(["```repl\nFINAL('ok')\n```"])
    assert rlm.completion("q", CONTEXT).answer == "ok"
    assert (await rlm.acompletion("q", CONTEXT)).answer == "ok"


def test_exceptions_come_back_to_the_caller() -> None:
    rlm = scripted_rlm(["```repl\nFINAL('ok')\n```"])

    async def empty_query() -> Result:
        return rlm.completion("   ", CONTEXT)

    with pytest.raises(ConfigError, match="query is empty"):
        in_a_cell(empty_query())

    async def boom() -> None:
        raise KeyError("inside")

    async def cell() -> None:
        run_blocking(boom())

    with pytest.raises(KeyError, match="inside"):
        in_a_cell(cell())


def test_ctrl_c_cancels_the_run_lets_it_clean_up_then_propagates(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    model = ScriptedModel(router(["```repl\nFINAL('late')\n```"]), latency=30)
    rlm = RLM(model, sandbox="inprocess", trace=trace)

    async def cell() -> Result:
        return rlm.completion("q", CONTEXT)

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            in_a_cell(cell())
    finally:
        timer.cancel()
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert events[-1]["type"] == "run_end"  # the run's cleanup ran before the interrupt came out
    assert not [t for t in threading.enumerate() if t.name == "recursa-loop"]


def test_a_session_keeps_its_repl_on_one_private_loop() -> None:
    rlm = scripted_rlm(["```repl\nx = 41\nFINAL('set')\n```", "```repl\nFINAL(x + 1)\n```"])

    async def cell() -> list[str]:
        with rlm.session(CONTEXT) as session:
            return [session.completion("set x").answer, session.completion("x + 1?").answer]

    assert in_a_cell(cell()) == ["set", "42"]
    assert not [t for t in threading.enumerate() if t.name == "recursa-session"]


def test_a_loop_thread_runs_many_coroutines_and_refuses_after_close() -> None:
    worker = LoopThread()

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    first, second = worker.run(where()), worker.run(where())
    assert first is second
    worker.close()
    worker.close()  # idempotent
    coro = where()
    with pytest.raises(RuntimeError, match="closed"):
        worker.run(coro)


def test_the_html_of_a_result_escapes_the_answer_and_tells_how_to_open_the_trace(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "run one.jsonl"
    rlm = scripted_rlm(
        ["```repl\nprint(llm_query('hi'))\nFINAL('<script>alert(1)</script> & <b>x</b>')\n```"],
        trace=trace,
    )
    result = rlm.completion("q", CONTEXT)
    html = result._repr_html_()
    assert "<script>" not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;" in html
    assert "answered" in html and "calls" in html
    assert "depth 0:" in html and "depth 1:" in html  # the recursion tree, in brief
    assert f"recursa view &#x27;{trace}&#x27;" in html  # quoted for the shell, then escaped


def test_the_html_of_a_stopped_result_with_a_long_answer() -> None:
    rlm = scripted_rlm(["```repl\nprint(1)\n```"], max_iterations=1)
    result = rlm.completion("q", CONTEXT)
    result.answer = "<i>" * 3000
    result.error = "<img src=x onerror=alert(1)>"
    html = result._repr_html_()
    assert "<i>" not in html and "<img" not in html
    assert f"stopped: {result.stopped}" in html
    assert "more characters in result.answer" in html
