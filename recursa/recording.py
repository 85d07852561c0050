"""Recordings: the model calls a trace holds, and models that answer from them.

This is the part of replay below the engine: :class:`Recording` reads a trace and
:class:`ReplayModel` plays it back; :mod:`recursa.replay` puts an RLM around them,
and :mod:`recursa.resume` wraps live models with a recording. In short:
any real run becomes a deterministic test.

A trace (see :mod:`recursa.trace`) holds every request of a run: each root
turn's new messages with the model's ``response``, and each sub-call's
``prompt`` with its ``answer``. :class:`ReplayModel` answers the same
requests with the recorded replies, without a network::

    root, sub = replay_models("run.jsonl")
    result = RLM(root, sub, max_depth=2).completion(query, context)   # as recorded
    root.recording.verify()          # every recorded call was replayed, nothing diverged

or ``replay_rlm("run.jsonl", sandbox="inprocess")``, which also takes the recorded
depth, iterations, budget and sandbox (a replay must be set up like the recorded run:
the system prompt depends on them).

How a request finds its recording: a root turn is a node's conversation so far
(system prompt, ``Query: ...``, then the assistant replies and feedback); a
sub-call is one user message. A request matches a recorded one of the same kind
whose messages are the same, where a message the trace cut short (``…[truncated]``
with ``content_chars``) matches on its recorded prefix and its full length. Nodes
are not matched by id (ids depend on timing when ``rlm_batch`` children run
concurrently) but by content: a node's first user message names its query, and
its previous replies pick the one recorded node it follows when several
children ask the same. Each recorded call is replayed at most once, in recorded
order among equals.

``strict=True`` (the default) compares every message the model was shown, so a
changed prompt, context or cell output is reported. ``strict=False`` compares
only what identifies a turn (the node's query and the replies so far) and each
sub-call's prompt, for runs whose printed output is not reproducible (times,
temporary paths, object ids).

A request with no recording raises :class:`ReplayMismatch` (a
:class:`~recursa.errors.ModelError`). From a root turn it ends the run; from a
sub-call it reaches the REPL like any failed sub-call, so :meth:`Recording.verify`
after the run reports it too, along with recorded calls that were never asked.

A replayed reply carries the recorded token counts and cost, so the result's
usage and any budget behave as in the recorded run (nothing is spent). Recorded
failures are raised again as :class:`~recursa.errors.ModelError`; a call the run
cancelled in flight (``llm_batch(stop_when=...)``) waits to be cancelled again,
and the replies it overlapped wait (briefly) until it has been asked, so the
cancellation lands where it did. Replies are written whole in traces, so they
replay exactly; a cut prompt matches any prompt with its recorded prefix and
length, so prompts that agree in their first ``trace_max_chars`` characters and
in length are not told apart (record with a larger ``trace_max_chars`` if that
matters). The trace of a :class:`~recursa.session.Session`'s second or later
query lacks the conversation of the queries before it: only a session's first
query replays on its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import prompts
from .budget import Budget, Usage
from .errors import ConfigError, ModelError
from .models.base import Completion, Message
from .sampling import Sampling
from .settings import recorded_settings
from .trace import (
    TRUNCATION_MARK,
    ModelCall,
    RunEnd,
    RunStart,
    Subcall,
    TraceEvent,
    read_typed_events,
)

Kind = Literal["turn", "sub"]
CANCELLED = "cancelled"  # the error a call cancelled in flight is recorded with
CANCEL_WAIT_SECONDS = 10.0
ORDER_WAIT_SECONDS = 2.0
COMPACTED_ACK = prompts.COMPACTED_ACK  # rlm.py's reply to a compacted history
_PREVIEW = 80
_SUB_WINDOW = re.compile(r"It can read a large prompt \(about ([\d,]+) tokens\)")


class ReplayMismatch(ModelError):
    """The replayed run asked for something the recording does not hold: it diverged."""


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


def _query_of(first_turn: str) -> str:
    """The query in a node's first user message (``Query: ...``)."""
    text = first_turn.removeprefix("Query: ").split("\n\n", 1)[0]
    return _preview(text)


