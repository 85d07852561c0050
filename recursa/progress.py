"""Live progress on stderr while a run goes: nodes, calls running and queued, batches,
tokens and cost per model, and a clock that keeps ticking while a slow model answers.

It is a trace sink, so it sees exactly what the trace records, plus the live-only
notices (:meth:`~recursa.trace.Tracer.notify`): a call queued for a concurrency slot
(``call_queued``), sent (``call_start``) and over (``call_end``); a batch's start,
progress and end. On a terminal it draws a ``rich`` live view that re-reads the clock
at every refresh; elsewhere it prints one plain line per turn, and a heartbeat line
when :data:`HEARTBEAT_S` seconds went by without one, so a slow call never looks hung.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .budget import Usage
from .events import ModelCall, NodeEnd, NodeStart, RunStart, TraceEvent, parse_event
from .trace import Event, Sink, showing

if TYPE_CHECKING:  # rich is imported when something is drawn: a run without progress
    from rich.console import Console, RenderableType  # never loads it (5 MiB)
    from rich.live import Live

#: Off a terminal: the most seconds without a line before a heartbeat line.
HEARTBEAT_S = 5.0
#: On a terminal: redraws a second (each reads the clock).
REFRESH_PER_SECOND = 4
#: The most nodes, models and batches drawn on a terminal.
MAX_ROWS = 12
#: The most batches named in a plain line.
MAX_PLAIN_BATCHES = 3

Clock = Callable[[], float]


@dataclass
class BatchBar:
    """One ``llm_batch``/``rlm_batch`` in progress: ``done`` of ``total`` calls returned."""

    kind: str
    node_id: str
    total: int
    done: int = 0

    @property
    def label(self) -> str:
        return f"{self.kind}_batch {self.done}/{self.total}"


@dataclass
class ProgressState:
    """What the display shows, kept from events and notices (read it in tests)."""

    started: float = field(default_factory=time.monotonic)
    nodes: dict[str, tuple[int, int]] = field(default_factory=dict)  # node -> (depth, iteration)
    queued: dict[str, str] = field(default_factory=dict)  # call id -> model, waiting for a slot
    running: dict[str, str] = field(default_factory=dict)  # call id -> model, sent
    usage: Usage = field(default_factory=Usage)
    models: dict[str, Usage] = field(default_factory=dict)  # model spec -> its usage
    batches: dict[str, BatchBar] = field(default_factory=dict)  # batch id -> bar

    def notice(self, event: Event) -> bool:
        """Apply a live notice about calls or batches; ``False`` if ``event`` is not one."""
        kind = event.get("type")
        if kind == "call_queued":
            self.queued[event["call_id"]] = event["model"]
        elif kind == "call_start":
            self.queued.pop(event["call_id"], None)
            self.running[event["call_id"]] = event["model"]
        elif kind == "call_end":
            self.ended(event["call_id"])
        elif kind == "batch_start":
            self.batches[event["batch_id"]] = BatchBar(
                event["kind"], event["node_id"], event["total"]
            )
        elif kind == "batch_progress":
            bar = self.batches.get(event["batch_id"])
            if bar is not None:  # a late call of an ended batch is not drawn again
                bar.done = event["done"]
        elif kind == "batch_end":
            self.batches.pop(event["batch_id"], None)
        else:
            return False
        return True

    def ended(self, call_id: str) -> None:
        """The call is over: neither queued nor running."""
        self.queued.pop(call_id, None)
        self.running.pop(call_id, None)

    def calls_of(self, model: str) -> tuple[int, int]:
        """``(running, queued)`` calls of ``model``."""
        return (
            sum(1 for m in self.running.values() if m == model),
            sum(1 for m in self.queued.values() if m == model),
        )


class ProgressSink:
    """Turns events and notices into a progress display. ``live = True``: the tracer
    sends it the notices too. ``clock`` (monotonic seconds) is what the elapsed time
    reads; ``heartbeat_s`` spaces the plain heartbeat lines (``None``: no heartbeat).
    :meth:`close` it when the run ends: that stops the refresh or heartbeat thread."""

    live = True

    def __init__(
        self,
        console: Console,
        *,
        clock: Clock = time.monotonic,
        heartbeat_s: float | None = HEARTBEAT_S,
    ) -> None:
        self.console = console
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.state = ProgressState(started=clock())
        self._lock = threading.Lock()  # the refresh or heartbeat thread reads the state
        self._closed = False
        self._last_line = self.state.started
        self._live: Live | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if console.is_terminal:
            from rich.live import Live

            self._live = Live(
                console=console,
                refresh_per_second=REFRESH_PER_SECOND,
                transient=True,
                get_renderable=self.renderable,
            )
            self._live.start()
        elif heartbeat_s is not None:
            self._beat = threading.Thread(
                target=self._beat_loop, args=(heartbeat_s,), name="recursa-progress"
            )
            self._beat.daemon = True
            self._beat.start()

    # -- what arrives -----------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._closed:
                return
            if not self.state.notice(event):
                self._event(parse_event(event))  # a notice it does not know parses as None

    def _event(self, event: TraceEvent | None) -> None:
        s = self.state
        if isinstance(event, RunStart):
            s.started = self._last_line = self.clock()  # the run's time, not the setup's
        elif isinstance(event, NodeStart):
            s.nodes[event.node_id] = (event.depth, 0)
        elif isinstance(event, NodeEnd):
            s.nodes.pop(event.node_id, None)
        elif isinstance(event, ModelCall):
            s.ended(event.call_id)  # its call_end comes just after
            s.usage.add(event.usage)
            s.models.setdefault(event.model, Usage()).add(event.usage)
            node = event.node_id
            if event.purpose == "turn" and node in s.nodes and not event.error:
                s.nodes[node] = (s.nodes[node][0], event.iteration or 0)
                if self._live is None:
                    self._print(self._node_line(node))

    # -- plain lines ------------------------------------------------------------------
    def summary(self) -> str:
        """Calls, running and queued, tokens, cost, elapsed time, then batches."""
        s = self.state
        parts = [
            f"calls {s.usage.calls}",
            f"{len(s.running)} running, {len(s.queued)} queued",
            f"tokens {s.usage.total_tokens:,}",
            _cost(s.usage.cost_usd),
            f"{self.clock() - s.started:.1f}s",
        ]
        bars = list(s.batches.values())
        parts += [bar.label for bar in bars[:MAX_PLAIN_BATCHES]]
        if len(bars) > MAX_PLAIN_BATCHES:
            parts.append(f"+{len(bars) - MAX_PLAIN_BATCHES} batches")
        return " · ".join(parts)

    def _node_line(self, node: str) -> str:
        depth, iteration = self.state.nodes[node]
        return f"recursa: {node} depth {depth} iteration {iteration} · {self.summary()}"

    def _model_lines(self) -> list[str]:
        return [
            f"recursa: model {spec} · calls {u.calls} · tokens {u.total_tokens:,} · "
            f"{_cost(u.cost_usd)}"
            for spec, u in self.state.models.items()
        ]

    def _print(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False)
        self._last_line = self.clock()

    def heartbeat(self) -> None:
        """Off a terminal: a line if none went out for ``heartbeat_s`` (the thread's tick)."""
        with self._lock:
            due = self.heartbeat_s is not None and (
                self.clock() - self._last_line >= self.heartbeat_s
            )
            if due and not self._closed and self._live is None:
                self._print(f"recursa: working · {self.summary()}")

    def _beat_loop(self, interval: float) -> None:
        while not self._stop.wait(interval / 5):
            self.heartbeat()

    # -- the live view ------------------------------------------------------------------
    def renderable(self) -> RenderableType:
        """The live view, built when drawn: nodes, models, batch bars, the summary."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            s = self.state
            nodes = Table(box=None, title="recursa", title_justify="left")
            for name in ("node", "depth", "iteration"):
                nodes.add_column(name, justify="left" if name == "node" else "right")
            for node, (depth, iteration) in list(s.nodes.items())[:MAX_ROWS]:
                nodes.add_row(node, str(depth), str(iteration))
            parts: list[RenderableType] = [nodes]
            specs = list(dict.fromkeys([*s.models, *s.running.values(), *s.queued.values()]))
            if specs:
                models = Table(box=None)
                for name in ("model", "calls", "running", "queued", "tokens", "cost"):
                    models.add_column(name, justify="left" if name == "model" else "right")
                for spec in specs[:MAX_ROWS]:
                    u = s.models.get(spec, Usage())
                    running, queued = s.calls_of(spec)
                    models.add_row(
                        spec, str(u.calls), str(running), str(queued),
                        f"{u.total_tokens:,}", _cost(u.cost_usd),
                    )  # fmt: skip
                parts.append(models)
            if s.batches:
                bars = Table(box=None, show_header=False)
                for bar in list(s.batches.values())[:MAX_ROWS]:
                    bars.add_row(
                        f"{bar.kind}_batch ({bar.node_id})",
                        ProgressBar(total=max(bar.total, 1), completed=bar.done, width=30),
                        f"{bar.done}/{bar.total}",
                    )
                parts.append(bars)
            parts.append(Text(self.summary(), style="dim"))
            return Group(*parts)

    # -- the end ----------------------------------------------------------------------
    def close(self, *, failed: bool = False) -> None:
        """Stop drawing (and the heartbeat) for good; unless ``failed``, the totals."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._live is not None:
            self._live.stop()
        with self._lock:
            if self._closed:
                return
            if not failed:
                for line in self._model_lines():
                    self._print(line)
                self._print(f"recursa: done · {self.summary()}")
            self._closed = True


def _cost(cost: float | None) -> str:
    return "unpriced" if cost is None else f"${cost:.4f}"


@contextmanager
def progress_sinks(enabled: bool) -> Iterator[list[Sink]]:
    """The sinks for a CLI run: a progress display on stderr when enabled."""
    if not enabled:
        yield []
        return
    from rich.console import Console

    with showing(ProgressSink(Console(file=sys.stderr, soft_wrap=True))) as sinks:
        yield sinks
