"""The sampling, system-prompt and error-limit flags of ``recursa run``, through the real
CLI against a real local OpenAI-compatible server: what each flag puts on the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recursa.testing import Received, ScriptedServer, http_router, is_root_turn
from tests.helpers import run_cli

TURNS = ["```repl\nprint(llm_query('sub?'))\n```", "```repl\nFINAL('done')\n```"]


@pytest.fixture
def context_file(tmp_path: Path) -> Path:
    path = tmp_path / "c.txt"
    path.write_text("alpha beta gamma")
    return path


def run_against(
    server: ScriptedServer, context_file: Path, env: dict[str, str], *flags: str
) -> Any:
    return run_cli(
        ["run", "q", "-c", str(context_file), "--model", "openai/s", "--base-url", server.url,
         "--sandbox", "inprocess", *flags],
        env,
    )  # fmt: skip


def split(requests: list[Received]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    bodies = [dict(r) for r in requests]
    root = [b for b in bodies if is_root_turn(b["messages"])]
    return root, [b for b in bodies if not is_root_turn(b["messages"])]


def test_sampling_flags_reach_the_root_and_the_sub_calls_separately(
    context_file: Path, clean_env: dict[str, str]
) -> None:
    with ScriptedServer(http_router(TURNS, lambda p: "sub answer")) as server:
        proc = run_against(
            server, context_file, clean_env, "--temperature", "0.3", "--sub-temperature", "0.9",
            "--seed", "5", "--top-p", "0.5", "--max-tokens", "300", "--sub-max-tokens", "40",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        root, sub = split(server.requests)
    assert root and sub
    for body in root:
        assert (body["temperature"], body["seed"], body["top_p"]) == (0.3, 5, 0.5)
        assert body["max_tokens"] == 300
    for body in sub:
        assert (body["temperature"], body["seed"], body["top_p"]) == (0.9, 5, 0.5)
        assert body["max_tokens"] == 40


def test_without_sampling_flags_nothing_is_sent(
    context_file: Path, clean_env: dict[str, str]
) -> None:
    with ScriptedServer(http_router(TURNS, lambda p: "sub answer")) as server:
        assert run_against(server, context_file, clean_env).returncode == 0
        bodies = [dict(r) for r in server.requests]
    for body in bodies:
        assert not {"temperature", "top_p", "seed", "reasoning_effort"} & set(body)


def test_a_system_prompt_file_replaces_the_built_in_prompt(
    context_file: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    prompt = tmp_path / "system.txt"
    prompt.write_text('You are terse. Depth {max_depth}. Context: {context_description}\n'
                      'Example: {{"a": 1}}')  # fmt: skip
    with ScriptedServer(http_router(TURNS, lambda p: "sub answer")) as server:
        proc = run_against(server, context_file, clean_env, "--system-prompt", str(prompt))
        assert proc.returncode == 0, proc.stderr
        system = server.requests[0]["messages"][0]
    assert system["role"] == "system"
    text = system["content"]
    assert text.startswith("You are terse. Depth 1. Context: ")
    assert "{context_description}" not in text
    assert text.endswith('Example: {"a": 1}')


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"caf\xe9 {max_depth}", "not UTF-8"), (b"Hello {nope}", "nope")],
    ids=["latin-1", "unknown-placeholder"],
)
def test_a_bad_system_prompt_is_a_usage_error(
    content: bytes, message: str, context_file: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    prompt = tmp_path / "system.txt"
    prompt.write_bytes(content)
    with ScriptedServer(http_router(TURNS, lambda p: "sub answer")) as server:
        proc = run_against(
            server, context_file, clean_env, "--system-prompt", str(prompt), "--json"
        )
        assert server.requests == []
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert json.loads(proc.stdout)["answer"] is None


def test_max_errors_stops_a_run_whose_cells_keep_failing(
    context_file: Path, clean_env: dict[str, str]
) -> None:
    with ScriptedServer(lambda r: "```repl\n1/0\n```") as server:
        proc = run_against(server, context_file, clean_env, "--max-errors", "2", "--json")
        turns = len(server.requests)
    assert proc.returncode == 3, proc.stderr
    assert json.loads(proc.stdout)["stopped"] == "errors"
    assert turns == 2