def _text(content: Any) -> str:
    """A message's text: the string, or the text parts of a list of content parts (a
    sub-call with images records only its prompt's text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return json.dumps(content, sort_keys=True)


@dataclass(frozen=True)
class _Recorded:
    """One recorded message; ``full_chars`` is set when the trace cut its content."""

    role: str
    content: Any
    full_chars: int | None = None

    @classmethod
    def from_event(cls, role: str, content: Any, full_chars: Any) -> _Recorded:
        if (
            isinstance(content, str)
            and isinstance(full_chars, int)
            and content.endswith(TRUNCATION_MARK)
        ):
            return cls(role, content[: -len(TRUNCATION_MARK)], full_chars)
        return cls(role, content)

    @property
    def length(self) -> int:
        return self.full_chars if self.full_chars is not None else len(_text(self.content))

    def matches(self, message: Message) -> bool:
        if message["role"] != self.role:
            return False
        content = message["content"]
        if isinstance(content, list) and isinstance(self.content, str):
            content = _text(content)
        if self.full_chars is None:
            return bool(content == self.content)
        return (
            isinstance(content, str)
            and len(content) == self.full_chars
            and content.startswith(self.content)
        )

    def describe(self) -> str:
        cut = f" (cut; {self.full_chars:,} chars)" if self.full_chars is not None else ""
        return f"{self.role}: {_preview(_text(self.content))!r}{cut}"


@dataclass
class RecordedCall:
    """One model request of the recorded run and what came back."""

    index: int
    kind: Kind
    spec: str
    node_id: str
    iteration: int | None
    messages: list[_Recorded]
    text: str | None
    text_chars: int | None
    error: str | None
    usage: Usage
    t0: float = 0.0
    t_end: float = 0.0
    used: bool = False
    #: Calls the recorded run cancelled once this one returned (``stop_when``): the reply
    #: waits until the replay has asked for them, so they are cancelled at the same point.
    overlapping_cancelled: list[RecordedCall] = field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        """The recorded run cancelled it in flight (``llm_batch(stop_when=...)``)."""
        return self.error == CANCELLED

    @property
    def turn(self) -> int:
        """0 for a node's first turn: the replies it had seen."""
        return sum(m.role == "assistant" for m in self.messages)

    def describe(self) -> str:
        if self.kind == "sub":
            return f"sub-call to {self.spec} with prompt {self.messages[0].describe()}"
        return f"turn {self.turn + 1} of node {self.node_id} ({self.spec})"


def _key(kind: Kind, turn: int, first_user_length: int) -> tuple[Kind, int, int]:
    return kind, turn, first_user_length


def _request_shape(messages: Sequence[Message]) -> tuple[Kind, int, int]:
    kind: Kind = "turn" if messages and messages[0]["role"] == "system" else "sub"
    turn = sum(m["role"] == "assistant" for m in messages)
    first = next((m for m in messages if m["role"] == "user"), None)
    return _key(kind, turn, len(_text(first["content"])) if first else 0)


@dataclass(frozen=True)
class RecordedSettings:
    """What the recorded run was asked and how it was configured (from ``run_start``).

    ``fields`` holds every :class:`~recursa.settings.Settings` field the trace recorded
    (see :func:`recursa.settings.recorded_settings`), as keyword arguments.
    """

    query: str | None
    model: str
    sub_model: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def max_depth(self) -> int | None:
        return self.fields.get("max_depth")

    @property
    def max_iterations(self) -> int | None:
        return self.fields.get("max_iterations")

    @property
    def budget(self) -> Budget | None:
        return self.fields.get("budget")

    @property
    def sandbox(self) -> str | None:
        return self.fields.get("sandbox")


