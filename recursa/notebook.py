"""recursa in a Jupyter notebook: a run's live progress in its cell, and a trace as HTML.

A run in a notebook can take minutes, and a cell that shows nothing until it ends looks
hung. When :meth:`~recursa.rlm.RLM.completion` (or ``await acompletion``) runs in a
Jupyter kernel, :func:`cell_progress` adds a :class:`CellProgress` sink: one display in
the cell (nodes with their iteration, calls running and queued, tokens, cost, elapsed
time), redrawn at most :data:`~recursa.progress.REFRESH_PER_SECOND` times a second and
left as one line of totals at the end. The counting is the CLI's own
(:class:`~recursa.progress.ProgressSink`, drawing nowhere); only the drawing is HTML.
``progress=False`` turns it off; outside a kernel nothing changes (IPython is looked
for only if it is already imported).

:meth:`TraceView.load` reads a finished (or interrupted) trace for display: its query,
answer, cost and calls, the recursion tree in brief, and the command that opens it in
the viewer.
"""

from __future__ import annotations

import contextvars
import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, cast

from .result import trace_link_html
from .runs import INCOMPLETE, summarize
from .trace import Event, Sink, load, showing

#: How much of an answer a trace view shows.
VIEW_ANSWER_CHARS = 2000
#: The most node ids a trace view names per depth.
VIEW_NODES_PER_DEPTH = 8
#: The most nodes and models the live display lists.
_MAX_ROWS = 12


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel: an IPython shell with a ``kernel``.
    IPython is not imported here; a process that never imported it is no kernel."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return getattr(shell, "kernel", None) is not None


@contextmanager
def cell_progress(enabled: bool) -> Iterator[list[Sink]]:
    """The sinks that show a run's progress in the running cell: one :class:`CellProgress`
    when ``enabled`` and in a Jupyter kernel, else none. It is closed when the run ends."""
    if not enabled or not in_kernel():
        yield []
        return
    with showing(CellProgress()) as sinks:
        yield sinks


class CellProgress:
    """A live trace sink drawing a run's progress in one notebook display, updated in place.

    Events only update the counts; a ticker thread redraws the display
    :data:`~recursa.progress.REFRESH_PER_SECOND` times a second (so a slow model call
    still shows the clock moving, and a burst of events costs no more redraws).
    :meth:`close` stops it and leaves the totals.
    """

    live = True

    def __init__(self) -> None:
        from IPython.display import HTML, display  # only ever made inside a kernel
        from rich.console import Console

        from .progress import REFRESH_PER_SECOND, ProgressSink

        self._html = cast(Callable[[str], Any], HTML)  # IPython is untyped
        # The CLI's counting, drawing nowhere: a quiet console that is no terminal.
        quiet = Console(file=io.StringIO(), force_terminal=False, quiet=True)
        self._counts = ProgressSink(quiet, heartbeat_s=None)
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        first = self._html(self.html())
        self.handle = display(first, display_id=True)  # type: ignore[no-untyped-call]
        # the ticker runs in this context: the kernel sends its output to this cell
        context = contextvars.copy_context()
        self._ticker = threading.Thread(
            target=context.run,
            args=(self._tick, 1 / REFRESH_PER_SECOND),
            name="recursa-cell",
            daemon=True,
        )
        self._ticker.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if not self._closed:
                self._counts(event)

    def html(self, final: str | None = None) -> str:
        """The display: a heading with the totals, then the nodes running and the models
        (``final``: just the one line of totals, ``"done"`` or ``"stopped"``)."""
        counts = self._counts
        state = counts.state
        if final is not None:
            return _box(f"<b>recursa</b> {final} · {escape(counts.summary())}")
        rows = [
            f"<tr><td>{escape(node)}</td><td>{depth}</td><td>{iteration}</td></tr>"
            for node, (depth, iteration) in list(state.nodes.items())[:_MAX_ROWS]
        ]
        nodes = _table(("node", "depth", "iteration"), rows)
        specs = dict.fromkeys([*state.models, *state.running.values(), *state.queued.values()])
        model_rows = []
        for spec in list(specs)[:_MAX_ROWS]:
            usage = state.models.get(spec)
            running, queued = state.calls_of(spec)
            calls, tokens = (usage.calls, usage.total_tokens) if usage else (0, 0)
            cost = _usd(usage.cost_usd) if usage else "-"
            model_rows.append(
                f"<tr><td>{escape(spec)}</td><td>{calls}</td><td>{running}</td><td>{queued}</td>"
                f"<td>{tokens:,}</td><td>{escape(cost)}</td></tr>"
            )
        models = _table(("model", "calls", "running", "queued", "tokens", "cost"), model_rows)
        return _box(f"<b>recursa</b> running · {escape(counts.summary())}{nodes}{models}")

    def refresh(self) -> None:
        """Redraw the display now (the ticker's job; a no-op once closed)."""
        with self._lock:
            if self._closed:
                return
            self.handle.update(self._html(self.html()))

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.refresh()

    def close(self, *, failed: bool = False) -> None:
        """Stop redrawing and leave one line of totals: ``done``, or ``stopped`` if the
        run raised (an interrupt, an error)."""
        self._stop.set()
        self._ticker.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.handle.update(self._html(self.html("stopped" if failed else "done")))


