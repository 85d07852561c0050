"""The progress display, driven by real runs and real notices: running vs queued calls,
batch bars, per-model rows, a clock that ticks between events, the plain heartbeat."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

from rich.console import Console

from recursa import RLM, Budget
from recursa.models.scripted import ScriptedModel
from recursa.progress import ProgressSink
from recursa.testing import is_root_turn, turn_index
from recursa.trace import Event, Tracer

BATCH = "```repl\nanswers = llm_batch([f'item {i}' for i in range(6)])\nprint(len(answers))\n```"
DONE = "```repl\nFINAL('done')\n```"


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Snapshots:
    """A live sink placed after the display: what it showed after each event."""

    live = True

    def __init__(self, progress: ProgressSink) -> None:
        self.progress = progress
        self.seen: list[tuple[int, int, list[str]]] = []

    def __call__(self, event: Event) -> None:
        s = self.progress.state
        self.seen.append((len(s.running), len(s.queued), [b.label for b in s.batches.values()]))


def plain(**kw: Any) -> tuple[ProgressSink, io.StringIO]:
    out = io.StringIO()
    return ProgressSink(Console(file=out, force_terminal=False, width=300), **kw), out


def slow_model(name: str = "scripted", delay: float = 0.05) -> ScriptedModel:
    """Root turns: a batch of 6, then FINAL; sub-calls answer after ``delay``."""

    async def reply(messages: list[Any]) -> str:
        if is_root_turn(messages):
            return [BATCH, DONE][min(turn_index(messages), 1)]
        await asyncio.sleep(delay)
        return "ok"

    return ScriptedModel(reply, name=name)


def test_calls_waiting_for_a_slot_are_queued_not_running() -> None:
    sink, out = plain(heartbeat_s=None)
    snaps = Snapshots(sink)
    model = slow_model()
    rlm = RLM(model, sandbox="inprocess", max_concurrency=2)
    result = rlm.completion("q", "some context", sinks=[sink, snaps])
    sink.close()
    assert result.answer == "done"
    assert max(r for r, _, _ in snaps.seen) == 2  # never more than --concurrency sent
    assert max(q for _, q, _ in snaps.seen) == 4  # the other four waited for a slot
    assert max(r + q for r, q, _ in snaps.seen) == 6
    labels = [label for _, _, bars in snaps.seen for label in bars]
    assert labels[0] == "llm_batch 0/6" and "llm_batch 6/6" in labels
    assert sink.state.running == sink.state.queued == {} and sink.state.batches == {}
    assert out.getvalue().splitlines()[-1].startswith("recursa: done · calls 8 · 0 running")


def test_calls_cancelled_while_queued_leave_no_count_behind() -> None:
    sink, _ = plain(heartbeat_s=None)
    rlm = RLM(
        slow_model(delay=5.0), sandbox="inprocess", max_concurrency=1, budget=Budget(seconds=0.5)
    )
    result = rlm.completion("q", "ctx", sinks=[sink])
    sink.close(failed=True)
    assert result.stopped == "budget"
    assert sink.state.running == sink.state.queued == {} and sink.state.batches == {}


def test_a_row_per_model_with_its_calls_tokens_and_cost() -> None:
    sink, out = plain(heartbeat_s=None)
    root, sub = slow_model("root"), ScriptedModel(lambda m: "sub answer", name="sub")
    rlm = RLM(root, sub_model=sub, sandbox="inprocess")
    result = rlm.completion("q", "ctx", sinks=[sink])
    sink.close()
    by_model = result.usage.by_model
    assert {spec: u.calls for spec, u in sink.state.models.items()} == {
        "scripted/root": 2,
        "scripted/sub": 6,
    }
    assert sink.state.models["scripted/sub"].total_tokens == by_model["scripted/sub"].total_tokens
    lines = out.getvalue().splitlines()
    sub_tokens = by_model["scripted/sub"].total_tokens
    assert f"recursa: model scripted/sub · calls 6 · tokens {sub_tokens:,} · $0.0000" in lines
    terminal = Console(file=io.StringIO(), width=200)
    terminal.print(sink.renderable())
    row = next(line for line in terminal.file.getvalue().splitlines() if "scripted/root" in line)  # type: ignore[attr-defined]
    assert row.split()[1:4] == ["2", "0", "0"]  # calls, running, queued


def test_batch_notices_draw_a_bar_until_the_batch_ends() -> None:
    sink, _ = plain(heartbeat_s=None)
    tracer = Tracer("r", [sink])
    tracer.notify("batch_start", "n1", batch_id="b0", kind="llm", total=64)
    for done in range(1, 13):
        tracer.notify("batch_progress", "n1", batch_id="b0", done=done)
    assert "llm_batch 12/64" in sink.summary()
    terminal = Console(file=io.StringIO(), width=120)
    terminal.print(sink.renderable())
    drawn = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "llm_batch (n1)" in drawn and "12/64" in drawn
    tracer.notify("batch_end", "n1", batch_id="b0")
    tracer.notify("batch_progress", "n1", batch_id="b0", done=13)  # late: ignored
    assert "llm_batch" not in sink.summary() and sink.state.batches == {}
    sink.close()


def test_the_live_view_clock_ticks_without_events() -> None:
    clock = FakeClock()
    out = io.StringIO()
    sink = ProgressSink(Console(file=out, force_terminal=True, width=120), clock=clock)
    Tracer("r", [sink]).notify("call_queued", "n0", call_id="c1", model="m/slow")
    clock.now += 7.25
    time.sleep(0.8)  # the refresh thread redraws a few times meanwhile
    assert "7.2s" in out.getvalue() or "7.3s" in out.getvalue()
    clock.now += 5
    time.sleep(0.8)
    assert "12.2s" in out.getvalue() or "12.3s" in out.getvalue()
    assert "0 running, 1 queued" in out.getvalue()
    sink.close(failed=True)


def test_off_a_terminal_a_heartbeat_line_when_nothing_was_said() -> None:
    clock = FakeClock()
    sink, out = plain(clock=clock, heartbeat_s=5.0)
    tracer = Tracer("r", [sink])
    tracer.notify("call_queued", "n0", call_id="c1", model="m/slow")
    tracer.notify("call_start", "n0", call_id="c1", model="m/slow")
    clock.now += 4.9
    sink.heartbeat()
    assert out.getvalue() == ""
    clock.now += 0.1
    sink.heartbeat()
    clock.now += 1.0
    sink.heartbeat()  # a line went out 1 s ago: not yet
    lines = out.getvalue().splitlines()
    assert lines == ["recursa: working · calls 0 · 1 running, 0 queued · tokens 0 · $0.0000 · 5.0s"]
    sink.close(failed=True)


def test_the_heartbeat_thread_ticks_and_stops_at_close() -> None:
    sink, out = plain(heartbeat_s=0.1)
    time.sleep(0.55)
    beats = [line for line in out.getvalue().splitlines() if line.startswith("recursa: working")]
    assert len(beats) >= 2
    sink.close()
    closed = out.getvalue()
    assert closed.splitlines()[-1].startswith("recursa: done")
    time.sleep(0.3)
    Tracer("r", [sink]).notify("call_queued", "n0", call_id="c1", model="m/slow")
    assert out.getvalue() == closed  # nothing is written after the run ended


def test_the_demo_reports_its_run_to_the_sinks_it_is_given() -> None:
    from recursa.demo import run_demo

    sink, out = plain(heartbeat_s=None)
    model = ScriptedModel(lambda m: "```repl\nFINAL('no idea')\n```")
    result = run_demo(model=model, tokens=10_000, trace=False, sandbox="inprocess", sinks=[sink])
    sink.close()
    assert result.calls == sink.state.usage.calls == 1
    assert out.getvalue().splitlines()[0].startswith("recursa: n0 depth 0 iteration 1 · calls 1")
