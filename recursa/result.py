"""What one completion returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .budget import UsageReport

#: Why a run ended without a plain answer: a budget ran out; the iterations ran out (the
#: answer then comes from one last extraction call, or the REPL's held ``answer``);
#: ``max_errors`` cells in a row failed (the held ``answer``); ``require_citations`` was
#: set and the answer still had no verified citation after its retries (``"unverified"``);
#: or it failed (an invalid final answer, an error). ``None``: it answered.
Stopped = Literal["budget", "iterations", "errors", "unverified", "error"]

#: ``result.isolation`` of a run whose root never needed its sandbox (it answered
#: without code, so the start behind the first turn was cancelled).
NO_SANDBOX = "not started: no code ran"


@dataclass(frozen=True)
class Citation:
    """One piece of evidence the model attached to its answer, as the host checked it.

    ``quote`` is the text cited: for a verified citation the context's own text at
    ``start:end`` (character offsets into the source), for an unverified one what the
    model sent (cut to its first characters). ``source`` names where it is: ``"context"``
    for a text context, ``"context[3]"`` for item 3 of a list, the key for a dict (a file
    and ``page`` once folder and PDF contexts exist); ``item`` is that index or key
    (``None`` for a text context). ``verified`` is True only when the host found the text
    in the context itself; otherwise ``reason`` says why not. ``before`` and ``after``
    are the context's text just around a verified quote (up to
    :data:`~recursa.citations.WINDOW_CHARS` characters each side, ``None`` when
    unverified), so a trace shows the quote in place without the context. See
    :mod:`recursa.citations` for how quotes are matched.
    """

    quote: str
    source: str
    start: int | None
    end: int | None
    verified: bool
    reason: str | None = None
    page: int | None = None
    item: str | int | None = None
    before: str | None = None
    after: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "quote": self.quote,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "page": self.page,
            "item": self.item,
            "verified": self.verified,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Citation | None:
        """A citation read back from its dict form (a trace), or None if it is not one."""
        if not isinstance(data, dict):
            return None

        def opt_int(key: str) -> int | None:
            v = data.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        item = data.get("item")
        quote, source, reason = data.get("quote"), data.get("source"), data.get("reason")
        before, after = data.get("before"), data.get("after")  # absent from older traces
        return cls(
            quote=quote if isinstance(quote, str) else "",
            source=source if isinstance(source, str) else "",
            start=opt_int("start"),
            end=opt_int("end"),
            verified=data.get("verified") is True,
            reason=reason if isinstance(reason, str) else None,
            page=opt_int("page"),
            item=item if isinstance(item, str) or opt_int("item") is not None else None,
            before=before if isinstance(before, str) else None,
            after=after if isinstance(after, str) else None,
        )


@dataclass
class Result:
    """The outcome of one completion."""

    answer: str
    usage: UsageReport
    iterations: int
    depth_reached: int
    stopped: Stopped | None
    isolation: str
    duration_s: float
    run_id: str
    trace: Path | None = None
    error: str | None = None
    output: Any = None  # the validated object, when an output_type was given
    #: the root's citations, each checked against the context (:class:`Citation`)
    citations: list[Citation] = field(default_factory=list)
    #: files of the context left out as unreadable: ``{"name": ..., "reason": ...}`` each
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def cost_usd(self) -> float | None:
        """Total cost in USD; ``None`` when some model in the tree is unpriced."""
        return self.usage.cost_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "iterations": self.iterations,
            "depth_reached": self.depth_reached,
            "stopped": self.stopped,
            "trace": str(self.trace) if self.trace else None,
            "isolation": self.isolation,
            "duration_s": round(self.duration_s, 3),
            "run_id": self.run_id,
            "error": self.error,
            "citations": [c.to_dict() for c in self.citations],
            "skipped": list(self.skipped),
        }

    def _repr_html_(self) -> str:
        """How a notebook shows a result: the answer, what it cost, why it stopped, the
        usage per depth, and the trace with the command that opens it."""
        return _result_html(self)


#: How much of an answer a notebook shows; ``result.answer`` holds all of it.
HTML_ANSWER_CHARS = 5000


def _result_html(result: Result) -> str:
    from html import escape  # every piece of text below is escaped: answers are untrusted

    def usd(value: float | None) -> str:
        return "unpriced" if value is None else f"${value:.4f}"

    usage = result.usage
    answer = result.answer
    more = len(answer) - HTML_ANSWER_CHARS
    shown = escape(answer[:HTML_ANSWER_CHARS])
    if more > 0:
        shown += f"\n… ({more:,} more characters in result.answer)"
    status = "answered" if result.stopped is None else f"stopped: {result.stopped}"
    if result.error:
        status += f" ({result.error})"
    facts = [
        ("status", status),
        ("cost", usd(result.cost_usd)),
        ("calls", f"{usage.calls:,}"),
        ("tokens", f"{usage.input_tokens:,} in, {usage.output_tokens:,} out"),
        ("iterations", str(result.iterations)),
        ("depth reached", str(result.depth_reached)),
        ("time", f"{result.duration_s:.1f} s"),
    ]
    rows = "".join(
        f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
        for k, v in facts
    )
    tree = ""
    if usage.by_depth:
        lines = "".join(
            f"<li>depth {int(depth)}: {u.calls:,} calls, "
            f"{u.input_tokens + u.output_tokens:,} tokens, {escape(usd(u.cost_usd))}</li>"
            for depth, u in sorted(usage.by_depth.items())
        )
        tree = f"<div><b>recursion tree</b><ul style='margin:0'>{lines}</ul></div>"
    trace = "" if result.trace is None else trace_link_html(result.trace)
    return (
        "<div class='recursa-result'>"
        f"<pre style='white-space:pre-wrap'>{shown}</pre>"
        f"<table>{rows}</table>{tree}{trace}</div>"
    )


def trace_link_html(path: Path) -> str:
    """Where a trace is, the command that opens it in the viewer, and the call that shows
    it in a notebook (a result and :class:`~recursa.notebook.TraceView` say it alike)."""
    from html import escape
    from shlex import quote

    shown, command = escape(str(path)), escape(quote(str(path)))
    return (
        f"<div><b>trace</b> <code>{shown}</code>; open it with "
        f"<code>recursa view {command}</code>, or show it here with "
        f"<code>recursa.notebook.TraceView.load({escape(repr(str(path)))})</code></div>"
    )