def _box(inner: str) -> str:
    return f"<div class='recursa-progress' style='font-family:monospace'>{inner}</div>"


def _table(header: tuple[str, ...], rows: list[str]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th style='text-align:left'>{name}</th>" for name in header)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _usd(cost: float | None) -> str:
    return "unpriced" if cost is None else f"${cost:.4f}"


# -- a trace, displayed ----------------------------------------------------------------
@dataclass(frozen=True)
class DepthRow:
    """The nodes at one depth of a trace's tree, each with its iterations."""

    depth: int
    nodes: tuple[tuple[str, int], ...]  # (node id, iterations)

    @property
    def iterations(self) -> int:
        return sum(n for _, n in self.nodes)


@dataclass(frozen=True)
class TraceView:
    """A trace for a notebook to show (``_repr_html_``): what was asked and answered, what
    it cost, its calls, the tree by depth, and how to open it in the viewer."""

    path: Path
    query: str
    answer: str | None
    status: str
    cost_usd: float | None
    calls: int
    tree: tuple[DepthRow, ...]
    error: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> TraceView:
        """Read the trace at ``path`` (a run still going, or killed, shows as incomplete)."""
        path = Path(path)
        summary = summarize(path)
        trace = load(path)
        by_depth: dict[int, list[tuple[str, int]]] = {}
        for node in trace.nodes.values():
            if node.start is None:
                continue  # the run's own events, not a node
            if node.end is not None:
                iterations = int(node.end.get("iterations") or 0)
            else:  # not ended: the turns it made so far
                iterations = sum(
                    1 for e in node.events
                    if e.get("type") == "model_call" and e.get("purpose") == "turn"
                )  # fmt: skip
            by_depth.setdefault(node.depth, []).append((node.node_id, iterations))
        return cls(
            path=path,
            query=summary.query,
            answer=summary.answer,
            status=summary.status,
            cost_usd=summary.cost_usd,
            calls=sum(1 for e in trace.events if e.get("type") == "model_call"),
            tree=tuple(DepthRow(d, tuple(nodes)) for d, nodes in sorted(by_depth.items())),
            error=summary.error,
        )

    def _repr_html_(self) -> str:
        answer = "(no answer yet)" if self.answer is None else self.answer
        more = len(answer) - VIEW_ANSWER_CHARS
        shown = escape(answer[:VIEW_ANSWER_CHARS])
        if more > 0:
            shown += f"\n… ({more:,} more characters)"
        status = self.status if self.status != INCOMPLETE else "incomplete (running or killed)"
        if self.error:
            status += f" ({self.error})"
        facts = [("query", self.query), ("status", status), ("cost", _usd(self.cost_usd)),
                 ("calls", f"{self.calls:,}")]  # fmt: skip
        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{escape(v)}</td></tr>" for k, v in facts
        )
        depths = "".join(f"<li>{escape(_depth_line(row))}</li>" for row in self.tree)
        tree = f"<div><b>recursion tree</b><ul style='margin:0'>{depths}</ul></div>"
        return (
            "<div class='recursa-trace'>"
            f"<table>{rows}</table>"
            f"<pre style='white-space:pre-wrap'>{shown}</pre>"
            f"{tree if self.tree else ''}{trace_link_html(self.path)}</div>"
        )


def _depth_line(row: DepthRow) -> str:
    """``depth 1: 3 nodes, 7 iterations (n1 3, n2 2, n3 2)``."""
    count = len(row.nodes)
    named = ", ".join(f"{node} {n}" for node, n in row.nodes[:VIEW_NODES_PER_DEPTH])
    if count > VIEW_NODES_PER_DEPTH:
        named += f", +{count - VIEW_NODES_PER_DEPTH} more"
    noun = "node" if count == 1 else "nodes"
    return f"depth {row.depth}: {count} {noun}, {row.iterations} iterations ({named})"
