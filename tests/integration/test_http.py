"""The real CLI and API against a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM, Budget
from recursa.testing import HTTPFailure, ScriptedServer, http_router, is_root_turn
from tests.helpers import run_cli

SANDBOX = "subprocess"  # the default: the real isolated worker

NEEDLE_TURNS = [
    "Let me find it.\n```repl\nimport re\nm = re.search(r'The magic number is (\\d+)', context)\n"
    "window = context[max(0, m.start() - 2000): m.end() + 2000]\n"
    "ans = llm_query('What is the magic number? Reply with the number only.\\n' + window)\n"
    "print(ans)\n```",
    "FINAL_VAR(ans)",
]


def needle_sub(prompt: str) -> str:
    found = re.search(r"The magic number is (\d+)", prompt)
    return found.group(1) if found else "not found"


@pytest.fixture(scope="module")
def big_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 MB (about 10M tokens) of filler with one needle at 63%."""
    path = tmp_path_factory.mktemp("ctx") / "haystack.txt"
    line = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
    reps = 40_000_000 // len(line)
    at = int(reps * 0.63)
    with path.open("w") as fh:
        fh.write(line * at)
        fh.write("The magic number is 8675309.\n")
        fh.write(line * (reps - at))
    return path


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def make(reply: Any, **kw: Any) -> ScriptedServer:
        server = ScriptedServer(reply, **kw).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_cli_needle_in_40mb_with_exactly_three_calls(
    big_context: Path, server_factory: Any, clean_env: dict[str, str]
) -> None:
    server = server_factory(http_router(NEEDLE_TURNS, needle_sub))
    proc = run_cli(
        [
            "run",
            "What is the magic number?",
            "--context",
            str(big_context),
            "--model",
            "openai/scripted",
            "--base-url",
            server.url,
            "--sandbox",
            SANDBOX,
            "--json",
        ],
        clean_env,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] == "8675309"
    assert out["usage"]["calls"] == 3
    assert out["usage"]["by_depth"]["0"]["calls"] == 2
    assert out["usage"]["by_depth"]["1"]["calls"] == 1
    assert len(server.requests) == 3
    assert max(server.request_sizes) < 100_000
    assert set(out) >= {
        "answer",
        "usage",
        "cost_usd",
        "iterations",
        "depth_reached",
        "stopped",
        "trace",
    }


@pytest.mark.parametrize(
    "final_turn",
    [
        "```repl\nFINAL('8675309')\n```",
        "```repl\nres = '8675309'\nFINAL_VAR('res')\n```",
        "```repl\nanswer['content'] = '8675309'\nanswer['ready'] = True\n```",
        "I found it.\nFINAL(8675309)",
        "```repl\nres = '8675309'\n```\nFINAL_VAR(res)",
    ],
)
def test_api_each_finishing_style_over_http(server_factory: Any, final_turn: str) -> None:
    server = server_factory(http_router([final_turn]))
    rlm = RLM("openai/scripted", base_url=server.url, sandbox=SANDBOX)
    result = rlm.completion("What is the magic number?", "x The magic number is 8675309. y")
    assert result.answer == "8675309"
    assert result.usage.calls == 1


def test_cli_depth_two_child_falls_back_to_plain_subcall(
    server_factory: Any, clean_env: dict[str, str], tmp_path: Path
) -> None:
    replies = {
        "Query: outer": [
            "```repl\nr = rlm_query('inner: find the number', context=context)\nprint(r)\n```",
            "```repl\nFINAL(r)\n```",
        ],
        "Query: inner": [
            "```repl\nv = rlm_query('extract the number: ' + context[:200])\nprint(v)\n```",
            "```repl\nFINAL(v)\n```",
        ],
    }
    server = server_factory(http_router(replies, needle_sub))
    ctx = tmp_path / "c.txt"
    ctx.write_text("noise The magic number is 42. noise")
    trace = tmp_path / "t.jsonl"
    proc = run_cli(
        [
            "run",
            "outer",
            "-c",
            str(ctx),
            "--model",
            "openai/scripted",
            "--base-url",
            server.url,
            "--max-depth",
            "2",
            "--sandbox",
            SANDBOX,
            "--json",
            "--trace",
            str(trace),
        ],
        clean_env,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] == "42"
    assert out["usage"]["calls"] == 5
    assert out["depth_reached"] == 2
    assert out["trace"] == str(trace)
    from recursa.trace import load

    tree = load(trace)
    assert tree.root is not None and len(tree.root.children) == 1
    assert tree.root.children[0].depth == 1


def test_api_budget_exhaustion_mid_batch(server_factory: Any) -> None:
    turns = [
        "```repl\nanswer['content'] = 'partial'\nparts = llm_batch(['p%d' % i for i in range(20)])\n"
        "print(sum(isinstance(p, SubcallError) for p in parts))\n```",
        "FINAL(never reached)",
    ]
    server = server_factory(http_router(turns, lambda p: "ok"))
    rlm = RLM("openai/scripted", base_url=server.url, sandbox=SANDBOX, budget=Budget(calls=8))
    result = rlm.completion("q", "some context")
    assert result.stopped == "budget"
    assert result.usage.calls == 8
    assert len(server.requests) == 8
    assert result.answer == "partial"


def test_api_500_then_success_is_retried(server_factory: Any) -> None:
    failures = {"left": 1}

    def reply(body: dict[str, Any]) -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise HTTPFailure(500, "upstream hiccup")
        return "FINAL(ok)"

    server = server_factory(reply)
    result = RLM("openai/scripted", base_url=server.url, sandbox=SANDBOX).completion("q", "ctx")
    assert result.answer == "ok"
    assert len(server.requests) == 2
    assert result.usage.calls == 1


def test_cli_401_is_a_clear_error_exit_1(
    server_factory: Any, clean_env: dict[str, str], tmp_path: Path
) -> None:
    def reply(body: dict[str, Any]) -> str:
        raise HTTPFailure(401, "Incorrect API key provided")

    server = server_factory(reply)
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    proc = run_cli(
        [
            "run",
            "q",
            "-c",
            str(ctx),
            "--model",
            "openai/x",
            "--base-url",
            server.url,
            "--sandbox",
            SANDBOX,
        ],
        clean_env,
    )
    assert proc.returncode == 1
    assert "authentication failed (401)" in proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("recursa: error: ")
    assert sum("error" in line for line in lines) == 1


def test_subcall_model_error_reaches_the_repl_not_the_run(server_factory: Any) -> None:
    def reply(body: dict[str, Any]) -> str:
        if is_root_turn(body["messages"]):
            n = sum(m["role"] == "assistant" for m in body["messages"])
            if n == 0:
                return "```repl\ntry:\n    llm_query('x')\nexcept Exception as e:\n    err = str(e)\n```"
            return "```repl\nFINAL(err)\n```"
        raise HTTPFailure(404, "The model does not exist")

    server = server_factory(reply)
    result = RLM("openai/scripted", base_url=server.url, sandbox=SANDBOX).completion("q", "ctx")
    assert "model not found (404)" in result.answer


def test_cli_reads_context_from_stdin(server_factory: Any, clean_env: dict[str, str]) -> None:
    server = server_factory(http_router(["```repl\nFINAL(len(context))\n```"]))
    proc = run_cli(
        [
            "run",
            "how long",
            "-c",
            "-",
            "--model",
            "openai/s",
            "--base-url",
            server.url,
            "--sandbox",
            SANDBOX,
        ],
        clean_env,
        stdin="abcdef",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "6"
