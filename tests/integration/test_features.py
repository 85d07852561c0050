"""Tools, typed answers, sessions, images, early stop and branch budgets, over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from recursa import RLM, Budget
from recursa.testing import ScriptedServer, http_router, is_root_turn, turn_index
from tests.helpers import run_cli

SANDBOXES = ["subprocess", "inprocess"]
SECRET = "host-only-value-5521"


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def make(reply: Any, **kw: Any) -> ScriptedServer:
        server = ScriptedServer(reply, **kw).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_tool_reads_a_value_only_the_host_knows(serve: Any, sandbox: str) -> None:
    def lookup(key: str) -> str:
        """Look a key up in the host's secret store."""
        return SECRET if key == "db" else "unknown"

    async def double(x: int) -> int:
        return 2 * x

    def broken() -> None:
        raise PermissionError("no access to that")

    code = (
        "```repl\ntry:\n    broken()\nexcept Exception as e:\n    err = str(e)\n"
        "FINAL(f'{lookup(\"db\")}|{double(21)}|{err}')\n```"
    )
    server = serve(http_router([code]))
    rlm = RLM(
        "openai/s",
        base_url=server.url,
        sandbox=sandbox,
        tools={"lookup": lookup, "double": double, "broken": broken},
    )
    result = rlm.completion("q", "ctx")
    assert result.answer == f"{SECRET}|42|broken() raised PermissionError: no access to that"
    system = server.requests[0]["messages"][0]["content"]
    assert "lookup(key: str) -> str" in system and "secret store" in system


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_typed_answer_fails_validation_then_passes(serve: Any, sandbox: str) -> None:
    class City(BaseModel):
        name: str
        population: int

    turns = [
        "```repl\nFINAL({'name': 'Oslo', 'population': 'many'})\n```",
        "```repl\nFINAL({'name': 'Oslo', 'population': 709000})\n```",
    ]
    server = serve(http_router(turns))
    result = RLM("openai/s", base_url=server.url, sandbox=sandbox).completion(
        "Which city?", "Oslo has 709000 people.", output_type=City
    )
    assert result.output == City(name="Oslo", population=709000)
    assert json.loads(result.answer) == {"name": "Oslo", "population": 709000}
    second = server.requests[1]["messages"]
    assert "does not validate" in second[-1]["content"] and "population" in second[-1]["content"]
    assert '"population"' in second[1]["content"]  # the schema was shown up front


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_session_second_question_uses_a_variable_from_the_first(serve: Any, sandbox: str) -> None:
    def reply(body: dict[str, Any]) -> str:
        last = body["messages"][-1]["content"]
        if "first question" in last:
            return "```repl\nwords = context.split()\nFINAL(len(words))\n```"
        if "second question" in last:
            return "```repl\nFINAL(words[-1])\n```"
        return "FINAL(?)"

    server = serve(reply)
    rlm = RLM("openai/s", base_url=server.url, sandbox=sandbox)
    with rlm.session(context="alpha beta gamma") as session:
        assert session.completion("first question").answer == "3"
        assert session.completion("second question").answer == "gamma"
    history = server.requests[1]["messages"]
    assert any("first question" in m["content"] for m in history)  # history kept