@dataclass
class Recording:
    """The model calls of one recorded run, shared by the :class:`ReplayModel` of each spec."""

    path: Path
    calls: list[RecordedCall]
    settings: RecordedSettings
    strict: bool = True
    cancel_wait: float = CANCEL_WAIT_SECONDS
    order_wait: float = ORDER_WAIT_SECONDS
    context_windows: dict[str, int | None] = field(default_factory=dict)
    prompt_styles: dict[str, str] = field(default_factory=dict)
    mismatches: list[ReplayMismatch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, ReplayModel] = {}
        self._index: dict[tuple[Kind, int, int], list[RecordedCall]] = {}
        for call in self.calls:
            first = next((m for m in call.messages if m.role == "user"), None)
            key = _key(call.kind, call.turn, first.length if first else 0)
            self._index.setdefault(key, []).append(call)

    @classmethod
    def load(cls, path: str | Path, *, strict: bool = True) -> Recording:
        """Read a trace; :class:`~recursa.errors.ConfigError` if it holds no replayable run."""
        path = Path(path)
        try:
            events, _ = read_typed_events(path)
        except OSError as exc:
            raise ConfigError(f"cannot read the trace {path}: {exc}") from exc
        starts = [e for e in events if isinstance(e, RunStart)]
        runs = {e.run_id for e in events if isinstance(e, RunStart | RunEnd)}
        if len(runs) > 1 or len(starts) > 1:
            raise ConfigError(f"{path}: holds {len(runs)} runs; a replay needs the trace of one")
        calls = _calls(events)
        if not calls:
            raise ConfigError(f"{path}: no model calls were recorded, nothing to replay")
        start = starts[0] if starts else None
        settings = _settings(start, calls)
        recording = cls(path, calls, settings, strict)
        recording._describe_models(start)
        return recording

    def _describe_models(self, start: RunStart | None) -> None:
        """Context windows and prompt styles, which shape the system prompt."""
        if start is not None and start.models:
            for spec, info in start.models.items():
                self.context_windows[spec] = info.context_window
                self.prompt_styles[spec] = info.prompt_style or "full"
            return
        # Older traces: the sub-model's window is written in the root's system prompt.
        first = next((c for c in self.calls if c.kind == "turn" and c.messages), None)
        if first is not None and isinstance(first.messages[0].content, str):
            found = _SUB_WINDOW.search(first.messages[0].content)
            if found:
                self.context_windows[self.settings.sub_model] = int(found[1].replace(",", ""))

    # -- models ---------------------------------------------------------------
    def model(self, spec: str) -> ReplayModel:
        """The replay model for ``spec`` (one per spec, all sharing this recording)."""
        with self._lock:
            if spec not in self._models:
                self._models[spec] = ReplayModel(self, spec)
            return self._models[spec]

    def models(self) -> tuple[ReplayModel, ReplayModel]:
        """``(root, sub)`` with the recorded specs (the same object when they are equal)."""
        return self.model(self.settings.model), self.model(self.settings.sub_model)

    # -- playing back ---------------------------------------------------------
    def take(self, spec: str, messages: Sequence[Message]) -> RecordedCall:
        """The recorded call for this request, marked as replayed; :class:`ReplayMismatch`
        (also kept in :attr:`mismatches`) when there is none."""
        with self._lock:
            call = self._find(messages)
            if call is None:
                mismatch = ReplayMismatch(self._explain(spec, messages), model=spec)
            elif self.strict and call.spec != spec:
                mismatch = ReplayMismatch(
                    f"replay of {self.path} diverged: {call.describe()} was recorded for "
                    f"{call.spec}, but now it was asked of {spec} (build the models with "
                    "replay_models(), which keeps the recorded specs)",
                    model=spec,
                )
            else:
                call.used = True
                return call
            self.mismatches.append(mismatch)
            raise mismatch

    async def ordered(self, call: RecordedCall) -> None:
        """Keep the recorded order where timing mattered: a reply does not come before the
        calls the recorded run cancelled while it was in flight were asked for (bounded)."""
        deadline = time.monotonic() + self.order_wait
        while not all(c.used for c in call.overlapping_cancelled):
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.005)

    def completion(self, call: RecordedCall) -> Completion:
        """What the recorded call returned, or its recorded failure raised again."""
        if call.error is not None:
            raise ModelError(call.error, model=call.spec)
        if call.text is None:
            raise ReplayMismatch(
                f"replay of {self.path}: no reply to {call.describe()} was recorded"
            )
        if call.text_chars is not None:
            raise ReplayMismatch(
                f"replay of {self.path}: the reply to {call.describe()} was truncated in the "
                f"trace ({call.text_chars:,} chars); record it again with this recursa version",
                model=call.spec,
            )
        usage = call.usage
        return Completion(
            text=call.text,
            model=call.spec,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            cost_usd=usage.cost_usd,
        )

    def _find(self, messages: Sequence[Message]) -> RecordedCall | None:
        for call in self._index.get(_request_shape(messages), ()):
            if not call.used and self._matches(call, messages):
                return call
        return None

    def _matches(self, call: RecordedCall, messages: Sequence[Message]) -> bool:
        if self.strict or call.kind == "sub":
            return len(call.messages) == len(messages) and all(
                r.matches(m) for r, m in zip(call.messages, messages, strict=True)
            )

        # Lenient: the node's query and the replies so far, in order.
        def identity(items: Sequence[Any], role: Any) -> list[Any]:
            return [m for m in items if role(m) == "user"][:1] + [
                m for m in items if role(m) == "assistant"
            ]

        mine = identity(call.messages, lambda m: m.role)
        theirs = identity(messages, lambda m: m["role"])
        return len(mine) == len(theirs) and all(
            r.matches(m) for r, m in zip(mine, theirs, strict=True)
        )

    def _explain(self, spec: str, messages: Sequence[Message]) -> str:
        kind, turn, _ = _request_shape(messages)
        where = f"replay of {self.path} diverged"
        if kind == "sub":
            prompt = _text(messages[-1]["content"]) if messages else ""
            return (
                f"{where}: no recorded sub-call to {spec} has the prompt "
                f"{_preview(prompt)!r} ({len(prompt):,} chars)"
            )
        first = next((m for m in messages if m["role"] == "user"), None)
        asked = _query_of(_text(first["content"])) if first is not None else ""
        node = f"the node asked {asked!r}"
        same_node = [
            c
            for c in self.calls
            if c.kind == "turn"
            and first is not None
            and any(r.role == "user" and r.matches(first) for r in c.messages[:2])
        ]
        if not same_node:
            return f"{where}: no recorded node was asked {asked!r}"
        same_turn = [c for c in same_node if c.turn == turn]
        if not same_turn:
            recorded = max(c.turn for c in same_node) + 1
            return f"{where}: {node} asks for turn {turn + 1}; {recorded} were recorded"
        left = [c for c in same_turn if not c.used]
        if not left:
            return (
                f"{where}: turn {turn + 1} of {node} was already replayed (this run asks "
                "for it more often than the recorded one did)"
            )
        call = left[0]
        for i, (r, m) in enumerate(zip(call.messages, messages, strict=False)):
            shown = self.strict or r.role == "assistant" or i < 2
            if shown and not r.matches(m):
                return (
                    f"{where} at turn {turn + 1} of {node}: message {i} was recorded as "
                    f"{r.describe()} but is now {m['role']}: {_preview(_text(m['content']))!r}"
                )
        return (
            f"{where} at turn {turn + 1} of {node}: {len(messages)} messages now, "
            f"{len(call.messages)} recorded"
        )

    # -- after the run --------------------------------------------------------
    def unused(self) -> list[RecordedCall]:
        """Recorded calls the replay never asked for."""
        return [c for c in self.calls if not c.used]

    def verify(self) -> None:
        """Raise :class:`ReplayMismatch` if the replay asked for anything unrecorded (even
        a sub-call whose error the REPL absorbed) or left recorded calls unasked."""
        if self.mismatches:
            more = len(self.mismatches) - 1
            extra = f" (and {more} more unrecorded request{'s' * (more > 1)})" if more else ""
            raise ReplayMismatch(f"{self.mismatches[0]}{extra}")
        left = self.unused()
        if left:
            raise ReplayMismatch(
                f"replay of {self.path} diverged: {len(left)} of {len(self.calls)} recorded "
                f"calls were never asked for; the first: {left[0].describe()}"
            )

    def reset(self) -> None:
        """Make every recorded call available again, to replay the run once more."""
        with self._lock:
            for call in self.calls:
                call.used = False
            self.mismatches.clear()


