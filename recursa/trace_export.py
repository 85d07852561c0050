"""Traces as training data: ``recursa trace export TRACE... --format chat-jsonl -o OUT``.

Each line of the output is one example, ``{"messages": [...], "metadata": {...}}``: the
messages one model request saw, as the model saw them, ending with the reply it gave,
in OpenAI's chat shape (a tool-using sub-call's ``tool_calls`` / ``tool`` messages
included), so fine-tuning tools read it as it is. ``metadata`` says where it came from:
the run id, the model, the node and its depth, the call, the purpose (``turn`` of an
RLM node, ``sub`` for ``llm_query``), the run's final answer and why it stopped, and the
bench score when there is one.

A node's conversation is rebuilt from its turns' ``model_call`` events, each of which
records only the messages it added (the system prompt is in the first). That needs
the prompts whole: a trace recorded without ``trace_prompts="full"``
(``--trace-prompts full``) is refused with one error saying so.

A bench directory (``OUT/results.jsonl`` with ``OUT/traces/``) exports the traces of
its results; ``min_score`` keeps only runs scored at or above it, a rejection-sampled
dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .trace import Event, TraceNode, load

Per = Literal["request", "root-turn"]
PER_CHOICES: tuple[Per, ...] = ("request", "root-turn")
RESULTS_FILE = "results.jsonl"
TRACE_DIR = "traces"
#: The keys of a traced message that a chat example keeps.
MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id")


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: ``examples`` lines from ``runs`` runs; ``skipped`` runs
    left out (unanswered under ``only_answered``, under ``min_score``, or no trace)."""

    examples: int
    runs: int
    skipped: int


@dataclass(frozen=True)
class _Source:
    trace: Path
    score: float | None = None


def export_chat_jsonl(
    paths: Sequence[Path],
    out: Path,
    *,
    per: str = "request",
    only_answered: bool = False,
    min_score: float | None = None,
) -> ExportSummary:
    """Write the chat examples of the traces (and bench directories) in ``paths`` to
    ``out`` (``per``: one of :data:`PER_CHOICES`); a :class:`ConfigError` for a trace
    without whole prompts."""
    if per not in PER_CHOICES:
        raise ConfigError(f"--per must be one of {', '.join(PER_CHOICES)}, not {per!r}")
    sources, skipped = _sources(paths, min_score)
    examples = runs = 0
    with out.open("w", encoding="utf-8") as fh:
        for source in sources:
            found = list(chat_examples(source.trace, per=per, score=source.score,
                                       only_answered=only_answered))  # fmt: skip
            if not found:
                skipped += 1
                continue
            runs += 1
            for example in found:
                fh.write(json.dumps(example, ensure_ascii=False) + "\n")
                examples += 1
    return ExportSummary(examples, runs, skipped)


def chat_examples(
    path: Path,
    *,
    per: Per = "request",
    only_answered: bool = False,
    score: float | None = None,
) -> Iterator[dict[str, Any]]:
    """The examples of one trace, node by node (root first), each in request order."""
    trace = load(path)
    start, end = trace.run_start or {}, trace.run_end or {}
    if start.get("trace_prompts") != "full":
        raise ConfigError(
            f"{path}: the trace has its prompts cut; rerun with --trace-prompts full "
            "(RLM(trace_prompts='full')) to export it as training data"
        )
    if only_answered and not _answered(end):
        return
    run = {
        "run_id": start.get("run_id"),
        "answer": end.get("answer"),
        "stopped": end.get("stopped"),
        **({"score": score} if score is not None else {}),
    }
    if trace.root is None:
        return
    for node in trace.root.walk():
        yield from _node_examples(node, run, per, path)


def _node_examples(
    node: TraceNode, run: Mapping[str, Any], per: Per, path: Path
) -> Iterator[dict[str, Any]]:
    conversation: list[dict[str, Any]] = []
    for event in node.events:
        if event["type"] == "model_call" and event.get("purpose") == "turn":
            if event.get("error") or event.get("response") is None:
                continue
            conversation += [_message(m, path) for m in event.get("messages") or []]
            reply = {"role": "assistant", "content": event["response"]}
            yield _example([*conversation, reply], run, node, event)
        elif event["type"] == "subcall" and event.get("kind") == "llm" and per == "request":
            yield from _subcall_examples(event, run, node, path)


