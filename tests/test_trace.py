"""The JSONL trace of a real depth-2 run: tree, usage and linear size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recursa import RLM
from recursa.models.scripted import ScriptedModel
from recursa.trace import load
from tests.helpers import router

REPLIES = {
    "Query: outer": [
        "```repl\nparts = [context[i:i + 5000] for i in range(0, len(context), 5000)]\n"
        "found = rlm_batch(['inner: scan part %d' % i for i in range(2)], contexts=parts[:2])\n"
        "print(found)\n```",
        "```repl\nFINAL(' / '.join(found))\n```",
    ],
    "Query: inner": [
        "```repl\nnotes = llm_batch([context[:3000], context[3000:]])\nprint(len(notes))\n```",
        "```repl\nFINAL('ok:' + str(len(notes)))\n```",
    ],
}


def run(tmp_path: Path, turns: int = 1) -> tuple[Path, object, ScriptedModel]:
    model = ScriptedModel(router(REPLIES, sub=lambda p: "note about " + p[:20]))
    path = tmp_path / "t.jsonl"
    context = "lorem ipsum dolor sit amet " * 4000
    result = RLM(model, sandbox="inprocess", max_depth=2, trace=path).completion("outer", context)
    return path, result, model


def test_tree_parent_links_and_usage_match_the_ledger(tmp_path: Path) -> None:
    path, result, _ = run(tmp_path)
    trace = load(path)
    assert trace.root is not None and trace.root.node_id == "n0"
    children = trace.root.children
    assert [c.depth for c in children] == [1, 1]
    assert all(c.parent_id == "n0" for c in children)
    assert all(c.start and c.start["parent_call_id"] for c in children)
    calls = [e for e in trace.events if e["type"] == "model_call"]
    for key in ("input_tokens", "output_tokens", "calls"):
        assert sum(e["usage"][key] for e in calls) == getattr(result.usage, key)  # type: ignore[attr-defined]
    assert trace.run_end is not None
    assert trace.run_end["usage"]["by_depth"]["2"]["calls"] == 4
    # every node's node_end usage covers its subtree
    child_calls = sum(c.end["usage"]["calls"] for c in children if c.end)
    assert trace.root.end is not None and trace.root.end["usage"]["calls"] == 2 + child_calls


def test_size_is_linear_in_what_happened(tmp_path: Path) -> None:
    """A depth-2 run of 8 root turns; each starts two child RLMs whose code summarises
    four 20K-character chunks with sub-calls. The file stays within 2x of what the models
    wrote plus what the cells printed: prompts are cut, no history is repeated."""
    replies = {
        "Query: root": [
            "```repl\nparts = [context[:40000], context[40000:]]\n"
            "found = rlm_batch(['part summary', 'part summary'], contexts=parts)\n"
            "print('\\n'.join(found))\n```"
        ]
        * 8
        + ["FINAL(done)"],
        "Query: part summary": [
            "```repl\nchunks = [context[i:i + 20000] for i in range(0, len(context), 20000)]\n"
            "notes = llm_batch(['Summarise:\\n' + c for c in chunks])\nprint('\\n'.join(notes))\n```",
            "```repl\nFINAL(' '.join(notes)[:600])\n```",
        ],
    }
    summary = "This chunk repeats a lorem ipsum sentence; nothing else is in it. " * 25
    model = ScriptedModel(router(replies, sub=lambda p: summary))
    path = tmp_path / "t.jsonl"
    context = "lorem ipsum dolor sit amet " * 3000
    RLM(model, sandbox="inprocess", max_depth=2, max_iterations=9, trace=path).completion(
        "root", context
    )
    events = [json.loads(line) for line in path.read_text().splitlines()]
    produced = sum(len(c.reply) for c in model.calls)
    outputs = sum(len(e.get("output") or "") for e in events if e["type"] == "cell")
    assert path.stat().st_size <= 2 * (produced + outputs)
    # no turn repeats the history: each root turn carries only its new messages
    turns = [e for e in events if e["type"] == "model_call" and e["purpose"] == "turn"]
    assert all(len(e["messages"]) <= 2 for e in turns)
    # long prompts are cut, with their full length recorded
    long = [e for e in events if e["type"] == "subcall" and "prompt_chars" in e]
    assert long and all(len(e["prompt"]) < e["prompt_chars"] for e in long)


def test_an_interrupted_run_leaves_a_readable_trace(tmp_path: Path) -> None:
    def reply(messages: list[object]) -> str:
        raise KeyboardInterrupt

    path = tmp_path / "t.jsonl"
    with pytest.raises(KeyboardInterrupt):
        RLM(ScriptedModel(reply), sandbox="inprocess", trace=path).completion("q", "ctx")
    trace = load(path)
    assert trace.run_start is not None and trace.warnings == []
    assert trace.run_end is not None and trace.run_end["stopped"] == "error"
