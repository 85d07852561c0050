"""Live progress on stderr while a run goes: nodes, iterations, calls in flight, tokens, cost.

It is a trace sink, so it sees exactly what the trace records, plus the
``call_start`` notices that only live sinks receive. On a terminal it draws a
``rich`` live table; elsewhere it prints one plain line per turn.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .events import ModelCall, NodeEnd, NodeStart, TraceEvent, parse_event
from .trace import Event, Sink


@dataclass
class _State:
    started: float = field(default_factory=time.monotonic)
    nodes: dict[str, tuple[int, int]] = field(default_factory=dict)  # node -> (depth, iteration)
    in_flight: int = 0
    calls: int = 0
    tokens: int = 0
    cost: float | None = 0.0


class ProgressSink:
    """Turns events into a progress display. ``live = True``: it also gets call starts."""

    live = True

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state = _State()
        self._live: Live | None = None
        if console.is_terminal:
            self._live = Live(self._table(), console=console, refresh_per_second=8, transient=True)
            self._live.start()

    def __call__(self, event: Event) -> None:
        s = self.state
        if event.get("type") == "call_start":  # a live notice, not a trace event
            s.in_flight += 1
        else:
            self._event(parse_event(event))
        if self._live is not None:
            self._live.update(self._table())

    def _event(self, event: TraceEvent | None) -> None:
        s = self.state
        if isinstance(event, NodeStart):
            s.nodes[event.node_id] = (event.depth, 0)
        elif isinstance(event, NodeEnd):
            s.nodes.pop(event.node_id, None)
        elif isinstance(event, ModelCall):
            s.in_flight = max(0, s.in_flight - 1)
            usage = event.usage
            s.calls += usage.calls
            s.tokens += usage.input_tokens + usage.output_tokens
            cost = usage.cost_usd
            s.cost = None if cost is None or s.cost is None else s.cost + cost
            node = event.node_id
            if event.purpose == "turn" and node in s.nodes and not event.error:
                s.nodes[node] = (s.nodes[node][0], event.iteration or 0)
                if self._live is None:
                    self.console.print(self._line(node), highlight=False)

    def _summary(self) -> str:
        s = self.state
        cost = "unpriced" if s.cost is None else f"${s.cost:.4f}"
        return (
            f"calls {s.calls} ({s.in_flight} in flight) · tokens {s.tokens:,} · {cost} · "
            f"{time.monotonic() - s.started:.1f}s"
        )

    def _line(self, node: str) -> str:
        depth, iteration = self.state.nodes[node]
        return f"recursa: {node} depth {depth} iteration {iteration} · {self._summary()}"

    def _table(self) -> Table:
        table = Table(title="recursa", title_justify="left", caption=self._summary(), box=None)
        table.add_column("node")
        table.add_column("depth", justify="right")
        table.add_column("iteration", justify="right")
        for node, (depth, iteration) in list(self.state.nodes.items())[:12]:
            table.add_row(node, str(depth), str(iteration))
        return table

    def close(self, *, failed: bool = False) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if not failed:
            self.console.print(f"recursa: done · {self._summary()}", highlight=False)


@contextmanager
def progress_sinks(enabled: bool) -> Iterator[list[Sink]]:
    """The sinks for a CLI run: a progress display on stderr when enabled."""
    if not enabled:
        yield []
        return
    sink = ProgressSink(Console(file=sys.stderr, soft_wrap=True))
    try:
        yield [sink]
    except BaseException:
        sink.close(failed=True)
        raise
    sink.close()