class ReplayModel:
    """A :class:`~recursa.models.base.Model` that answers from a :class:`Recording`.

    Its ``spec`` is the recorded model's, so usage is accounted as in the recorded
    run. All replay models of one recording share its calls: build them with
    :func:`replay_models` (or :meth:`Recording.model`).
    """

    cacheable = False  # never wrapped in a response cache (see models/cache.py)

    def __init__(self, recording: Recording, spec: str) -> None:
        self.recording = recording
        self._spec = spec

    def __repr__(self) -> str:
        return f"<ReplayModel {self._spec} from {self.recording.path}>"

    @classmethod
    def from_trace(cls, path: str | Path, *, strict: bool = True) -> ReplayModel:
        """The recorded root model; its sub-model is ``.sibling(recording.settings.sub_model)``."""
        return Recording.load(path, strict=strict).models()[0]

    @property
    def spec(self) -> str:
        return self._spec

    @property
    def context_window(self) -> int | None:
        return self.recording.context_windows.get(self._spec)

    @property
    def prompt_style(self) -> str:
        return self.recording.prompt_styles.get(self._spec, "full")

    def sibling(self, spec: str) -> ReplayModel:
        """The replay model for another spec named in the run (``llm_query(model=...)``)."""
        return self.recording.model(spec)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Completion:
        call = self.recording.take(self._spec, messages)
        await self.recording.ordered(call)
        if call.cancelled:
            # The recorded run cancelled this call (llm_batch stop_when) before it returned:
            # it waits here to be cancelled the same way.
            await asyncio.sleep(self.recording.cancel_wait)
            raise ReplayMismatch(
                f"replay of {self.recording.path} diverged: {call.describe()} was cancelled "
                f"in the recorded run but not within {self.recording.cancel_wait:g}s here",
                model=self._spec,
            )
        return self.recording.completion(call)