def test_session_history_is_compacted_when_long(serve: Any) -> None:
    def reply(body: dict[str, Any]) -> str:
        last = body["messages"][-1]["content"]
        if "Summarise" in last:
            return "Summary: words holds the split context."
        padding = "# " + "x" * 2500
        return f"```repl\n{padding}\nwords = context.split()\nFINAL('ok')\n```"

    server = serve(reply)
    rlm = RLM("openai/s", base_url=server.url, sandbox="inprocess", compact_after_chars=6000)
    with rlm.session(context="a b c") as session:
        for i in range(4):
            session.completion(f"question {i}")
    compacted = [r for r in server.requests if "Summarise" in r["messages"][-1]["content"]]
    assert compacted
    after = server.requests[-1]["messages"]
    assert any("Summary of the earlier conversation" in str(m["content"]) for m in after)


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_image_passed_to_a_subcall_as_content_parts(serve: Any, sandbox: str) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    turns = [
        "```repl\nimg = context[1]\nFINAL(llm_query('Describe: ' + context[0], images=[img]))\n```"
    ]
    server = serve(http_router(turns, lambda p: "a tiny black square"))
    result = RLM("openai/s", base_url=server.url, sandbox=sandbox).completion(
        "Describe the picture", ["caption: test image", png]
    )
    assert result.answer == "a tiny black square"
    sub = next(r for r in server.requests if not is_root_turn(r["messages"]))
    parts = sub["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Describe: caption: test image"}
    assert parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_batch_stopped_early_charges_cancelled_calls(serve: Any, sandbox: str) -> None:
    code = (
        "```repl\nout = llm_batch(['p%d' % i for i in range(12)], "
        "stop_when=lambda answers: any('FOUND' in a for a in answers))\n"
        "done = [a for a in out if not isinstance(a, SubcallError)]\n"
        "FINAL(f'{len(done)} {sum(isinstance(a, SubcallError) for a in out)}')\n```"
    )

    def sub(prompt: str) -> str:
        return "FOUND" if prompt == "p0" else "nothing"

    server = serve(http_router([code], sub), latency=0.0)
    # p0 answers at once, the others are slow: make the server sleep for them.
    original = server.reply

    def slow(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        if not is_root_turn(body["messages"]) and prompt != "p0":
            import time

            time.sleep(1.5)
        return original(body)

    server.reply = slow
    rlm = RLM("openai/s", base_url=server.url, sandbox=sandbox, max_concurrency=4)
    result = rlm.completion("q", "ctx")
    completed, cancelled = map(int, result.answer.split())
    assert completed < 12 and cancelled > 0 and completed + cancelled == 12
    # Every started sub-call is charged, the cancelled ones for their prompt.
    assert result.usage.by_depth[1].calls >= completed
    assert result.usage.by_depth[1].input_tokens > 0


def test_branch_budget_caps_a_child_within_the_parent(serve: Any) -> None:
    replies = {
        "Query: outer": [
            "```repl\nr = rlm_query('inner job', context='data', budget=Budget(calls=2))\n"
            "left = BUDGET()\nFINAL(r + '|' + str(left['calls']))\n```"
        ],
        "Query: inner": ["```repl\nprint(llm_batch(['a', 'b', 'c']))\n```", "FINAL(never)"],
    }
    server = serve(http_router(replies, lambda p: "ok"))
    rlm = RLM(
        "openai/s", base_url=server.url, sandbox="inprocess", max_depth=2, budget=Budget(calls=20)
    )
    result = rlm.completion("outer", "ctx")
    answer, left = result.answer.split("|")
    assert answer == ""  # the child ran out before it could answer
    # root turn + child turn + 1 sub-call (then the child's cap of 2 was hit)
    assert result.usage.calls == 3
    assert int(left) == 17


def test_async_api_runs_concurrent_completions(serve: Any) -> None:
    server = serve(http_router(["```repl\nFINAL(context.upper())\n```"]))
    rlm = RLM("openai/s", base_url=server.url, sandbox="inprocess")

    async def main() -> list[str]:
        results = await asyncio.gather(*(rlm.acompletion("q", f"c{i}") for i in range(5)))
        return [r.answer for r in results]

    assert asyncio.run(main()) == ["C0", "C1", "C2", "C3", "C4"]
    assert turn_index(server.requests[0]["messages"]) == 0


def test_cli_tools_and_schema(serve: Any, clean_env: dict[str, str], tmp_path: Any) -> None:
    turns = [
        "```repl\nFINAL({'secret': host_secret()})\n```",
    ]
    server = serve(http_router(turns))
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    schema = tmp_path / "s.json"
    schema.write_text(
        json.dumps(
            {"type": "object", "required": ["secret"], "properties": {"secret": {"type": "string"}}}
        )
    )
    env = {**clean_env, "RECURSA_TEST_HOST_SECRET": SECRET}
    proc = run_cli(
        [
            "run",
            "q",
            "-c",
            str(ctx),
            "--model",
            "openai/s",
            "--base-url",
            server.url,
            "--sandbox",
            "inprocess",
            "--tools",
            "tests.integration.toolbox:TOOLS",
            "--schema",
            str(schema),
            "--json",
        ],
        env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(json.loads(proc.stdout)["answer"]) == {"secret": SECRET}


def test_cli_bad_schema_and_tools_are_usage_errors(
    clean_env: dict[str, str], tmp_path: Any
) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    base = [
        "run",
        "q",
        "-c",
        str(ctx),
        "--model",
        "openai/s",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ]
    proc = run_cli([*base, "--schema", str(tmp_path / "missing.json")], clean_env)
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = run_cli([*base, "--tools", "nonexistent_mod:TOOLS"], clean_env)
    assert proc.returncode == 2 and "cannot import" in proc.stderr


def test_cli_chat_keeps_variables_between_questions(
    serve: Any, clean_env: dict[str, str], tmp_path: Any
) -> None:
    def reply(body: dict[str, Any]) -> str:
        last = body["messages"][-1]["content"]
        if "count" in last:
            return "```repl\nn = len(context.split())\nFINAL(n)\n```"
        return "```repl\nFINAL(n * 10)\n```"

    server = serve(reply)
    ctx = tmp_path / "c.txt"
    ctx.write_text("one two three four")
    proc = run_cli(
        [
            "chat",
            "-c",
            str(ctx),
            "--model",
            "openai/s",
            "--base-url",
            server.url,
            "--sandbox",
            "inprocess",
        ],
        clean_env,
        stdin="count the words\ntimes ten\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["4", "40"]


RESUME_TURNS = [
    "```repl\nwords = context.split()\nnotes = llm_batch(words[:3])\nprint(notes)\n```",
    "```repl\ntotal = len(words) + len(notes)\nprint(total)\n```",
    "```repl\nFINAL(f'{total}:{notes[0]}')\n```",
]


def test_resumed_run_makes_no_repeated_calls_for_the_replayed_part(
    serve: Any, tmp_path: Any
) -> None:
    server = serve(http_router(RESUME_TURNS, lambda p: p.upper()))
    trace = tmp_path / "stopped.jsonl"
    rlm = RLM(
        "openai/gpt-4o-mini",
        base_url=server.url,
        sandbox="subprocess",
        trace=trace,
        budget=Budget(calls=5),
    )
    stopped = rlm.completion("q", "alpha beta gamma delta")
    assert stopped.stopped == "budget"
    assert len(server.requests) == 5  # turn 1, 3 sub-calls, turn 2
    trace2 = tmp_path / "resumed.jsonl"
    resumed = RLM(
        "openai/gpt-4o-mini", base_url=server.url, sandbox="subprocess", trace=trace2
    ).completion("q", "alpha beta gamma delta", resume=trace)
    assert resumed.answer == "7:ALPHA"  # `words` and `notes` came back from the replay
    assert len(server.requests) == 6  # only the last turn was asked live
    assert resumed.usage.calls == 6
    # only the live turn is paid for: the replayed five cost nothing this time
    from recursa.trace import load

    calls = [e for e in load(trace2).events if e["type"] == "model_call"]
    replayed = [e for e in calls if e.get("cached")]
    assert len(replayed) == 5 and all(e["usage"]["cost_usd"] == 0 for e in replayed)
    live = [e for e in calls if not e.get("cached")]
    assert len(live) == 1 and resumed.cost_usd == live[0]["usage"]["cost_usd"] > 0


def test_cli_resume_takes_the_query_from_the_trace(
    serve: Any, clean_env: dict[str, str], tmp_path: Any
) -> None:
    server = serve(http_router(RESUME_TURNS, lambda p: p.upper()))
    ctx = tmp_path / "c.txt"
    ctx.write_text("alpha beta gamma delta")
    trace = tmp_path / "t.jsonl"
    base = ["-c", str(ctx), "--model", "openai/s", "--base-url", server.url]
    first = run_cli(
        ["run", "count it", *base, "--budget-calls", "5", "--trace", str(trace)], clean_env
    )
    assert first.returncode == 3, first.stderr  # stopped without an answer
    assert "stopped without an answer (budget)" in first.stderr
    second = run_cli(["run", *base, "--resume", str(trace), "--json"], clean_env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["answer"] == "7:ALPHA"
    assert len(server.requests) == 6