def _subcall_examples(
    event: Event, run: Mapping[str, Any], node: TraceNode, path: Path
) -> Iterator[dict[str, Any]]:
    """A sub-call's requests: one for a plain ``llm_query``, one per step of a tool loop
    (each ending at the assistant message that step produced)."""
    if event.get("answer") is None:
        return  # it failed: no reply to learn from
    messages = event.get("messages")
    if not messages:
        if "prompt_chars" in event:
            raise _cut(path)
        conversation = [{"role": "user", "content": event.get("prompt", "")},
                        {"role": "assistant", "content": event["answer"]}]  # fmt: skip
        yield _example(conversation, run, node, event, purpose="sub")
        return
    loop = [_message(m, path) for m in messages]
    for i, message in enumerate(loop):
        if message["role"] == "assistant":
            yield _example(loop[: i + 1], run, node, event, purpose="sub", step=i)


def _example(
    messages: list[dict[str, Any]],
    run: Mapping[str, Any],
    node: TraceNode,
    event: Event,
    *,
    purpose: str = "turn",
    step: int | None = None,
) -> dict[str, Any]:
    depth = event.get("depth", node.depth)
    metadata = {
        **run,
        "node_id": node.node_id,
        "depth": depth + 1 if purpose == "sub" else depth,  # a sub-call asks one level down
        "model": event.get("model"),
        "call_id": event.get("call_id"),
        "purpose": purpose,
    }
    if step is not None:
        metadata["message_index"] = step
    return {"messages": messages, "metadata": metadata}


def _message(message: Mapping[str, Any], path: Path) -> dict[str, Any]:
    if "content_chars" in message:
        raise _cut(path)
    return {k: message[k] for k in MESSAGE_KEYS if k in message}


def _cut(path: Path) -> ConfigError:
    return ConfigError(
        f"{path}: a prompt in the trace was cut; rerun with --trace-prompts full to export it"
    )


def _answered(end: Mapping[str, Any]) -> bool:
    return bool(end) and not end.get("stopped") and not end.get("error") and bool(end.get("answer"))


def _sources(paths: Sequence[Path], min_score: float | None) -> tuple[list[_Source], int]:
    """Trace files as given; bench directories as the traces of their results (those
    scored at least ``min_score``). Also how many results were left out."""
    sources: list[_Source] = []
    skipped = 0
    for path in paths:
        if not path.is_dir():
            if min_score is not None:
                raise ConfigError(f"--min-score needs a bench directory, and {path} is a file")
            sources.append(_Source(path))
            continue
        results = path / RESULTS_FILE
        if not results.is_file():
            raise ConfigError(f"{path} is a directory without {RESULTS_FILE} (not a bench run)")
        for row in _rows(results):
            score = row.get("score")
            trace = _trace_of(path, row.get("trace"))
            if trace is None or not isinstance(score, int | float):
                skipped += 1  # a result without a trace, or unscored
            elif min_score is not None and score < min_score:
                skipped += 1  # rejected
            else:
                sources.append(_Source(trace, float(score)))
    return sources, skipped


def _rows(results: Path) -> Iterator[dict[str, Any]]:
    """The rows of a ``results.jsonl``, the last one for each (item, method), as the
    bench reads them (a line cut by a killed run is ignored)."""
    rows: dict[tuple[Any, Any], dict[str, Any]] = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows[(row.get("item"), row.get("method"))] = row
    yield from rows.values()


def _trace_of(bench_dir: Path, recorded: Any) -> Path | None:
    """A result's trace: where it was written, else under the bench's ``traces/`` (the
    directory may have moved since)."""
    if not isinstance(recorded, str) or not recorded:
        return None
    for candidate in (Path(recorded), bench_dir / TRACE_DIR / Path(recorded).name):
        if candidate.is_file():
            return candidate
    return None


__all__ = ["PER_CHOICES", "ExportSummary", "Per", "chat_examples", "export_chat_jsonl"]