# -- reading a trace -------------------------------------------------------------


def _reply(value: str | None, full: int | None) -> tuple[str | None, int | None]:
    """A recorded reply, and its full length when the trace cut it."""
    if value is None:
        return None, None
    if full is not None and value.endswith(TRUNCATION_MARK):
        return value, full
    return value, None


def _calls(events: list[TraceEvent]) -> list[RecordedCall]:
    """Every replayable request, in recorded order: turns with their whole conversation so far
    (the trace keeps only each turn's new messages), sub-calls joined to their prompts."""
    history: dict[str, list[_Recorded]] = {}
    summaries: dict[str, str] = {}
    subcalls = {e.call_id: e for e in events if isinstance(e, Subcall) and e.kind == "llm"}
    calls: list[RecordedCall] = []
    for e in events:
        if not isinstance(e, ModelCall):
            continue
        node = str(e.node_id)
        if e.purpose == "turn":
            if e.messages is None:
                continue  # a failed turn records no messages: the run ended there
            added = [_Recorded.from_event(m.role, m.content, m.content_chars) for m in e.messages]
            conversation = history.setdefault(node, [])
            if node in summaries:
                conversation[1:] = _compacted(summaries.pop(node), added)
            conversation.extend(added)
            text, text_chars = _reply(e.response, e.truncated.get("response"))
            messages = list(conversation)
            kind: Kind = "turn"
            if (
                e.iteration is None
                and added
                and added[-1].content == prompts.COMPACT_REQUEST
                and text is not None
            ):
                summaries[node] = text  # the history is rebuilt from this summary
        elif e.purpose == "sub":
            sub = subcalls.get(e.call_id)
            if sub is None:
                continue  # the trace ends before the sub-call's record
            prompt = _Recorded.from_event("user", sub.prompt, sub.truncated.get("prompt"))
            text, text_chars = _reply(sub.answer, sub.truncated.get("answer"))
            messages = [prompt]
            kind = "sub"
        else:
            continue
        calls.append(
            RecordedCall(
                index=len(calls),
                kind=kind,
                spec=e.model,
                node_id=node,
                iteration=e.iteration,
                messages=messages,
                text=text,
                text_chars=text_chars,
                error=e.error or None,
                usage=e.usage,
                t0=e.t0 or 0.0,
                t_end=e.t or 0.0,
            )
        )
    for c in calls:
        if c.cancelled and (trigger := _stopped_by(c, calls)) is not None:
            trigger.overlapping_cancelled.append(c)
    return calls


def _stopped_by(cancelled: RecordedCall, calls: list[RecordedCall]) -> RecordedCall | None:
    """The sub-call whose reply made ``stop_when`` cancel ``cancelled``: the last of its
    node's to return before the cancellation. Its replayed reply waits until
    ``cancelled`` was asked for, however late the recorded run sent it (it may have gone
    out just after that reply came back, and was still charged)."""
    before = [
        c
        for c in calls
        if c.kind == "sub"
        and not c.cancelled
        and c.node_id == cancelled.node_id
        and c.t_end <= cancelled.t_end
    ]
    return max(before, key=lambda c: c.t_end, default=None)


def _compacted(summary: str, added: list[_Recorded]) -> list[_Recorded]:
    """The history after the system prompt once a node compacted it (see rlm.py): a user
    message with the summary and the model's acknowledgement, unless the trace wrote them."""
    if (
        added
        and added[0].role == "user"
        and str(added[0].content).startswith(prompts.COMPACTED_PREFIX)
    ):
        return []
    return [
        _Recorded("user", f"{prompts.COMPACTED_PREFIX}\n{summary}"),
        _Recorded("assistant", COMPACTED_ACK),
    ]


def _settings(start: RunStart | None, calls: list[RecordedCall]) -> RecordedSettings:
    if start is None:
        root = next((c.spec for c in calls if c.kind == "turn"), calls[0].spec)
        sub = next((c.spec for c in calls if c.kind == "sub"), root)
        return RecordedSettings(None, root, sub)
    return RecordedSettings(
        query=start.query or None,
        model=start.model,
        sub_model=start.sub_model or start.model,
        fields=recorded_settings(start),
    )
