"""Replay: record a real run over HTTP, then play it back offline from its trace."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM, Result
from recursa.errors import ConfigError, ModelError
from recursa.prompts import COMPACT_REQUEST
from recursa.replay import Recording, ReplayMismatch, ReplayModel, replay_models, rlm_for
from recursa.testing import ScriptedServer, http_router, is_root_turn

SANDBOX = "inprocess"
QUERY = "outer: sizes and first words"
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
]
# Both children get the same query, over different halves: only their contexts tell
# them apart, and they run concurrently.
ROOT_TURNS = [
    "```repl\nhalf = len(context) // 2\n"
    "parts = rlm_batch(['child: size and first word'] * 2, contexts=[context[:half], context[half:]])\n"
    "print(parts)\n```",
    "```repl\nsummary = llm_query('combine ' + str(parts) + ' over ' + context)\nFINAL(summary)\n```",
]
CHILD_TURNS = [
    "```repl\nn = llm_batch(['count words: ' + context, 'first word: ' + context[:40]])\n"
    "print(n)\n```",
    "```repl\nFINAL(n[0] + '/' + n[1])\n```",
]


def sub_answer(prompt: str) -> str:
    if prompt.startswith("count words: "):
        return str(len(prompt.split()) - 2)
    if prompt.startswith("first word: "):
        return prompt.split()[2]
    if prompt.startswith("combine "):
        return f"combined {len(prompt)}"
    return "?"


def make_context(path: Path, n: int = 3000) -> Path:
    path.write_text(" ".join(WORDS[(i * 7) % len(WORDS)] for i in range(n)))
    return path


@dataclass
class Recorded:
    trace: Path
    context: Path
    result: Result
    requests: int


def record(
    tmp_path: Path,
    reply: Callable[[dict[str, Any]], str] | None = None,
    *,
    query: str = QUERY,
    latency: float = 0.02,
    **options: Any,
) -> Recorded:
    """A real run against a local OpenAI-compatible server, traced; the server is stopped."""
    context = make_context(tmp_path / "ctx.txt")
    trace = tmp_path / "recorded.jsonl"
    routes: dict[str, Sequence[str]] = {"Query: outer": ROOT_TURNS, "Query: child": CHILD_TURNS}
    with ScriptedServer(reply or http_router(routes, sub_answer), latency=latency) as server:
        rlm = RLM(
            "openai/big",
            options.pop("sub_model", "openai/small"),
            base_url=server.url,
            sandbox=SANDBOX,
            trace=trace,
            **{"max_depth": 2, "trace_max_chars": 300, **options},
        )
        result = rlm.completion(query, context)
        requests = len(server.requests)
    return Recorded(trace, context, result, requests)


def same_run(a: Result, b: Result) -> None:
    assert a.answer == b.answer
    assert a.stopped == b.stopped
    assert a.iterations == b.iterations
    assert a.depth_reached == b.depth_reached
    assert a.usage.to_dict() == b.usage.to_dict()  # calls, tokens, cost, by model and depth


def test_replay_via_api_is_the_same_run_offline(tmp_path: Path) -> None:
    rec = record(tmp_path)
    assert rec.result.answer.startswith("combined ")
    assert (
        rec.requests == rec.result.usage.calls == 11
    )  # root: 2 turns + 1 sub; 2x(2 turns + 2 subs)
    text = rec.trace.read_text()
    assert '"prompt_chars"' in text and '"content_chars"' in text  # the trace cut prompts

    root, sub = replay_models(rec.trace)
    assert (root.spec, sub.spec) == ("openai/big", "openai/small")
    replayed = RLM(root, sub, max_depth=2, sandbox=SANDBOX).completion(QUERY, rec.context)
    same_run(replayed, rec.result)
    assert set(replayed.usage.by_model) == {"openai/big", "openai/small"}
    root.recording.verify()
    assert root.recording.unused() == [] and root.recording.mismatches == []


async def test_async_replay_twice_after_reset_and_from_trace(tmp_path: Path) -> None:
    rec = await asyncio.to_thread(record, tmp_path)
    recording = Recording.load(rec.trace)
    rlm = rlm_for(recording, sandbox=SANDBOX)  # the recorded models, depth, iterations, budget
    assert rlm.max_depth == 2 and rlm.model is recording.models()[0]
    same_run(await rlm.acompletion(QUERY, rec.context), rec.result)
    with pytest.raises(ReplayMismatch, match=r"turn 1 of the node asked .* was already replayed"):
        await rlm.acompletion(QUERY, rec.context)  # every recorded call was used once
    recording.reset()
    same_run(await rlm.acompletion(QUERY, rec.context), rec.result)
    recording.verify()
    # from_trace gives the root; its sibling is the recorded sub-model.
    first = ReplayModel.from_trace(rec.trace)
    assert first.spec == "openai/big" and first.sibling("openai/small").spec == "openai/small"
    assert first.sibling("openai/small") is first.recording.models()[1]


def test_a_different_query_diverges_at_once(tmp_path: Path) -> None:
    rec = record(tmp_path)
    root, sub = replay_models(rec.trace)
    with pytest.raises(ReplayMismatch, match=r"no recorded node was asked 'outer: other'$"):
        RLM(root, sub, max_depth=2, sandbox=SANDBOX).completion("outer: other", rec.context)
    assert isinstance(root.recording.mismatches[0], ModelError)


def test_a_changed_context_names_the_message_that_differs(tmp_path: Path) -> None:
    rec = record(tmp_path)
    root, sub = replay_models(rec.trace)
    other = make_context(tmp_path / "other.txt", n=2999)
    with pytest.raises(ReplayMismatch, match=r"turn 1 of the node asked .*message 0 was recorded"):
        RLM(root, sub, max_depth=2, sandbox=SANDBOX).completion(QUERY, other)


def test_a_diverging_sub_call_is_reported_strict_or_lenient(tmp_path: Path) -> None:
    turns = [
        "```repl\ntry:\n    r = llm_query('tail: ' + context[-30:])\n"
        "except Exception as e:\n    r = 'failed'\nprint(r[:9])\n```",
        "```repl\nFINAL(r)\n```",
    ]
    rec = record(tmp_path, http_router(turns, lambda p: p.upper()), max_depth=1)
    # Same length and start (so the same system prompt); only the sub-call's prompt differs.
    changed = tmp_path / "changed.txt"
    changed.write_text(rec.context.read_text()[:-5] + "XXXXX")
    for strict in (True, False):
        recording = Recording.load(rec.trace, strict=strict)
        rlm = rlm_for(recording, sandbox=SANDBOX)
        if strict:
            # The REPL absorbed the failed sub-call; the next turn's input shows it.
            with pytest.raises(ReplayMismatch, match=r"turn 2 .* message 3 was recorded as user"):
                rlm.completion(QUERY, changed)
        else:
            assert rlm.completion(QUERY, changed).answer == "failed"  # lenient: it goes on
        assert "no recorded sub-call to openai/small" in str(recording.mismatches[0])
        with pytest.raises(ReplayMismatch, match="no recorded sub-call"):
            recording.verify()


def test_a_spec_that_differs_from_the_recording_is_named(tmp_path: Path) -> None:
    rec = record(tmp_path)
    root = ReplayModel.from_trace(rec.trace)
    with pytest.raises(ReplayMismatch, match="diverged at turn 2"):
        # The sub-model defaults to the root: the children's turns go to the wrong spec.
        RLM(root, max_depth=2, sandbox=SANDBOX).completion(QUERY, rec.context)
    first = str(root.recording.mismatches[0])
    assert "was recorded for openai/small, but now it was asked of openai/big" in first


def test_lenient_replay_tolerates_unreproducible_output(tmp_path: Path) -> None:
    turns = [
        "```repl\nimport time\nprint('now', time.time())\nx = len(context)\n```",
        "```repl\nFINAL(f'length {x}')\n```",
    ]
    rec = record(tmp_path, http_router(turns), max_depth=1)
    root, sub = replay_models(rec.trace)
    with pytest.raises(ReplayMismatch, match=r"message 3 was recorded as user: '.output. now"):
        RLM(root, sub, sandbox=SANDBOX).completion(QUERY, rec.context)
    root, sub = replay_models(rec.trace, strict=False)
    replayed = RLM(root, sub, sandbox=SANDBOX).completion(QUERY, rec.context)
    same_run(replayed, rec.result)
    root.recording.verify()


def test_compacted_history_replays(tmp_path: Path) -> None:
    replies = iter(
        [
            "```repl\na = context[:5]\nprint(a)\n```",
            "```repl\nb = context[5:10]\nprint(b)\n```",
            "```repl\nFINAL(a + b)\n```",
        ]
    )

    def reply(body: dict[str, Any]) -> str:
        if body["messages"][-1]["content"] == COMPACT_REQUEST:
            return "summary: a and b are set"
        return next(replies)

    rec = record(tmp_path, reply, compact_after_chars=1, max_depth=1)
    assert rec.requests == 5  # 3 turns and 2 compactions
    root, sub = replay_models(rec.trace)
    replayed = RLM(root, sub, sandbox=SANDBOX, compact_after_chars=1).completion(QUERY, rec.context)
    same_run(replayed, rec.result)
    root.recording.verify()


def test_recorded_failures_and_cancellations_replay(tmp_path: Path) -> None:
    turns = [
        "```repl\nfirst = llm_batch(['fast', 'slow 1', 'slow 2'], stop_when=lambda got: len(got) >= 1)\n"
        "try:\n    broken = llm_query('broken')\nexcept Exception as e:\n    broken = str(e)\n```",
        "```repl\nFINAL(str(first) + ' | ' + broken)\n```",
    ]

    def sub(prompt: str) -> str:
        if prompt.startswith("slow"):
            time.sleep(1.0)
        if prompt == "broken":
            from recursa.testing import HTTPFailure

            raise HTTPFailure(400, "this prompt is refused")
        return f"<{prompt}>"

    def reply(body: dict[str, Any]) -> str:
        if is_root_turn(body["messages"]):
            return http_router(turns)(body)
        return sub(body["messages"][-1]["content"])

    rec = record(tmp_path, reply, max_depth=1, latency=0.0)
    assert "<fast>" in rec.result.answer and "this prompt is refused" in rec.result.answer
    assert "cancelled" in rec.result.answer
    root, sub_model = replay_models(rec.trace)
    started = time.monotonic()
    replayed = RLM(root, sub_model, sandbox=SANDBOX).completion(QUERY, rec.context)
    assert time.monotonic() - started < 5
    same_run(replayed, rec.result)
    root.recording.verify()


def test_unreplayable_traces_are_config_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no model calls"):
        replay_models(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        replay_models(tmp_path / "missing.jsonl")
    rec = record(tmp_path)
    two = tmp_path / "two.jsonl"
    lines = rec.trace.read_text().splitlines()
    other = [json.dumps({**json.loads(line), "run_id": "other"}) for line in lines]
    two.write_text("\n".join(lines + other) + "\n")
    with pytest.raises(ConfigError, match="holds 2 runs"):
        replay_models(two)


# -- the CLI: `recursa run ... --replay TRACE` (wired in cli.py) ----------------------------


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recursa", "run", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_replay_via_cli(tmp_path: Path, clean_env: dict[str, str]) -> None:
    rec = record(tmp_path)
    # No --model, --base-url or --max-depth: the trace says them; nothing is listening.
    proc = run_cli(
        [QUERY, "-c", str(rec.context), "--replay", str(rec.trace), "--sandbox", SANDBOX, "--json"],
        clean_env,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] == rec.result.answer
    assert out["usage"]["calls"] == rec.result.usage.calls == rec.requests
    assert out["usage"] == json.loads(json.dumps(rec.result.usage.to_dict()))
    assert out["depth_reached"] == 2

    diverged = run_cli(
        ["outer: another question", "-c", str(rec.context), "--replay", str(rec.trace),
         "--sandbox", SANDBOX],
        clean_env,
    )  # fmt: skip
    assert diverged.returncode == 1
    assert "diverged" in diverged.stderr and "Traceback" not in diverged.stderr
