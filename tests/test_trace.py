"""The JSONL trace of a real depth-2 run: tree, usage and linear size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recursa import RLM
from recursa.models.scripted import ScriptedModel
from recursa.testing import router
from recursa.trace import load

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


# -- typed events ------------------------------------------------------------------


def test_emit_sends_one_encoded_dict_to_every_sink(tmp_path: Path) -> None:
    from recursa.trace import JsonlSink, Subcall, Tracer, encode, read_typed_events

    live: list[dict[str, object]] = []
    path = tmp_path / "t.jsonl"
    tracer = Tracer("r1", [JsonlSink(path, max_chars=10), live.append])
    event = Subcall(
        node_id="n0", parent_id=None, depth=0, call_id="c1", kind="llm", iteration=1,
        prompt="x" * 50, answer="y" * 50, model="scripted/s", t0=1.0, duration_s=0.5, images=0,
    )  # fmt: skip
    tracer.emit(event)
    tracer.close()
    assert live == [encode(event)] and live[0]["batch_id"] is None  # the live form keeps nulls
    (line,) = [json.loads(text) for text in path.read_text().splitlines()]
    assert "batch_id" not in line and line["images"] == 0  # 0 is written, null is not
    assert line["prompt"] == "x" * 10 + "…[truncated]" and line["prompt_chars"] == 50
    assert line["answer"] == "y" * 50  # what models wrote is kept whole
    (back,), warnings = read_typed_events(path)
    assert warnings == [] and isinstance(back, Subcall)
    assert back.truncated == {"prompt": 50} and back.answer == event.answer
    assert (back.call_id, back.images, back.batch_id, back.t0) == ("c1", 0, None, 1.0)


def test_parsing_tolerates_old_partial_and_odd_events() -> None:
    from recursa.events import Cell, ModelCall, NodeStart, RunEnd, RunStart, parse_event

    assert parse_event(["not", "an", "event"]) is None
    assert parse_event({"type": "weird"}) is None
    cell = parse_event({"v": 1, "type": "cell", "t": None, "final": "the answer", "new": 1})
    assert isinstance(cell, Cell)  # a missing field reads as its default, an unknown one is ignored
    assert (cell.node_id, cell.t, cell.code, cell.error, cell.timed_out) == (
        "",
        None,
        "",
        None,
        False,
    )
    assert cell.final  # older traces wrote the answer in ``final``
    call = parse_event({"type": "model_call", "depth": "2", "usage": {"input_tokens": 5}})
    assert isinstance(call, ModelCall) and call.depth == 0 and call.messages is None
    assert (call.usage.input_tokens, call.usage.calls, call.usage.cost_usd) == (5, 0, None)
    start = RunStart.from_dict({"type": "run_start", "run_id": "r", "budget": {"usd": 1}})
    assert start is not None and start.version is None and start.models == {}
    assert start.budget is not None and (start.budget.usd, start.budget.calls) == (1, None)
    assert RunStart.from_dict({"type": "node_start"}) is None
    assert isinstance(NodeStart.from_dict({"type": "node_start"}), NodeStart)
    end = RunEnd.from_dict(
        {"type": "run_end", "stopped": "budget",
         "usage": {"calls": 3, "by_depth": {"0": {"calls": 1}, "1": {"calls": 2}},
                   "by_model": {"a/b": {"calls": 3, "cost_usd": 0.5}}}}
    )  # fmt: skip
    assert end is not None and end.stopped == "budget" and end.error is None
    assert {d: u.calls for d, u in end.usage.by_depth.items()} == {0: 1, 1: 2}
    assert end.usage.by_model["a/b"].cost_usd == 0.5


def test_a_real_trace_reads_back_typed(tmp_path: Path) -> None:
    from recursa import __version__
    from recursa.trace import ModelCall, NodeStart, RunEnd, RunStart, Subcall, read_typed_events

    path, result, _ = run(tmp_path)
    events, warnings = read_typed_events(path)
    assert warnings == []
    start, end = events[0], events[-1]
    assert isinstance(start, RunStart) and isinstance(end, RunEnd)
    assert start.version == __version__ and start.run_id == end.run_id == result.run_id  # type: ignore[attr-defined]
    assert start.context is not None and start.context.chars == 108_000
    assert set(start.models) == {"scripted/scripted"}
    assert end.usage.calls == result.usage.calls and end.usage.by_depth[2].calls == 4  # type: ignore[attr-defined]
    children = [e for e in events if isinstance(e, NodeStart) and e.parent_call_id]
    rlm_calls = {e.call_id: e for e in events if isinstance(e, Subcall) and e.kind == "rlm"}
    assert {c.parent_call_id for c in children} == set(rlm_calls)
    assert all(rlm_calls[c.parent_call_id or ""].child_node_id == c.node_id for c in children)
    turns = [e for e in events if isinstance(e, ModelCall) and e.purpose == "turn"]
    assert turns[0].messages and turns[0].messages[0].role == "system"
    assert turns[0].messages[0].content_chars is not None  # the system prompt was cut


def test_progress_reads_the_events_it_is_sent(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from recursa.progress import ProgressSink

    out = io.StringIO()
    sink = ProgressSink(Console(file=out, force_terminal=False, width=200))
    model = ScriptedModel(router(REPLIES, sub=lambda p: "note about " + p[:20]))
    context = "lorem ipsum dolor sit amet " * 4000
    result = RLM(model, sandbox="inprocess", max_depth=2).completion("outer", context, sinks=[sink])
    sink.close()
    assert sink.state.usage.calls == result.usage.calls
    assert sink.state.running == sink.state.queued == {}
    assert sink.state.nodes == {}  # every node that started has ended
    lines = out.getvalue().splitlines()
    assert "recursa: n0 depth 0 iteration 1 · calls 1" in lines[0]
    assert any(" n1 depth 1 iteration 2 " in line for line in lines)
    assert lines[-1].startswith(f"recursa: done · calls {result.usage.calls} · 0 running, 0 queued")
