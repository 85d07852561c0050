"""The contract every sandbox keeps, run against each backend.

Docker runs only where a daemon answers `docker info`.
"""

from __future__ import annotations

import pytest

from recursa.repl.base import Sandbox

from .sandboxes import BACKENDS, FakeHost, started

pytestmark = pytest.mark.parametrize("backend", BACKENDS)

T = 10.0  # a cell timeout no healthy cell gets near


async def run(sandbox: Sandbox, code: str, timeout: float = T) -> tuple[str, str | None]:
    result = await sandbox.run(code, timeout=timeout)
    return result.output, result.error


async def test_variables_persist_across_cells(backend: str) -> None:
    async with started(backend) as sb:
        assert await run(sb, "x = 40\ny = 2") == ("", None)
        assert await run(sb, "print(x + y)") == ("42\n", None)


async def test_an_exception_keeps_state_and_shows_the_traceback(backend: str) -> None:
    async with started(backend) as sb:
        await run(sb, "kept = 'yes'")
        output, error = await run(sb, "print('before')\n1 / 0")
        assert output == "before\n"
        assert error is not None
        assert "ZeroDivisionError" in error and "<cell 2>" in error and "1 / 0" in error
        assert await run(sb, "kept") == ("yes\n", None)


async def test_exit_is_only_a_cell_error(backend: str) -> None:
    async with started(backend) as sb:
        await run(sb, "kept = 1")
        for code in ("exit()", "quit(3)", "import sys\nsys.exit(2)"):
            _, error = await run(sb, code)
            assert error is not None and "SystemExit" in error
        assert await run(sb, "kept") == ("1\n", None)


async def test_syntax_errors_are_reported(backend: str) -> None:
    async with started(backend) as sb:
        _, error = await run(sb, "def (:")
        assert error is not None and "SyntaxError" in error


async def test_the_trailing_expression_is_displayed(backend: str) -> None:
    async with started(backend) as sb:
        assert await run(sb, "a = [1, 2]\na + [3]") == ("[1, 2, 3]\n", None)
        assert await run(sb, "None") == ("", None)


async def test_long_output_is_truncated_with_a_note(backend: str) -> None:
    async with started(backend, max_output_chars=100) as sb:
        output, error = await run(sb, "print('x' * 5000)")
        assert error is None
        assert output.startswith("x" * 100)
        assert "[output truncated: showing the first 100 of 5,001 characters]" in output


async def test_llm_query_goes_through_the_host(backend: str) -> None:
    host = FakeHost()
    async with started(backend, host=host) as sb:
        assert await run(sb, "llm_query('hello')") == ("echo:hello\n", None)
        assert host.calls == [("llm_query", {"prompt": "hello", "model": None})]


async def test_a_failed_host_call_raises_in_the_repl(backend: str) -> None:
    async with started(backend) as sb:
        code = "try:\n    llm_query('fail')\nexcept Exception as e:\n    print(type(e).__name__, e)"
        assert await run(sb, code) == ("HostCallError the model refused\n", None)


async def test_llm_batch_keeps_order_and_marks_failed_items(backend: str) -> None:
    async with started(backend) as sb:
        await run(sb, "out = llm_batch(['a', 'fail', 'c'])")
        assert await run(sb, "out[0], out[2]") == ("('echo:a', 'echo:c')\n", None)
        assert await run(sb, "isinstance(out[1], SubcallError), out[1].error") == (
            "(True, 'the model refused')\n",
            None,
        )
        assert await run(sb, "out[1]") == ("[error: the model refused]\n", None)


async def test_sub_calls_from_threads_run_concurrently(backend: str) -> None:
    async with started(backend) as sb:
        code = (
            "from concurrent.futures import ThreadPoolExecutor\n"
            "with ThreadPoolExecutor(4) as pool:\n"
            "    got = list(pool.map(llm_query, ['a', 'b', 'c', 'd', 'e']))\n"
            "got"
        )
        assert await run(sb, code) == (
            "['echo:a', 'echo:b', 'echo:c', 'echo:d', 'echo:e']\n",
            None,
        )


async def test_tools_call_the_host(backend: str) -> None:
    async with started(backend) as sb:
        assert await run(sb, "add(2, 3, 4)") == ("9\n", None)


async def test_final_ends_with_the_answer(backend: str) -> None:
    async with started(backend) as sb:
        result = await sb.run("print('working')\nFINAL('the answer')\nprint('never')", timeout=T)
        assert (result.final, result.output, result.error) == ("the answer", "working\n", None)


async def test_final_var_names_a_variable(backend: str) -> None:
    async with started(backend) as sb:
        await run(sb, "result = {'n': 3}")
        result = await sb.run("FINAL_VAR('result')", timeout=T)
        assert result.final == '{"n": 3}'


async def test_final_cannot_be_swallowed(backend: str) -> None:
    async with started(backend) as sb:
        result = await sb.run("try:\n    FINAL('x')\nexcept Exception:\n    pass", timeout=T)
        assert result.final == "x"


async def test_the_answer_dict_ends_too(backend: str) -> None:
    async with started(backend) as sb:
        result = await sb.run("answer['content'] = 'done'\nanswer['ready'] = True", timeout=T)
        assert result.final == "done"


async def test_show_vars_lists_user_variables(backend: str) -> None:
    async with started(backend) as sb:
        await run(sb, "notes = ['a', 'b']\n_private = 1")
        output, error = await run(sb, "SHOW_VARS()")
        assert error is None
        assert "'notes': 'list, len 2'" in output and "_private" not in output


async def test_budget_asks_the_host(backend: str) -> None:
    async with started(backend) as sb:
        assert await run(sb, "BUDGET()['calls']") == ("10\n", None)


async def test_a_cell_timeout_interrupts_and_keeps_variables(backend: str) -> None:
    async with started(backend) as sb:
        await run(sb, "x = 'still here'")
        result = await sb.run("import time\nwhile True:\n    time.sleep(0.01)", timeout=0.5)
        assert result.timed_out
        assert result.error is not None and "interrupted" in result.error
        assert not result.restarted
        assert await run(sb, "x") == ("still here\n", None)


async def test_a_str_context(backend: str) -> None:
    async with started(backend, "héllo wörld ✓") as sb:
        assert await run(sb, "type(context).__name__, len(context), context[-1]") == (
            "('str', 13, '✓')\n",
            None,
        )


async def test_a_list_context(backend: str) -> None:
    async with started(backend, ["doc one", "doc two"]) as sb:
        assert await run(sb, "type(context).__name__, context[1]") == (
            "('list', 'doc two')\n",
            None,
        )


async def test_a_dict_context(backend: str) -> None:
    async with started(backend, {"title": "T", "pages": ["p1", "p2"]}) as sb:
        assert await run(sb, "context['pages'][1], sorted(context)") == (
            "('p2', ['pages', 'title'])\n",
            None,
        )


async def test_isolation_is_stated(backend: str) -> None:
    async with started(backend) as sb:
        assert sb.isolation
        if backend == "inprocess":
            assert "not a security boundary" in sb.isolation


async def test_close_is_idempotent(backend: str) -> None:
    async with started(backend) as sb:
        await sb.close()
        await sb.close()
