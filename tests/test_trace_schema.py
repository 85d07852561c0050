"""docs/trace.md, the event dataclasses and what real runs write all agree.

A handful of real runs (scripted models, in-process sandbox) between them make
every situation the schema describes: a depth-2 tree with ``rlm_query``,
``rlm_batch`` and ``llm_batch``, a failing sub-call, a failing child, a cell error,
a timed-out cell, a budget stop, a failed run, a response served from the cache.
Every key they write (nested ones too) must be documented in the per-event tables
or the table of objects; every documented key must be written by at least one of
them (but for :data:`NOT_WRITTEN_HERE`); every dataclass field must be documented;
and every line must read back (``parse_event``) to an event that encodes to it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM, Budget
from recursa.errors import ModelError
from recursa.events import EVENT_CLASSES, encode, parse_event
from recursa.models.base import Message
from recursa.models.scripted import ScriptedModel
from recursa.testing import Received, Reply, ScriptedServer, is_root_turn, node_query, router
from recursa.trace import REQUIRED_FIELDS, TRUNCATION_MARK

DOC = Path(__file__).resolve().parents[1] / "docs" / "trace.md"

#: Documented keys that no run here writes, each with the reason.
NOT_WRITTEN_HERE = {
    # Only a sandbox with a worker process restarts one (a cell that killed it, or that
    # could not be interrupted); the in-process sandbox these runs use has no worker.
    ("cell", "restarted"),
}

Schema = dict[str, set[str]]  # path ("model_call", "run_end.usage.by_model.*") -> keys


# -- the doc -----------------------------------------------------------------------


def _rows(section: str) -> Iterator[list[str]]:
    """The body rows of the markdown tables in ``section``, as lists of cells."""
    header = True
    for line in section.splitlines():
        if not line.startswith("|"):
            header = True
            continue
        if re.fullmatch(r"\|(\s*-+\s*\|)+", line):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header:
            header = False  # the first row of each table names its columns
            continue
        yield cells


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def documented() -> Schema:
    text = DOC.read_text(encoding="utf-8")
    schema: Schema = defaultdict(set)
    common = {
        n
        for row in _rows(_between(text, "### Fields on every", "### Events"))
        for n in _names(row[0])
    }
    events = _between(text, "### Events", "### Objects inside events")
    for kind, body in re.findall(r"^\*\*`(\w+)`\*\*(.*?)(?=^\*\*`|\Z)", events, re.M | re.S):
        schema[kind] = common | {n for row in _rows(body) for n in _names(row[0])}
    objects = _between(text, "### Objects inside events", "### Truncation")
    for row in _rows(objects):
        at, keys = _names(row[1]), _names(row[2])
        assert at and keys, f"an object row names no path or no keys: {row}"
        for path in at:
            schema[path] |= set(keys)
    return schema


def doc_example() -> list[dict[str, Any]]:
    text = _between(DOC.read_text(encoding="utf-8"), "### Example", "### Reading a trace")
    block = re.search(r"```json\n(.*?)\n```$", text, re.S | re.M)
    assert block is not None
    return [json.loads(line) for line in block.group(1).splitlines() if line.strip()]


# -- what was written --------------------------------------------------------------


class Written:
    """Every key written, per path, and the truncation siblings (``prompt_chars``)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.keys: Schema = defaultdict(set)
        self.truncated: Schema = defaultdict(set)

    def add(self, event: dict[str, Any]) -> None:
        self._walk(str(event["type"]), event)

    def _walk(self, path: str, obj: dict[str, Any]) -> None:
        for key, value in obj.items():
            base = key.removesuffix("_chars")
            cut = obj.get(base)
            if base != key and isinstance(cut, str) and cut.endswith(TRUNCATION_MARK):
                assert isinstance(value, int) and value > len(cut) - len(TRUNCATION_MARK)
                self.truncated[path].add(base)
                continue
            self.keys[path].add(key)
            sub = f"{path}.{key}"
            if isinstance(value, dict):
                if f"{sub}.*" in self.schema:  # a map: its keys are names (models, depths)
                    for item in value.values():
                        assert isinstance(item, dict), sub
                        self._walk(f"{sub}.*", item)
                else:
                    self._walk(sub, value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        self._walk(f"{sub}.*", item)


def undocumented(written: Written, schema: Schema) -> set[tuple[str, str]]:
    return {(p, k) for p, keys in written.keys.items() for k in keys if k not in schema.get(p, ())}


# -- the runs ----------------------------------------------------------------------


def sub_reply(prompt: str) -> str:
    if "fail" in prompt:
        raise ModelError("the provider refused this one")
    return "note: " + prompt[:30]


ROOT = [
    # a child RLM, a child that fails, and a batch of sub-calls with one failure
    "```repl\n"
    "found = rlm_query('inner: summarise', context=context[:3])\n"
    "bad = rlm_batch(['inner: explode'], contexts=[context[3:]])\n"
    "notes = llm_batch(['ok ' + c for c in context[:2]] + ['fail please'])\n"
    "seen = llm_query('look at this', images=[b'\\x89PNG\\r\\n\\x1a\\n' + b'0' * 16])\n"
    "print(found, bad, notes)\n```\n"
    "```repl\nraise ValueError('a cell error')\n```",
    # citations on node_end and run_end: a verified quote and span, and a forged quote
    "```repl\nFINAL(found + ' / ' + str(len(notes)),\n"
    "      cite=['flood water', (0, 0, 6), 'not in the context'])\n```",
]
CHILD = [
    "```repl\nn = llm_query('count: ' + context[0][:20])\nprint(n)\n```",
    "```repl\nFINAL('child saw ' + n)\n```",
]


def tree_reply() -> Callable[[list[Message]], str]:
    inner = router({"Query: outer": ROOT, "inner: summarise": CHILD}, sub=sub_reply)

    def reply(messages: list[Message]) -> str:
        if is_root_turn(messages) and "explode" in node_query(messages):
            raise ModelError("the child's model is down")
        return inner(messages)

    return reply


def halve(n: int) -> int:
    """Half of an even ``n``."""
    if n % 2:
        raise ValueError(f"{n} is odd")
    return n // 2


def tool_reply(request: Received) -> str | Reply:
    """The root grants ``halve`` to a sub-call, which calls it twice (once failing)."""
    if is_root_turn(request["messages"]):
        return "```repl\nFINAL(llm_query('halve 8 and 3', tools=['halve']))\n```"
    if any(m["role"] == "tool" for m in request["messages"]):
        return "4, and 3 is odd"
    return Reply("", tool_calls=({"name": "halve", "arguments": {"n": 8}},
                                 {"name": "halve", "arguments": {"n": 3}}))  # fmt: skip


def runs(tmp: Path) -> list[Path]:
    """The trace files of the runs that between them write every documented key."""
    context = [f"report {i}: " + "flood water rising " * 40 for i in range(6)]
    paths: list[Path] = []

    def trace(name: str) -> Path:
        paths.append(tmp / f"{name}.jsonl")
        return paths[-1]

    # the tree, with every kind of sub-call and failure, and all the settings written
    RLM(
        ScriptedModel(tree_reply()), sandbox="inprocess", max_depth=2, trace=trace("tree"),
        compact_after_chars=10**9, max_errors=50, model_settings={"temperature": 0.5},
        require_citations=True,
        sub_model_settings={"seed": 7},
    ).completion("outer", context)  # fmt: skip
    # a budget stop; the second time the same run is served from the response cache
    loop = ["```repl\nanswer['content'] = 'partial'\nprint(llm_query('more'))\n```"] * 5
    for name in ("budget", "cached"):
        RLM(
            ScriptedModel(router(loop)), sandbox="inprocess", budget=Budget(calls=3),
            cache=tmp / "cache.sqlite", trace=trace(name),
        ).completion("spend it", "some context")  # fmt: skip
    # a cell that runs past its time limit, then an answer written as text
    RLM(
        ScriptedModel(["```repl\nwhile True:\n    pass\n```", "FINAL(gave up)"]),
        sandbox="inprocess", cell_timeout=0.3, trace=trace("timeout"),
    ).completion("spin", "ctx")  # fmt: skip
    # a sub-call that uses a host tool over the local server's function calling, its
    # prompts kept whole
    with ScriptedServer(tool_reply) as server:
        RLM(
            "openai/scripted", base_url=server.url, sandbox="inprocess", trace=trace("tools"),
            trace_prompts="full", sub_call_tools={"halve": halve},
        ).completion("halve them", "ctx")  # fmt: skip
    # a folder with a binary file in it: a files context, one file skipped
    folder = tmp / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha", encoding="utf-8")
    (folder / "b.bin").write_bytes(b"\x00" * 4)
    RLM(
        ScriptedModel(["FINAL(done)"]), sandbox="inprocess", trace=trace("files"),
    ).completion("q", folder)  # fmt: skip
    # the root's model fails: the run ends with an error
    with pytest.raises(ModelError):
        RLM(
            ScriptedModel([ModelError("the provider is down")]), sandbox="inprocess",
            trace=trace("failed"),
        ).completion("q", "ctx")  # fmt: skip
    return paths


@pytest.fixture(scope="module")
def written_lines(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    paths = runs(tmp_path_factory.mktemp("schema"))
    return [json.loads(line) for p in paths for line in p.read_text("utf-8").splitlines()]


# -- the checks --------------------------------------------------------------------


def test_every_written_key_is_documented(written_lines: list[dict[str, Any]]) -> None:
    schema = documented()
    written = Written(schema)
    for event in written_lines:
        written.add(event)
    assert undocumented(written, schema) == set()
    # a truncation sibling is only ever beside a documented string
    assert {
        (p, k) for p, keys in written.truncated.items() for k in keys if k not in schema[p]
    } == set()
    assert {"prompt"} <= written.truncated["subcall"]
    assert {"content"} <= written.truncated["model_call.messages.*"]


def test_every_documented_key_is_written(written_lines: list[dict[str, Any]]) -> None:
    schema = documented()
    written = Written(schema)
    for event in written_lines:
        written.add(event)
    never = {(p, k) for p, keys in schema.items() for k in keys if k not in written.keys.get(p, ())}
    assert never == NOT_WRITTEN_HERE


def test_keys_are_written_where_they_apply(written_lines: list[dict[str, Any]]) -> None:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in written_lines:
        by_type[event["type"]].append(event)
    for sub in by_type["subcall"]:
        assert ("images" in sub) == (sub["kind"] == "llm")
        assert ("child_node_id" in sub) == (sub["kind"] == "rlm")
    for call in by_type["model_call"]:
        assert ("response" in call) == (call["purpose"] == "turn" and "error" not in call)
    for kind in ("run_start", "run_end"):
        assert all("run_id" in e for e in by_type[kind])
    assert not any(
        "run_id" in e for k, es in by_type.items() if k not in ("run_start", "run_end") for e in es
    )
    assert all(e["version"] for e in by_type["run_start"])
    assert {e.get("stopped") for e in by_type["run_end"]} == {None, "budget", "error"}


def test_dataclasses_have_the_documented_fields() -> None:
    schema = documented()
    assert set(EVENT_CLASSES) == {p for p in schema if "." not in p}
    for kind, cls in EVENT_CLASSES.items():
        names = {f.name for f in fields(cls)} - {"truncated"} | {"type"}
        assert names == schema[kind], kind


def test_every_line_reads_back_to_what_was_written(written_lines: list[dict[str, Any]]) -> None:
    for line in written_lines:
        event = parse_event(line)
        assert event is not None and event.type == line["type"]
        again = {
            k: v
            for k, v in encode(event).items()
            if k in REQUIRED_FIELDS or (v is not None and v is not False)
        }
        assert again == line


def test_the_doc_example_is_a_trace_of_this_schema() -> None:
    schema = documented()
    written = Written(schema)
    example = doc_example()
    for event in example:
        written.add(event)
        optional = {k: v for k, v in event.items() if k not in REQUIRED_FIELDS}
        assert not [k for k, v in optional.items() if v is None or v is False], event["type"]
        parsed = parse_event(event)
        assert parsed is not None
        assert {k: v for k, v in encode(parsed).items() if v is not None and v is not False} == {
            k: v for k, v in event.items() if v is not None and v is not False
        }
    assert undocumented(written, schema) == set()
    assert example[0]["type"] == "run_start" and example[-1]["type"] == "run_end"
