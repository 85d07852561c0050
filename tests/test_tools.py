"""Tools may return more than JSON's types: the host converts the result before it crosses."""

from __future__ import annotations

import datetime
import enum
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from pydantic import BaseModel

from recursa import RLM
from recursa.models.scripted import ScriptedModel
from recursa.testing import router
from recursa.tools import ToolError, ToolSet, jsonable

SANDBOXES = ["inprocess", "subprocess"]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    S = 1
    L = 3


@dataclass
class Address:
    city: str
    since: datetime.date


@dataclass
class Person:
    name: str
    address: Address
    tags: set[str] = field(default_factory=set)
    color: Color = Color.RED


class Invoice(BaseModel):
    total: Decimal
    issued: datetime.datetime
    lines: tuple[int, ...]


WHEN = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")

#: (what a tool returns, what the REPL receives)
KINDS: dict[str, tuple[Any, Any]] = {
    "dataclass": (
        Person("Ada", Address("London", datetime.date(1840, 1, 2)), {"b", "a"}),
        {
            "name": "Ada",
            "address": {"city": "London", "since": "1840-01-02"},
            "tags": ["a", "b"],
            "color": "red",
        },
    ),
    "pydantic": (
        Invoice(total=Decimal("10.50"), issued=WHEN, lines=(1, 2)),
        {"total": "10.50", "issued": "2024-05-01T12:30:00Z", "lines": [1, 2]},
    ),
    "tuple": ((1, "a", (2, 3)), [1, "a", [2, 3]]),
    "set": ({3, 1, 2}, [1, 2, 3]),
    "frozenset": (frozenset({"y", "x"}), ["x", "y"]),
    "date": (datetime.date(2024, 2, 29), "2024-02-29"),
    "datetime": (WHEN, "2024-05-01T12:30:00+00:00"),
    "time": (datetime.time(8, 15, 30), "08:15:30"),
    "timedelta": (datetime.timedelta(minutes=1, seconds=30), 90.0),
    "decimal": (Decimal("0.10"), "0.10"),
    "enum": (Color.BLUE, "blue"),
    "intenum": (Size.L, 3),
    "path": (PurePosixPath("/data/file.txt"), "/data/file.txt"),
    "uuid": (UID, str(UID)),
    "nested": (
        {"when": [WHEN.date(), (Color.RED, {Size.S})], 7: Decimal("1.5"), None: Path("p")},
        {"when": ["2024-05-01", ["red", [1]]], "7": "1.5", "null": "p"},
    ),
    "plain": ({"a": [1, 2.5, True, None, "s"]}, {"a": [1, 2.5, True, None, "s"]}),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_jsonable_converts(kind: str) -> None:
    value, expected = KINDS[kind]
    got = jsonable(value)
    assert got == expected
    assert json.loads(json.dumps(got)) == expected


def test_mixed_sets_keep_an_order_and_bools_stay_bools() -> None:
    got = jsonable({1, "a"})
    assert sorted(map(str, got)) == ["1", "a"]
    assert jsonable(True) is True and jsonable({True: 1}) == {"true": 1}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"raw", r"result is bytes, which JSON cannot hold: decode it in the tool"),
        ({"blob": bytearray(b"x")}, r"result\['blob'\] is bytearray"),
        ([1, object()], r"result\[1\] is a builtins\.object, which JSON cannot hold"),
        (float("nan"), "nan"),
        (Decimal("Infinity"), "Decimal"),
        ({(1, 2): "tuple key"}, "a key of type tuple"),
        (lambda: 1, "builtins.function"),
    ],
)
def test_unconvertible_results_are_refused_naming_the_type(value: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        jsonable(value)


def test_a_cycle_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="nested more than"):
        jsonable(loop)


async def test_toolset_converts_and_refuses() -> None:
    tools = ToolSet({"person": lambda: KINDS["dataclass"][0], "raw": lambda: b"x"})
    assert await tools.call("person", [], {}) == KINDS["dataclass"][1]
    with pytest.raises(ToolError, match=r"the result of raw\(\) cannot cross as JSON.*bytes"):
        await tools.call("raw", [], {})


# -- real runs: the REPL calls a tool returning each kind ----------------------------------


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_repl_receives_converted_results(sandbox: str) -> None:
    tools = {f"get_{kind}": (lambda v=value: v) for kind, (value, _) in KINDS.items()}
    calls = ", ".join(f"{kind!r}: get_{kind}()" for kind in KINDS)
    code = f"```repl\nimport json\nFINAL(json.dumps({{{calls}}}))\n```"
    model = ScriptedModel(router([code]))
    result = RLM(model, sandbox=sandbox, tools=tools).completion("q", "ctx")
    assert result.error is None, result.error
    assert json.loads(result.answer) == {kind: expected for kind, (_, expected) in KINDS.items()}


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_an_unconvertible_result_is_an_error_in_the_cell(sandbox: str) -> None:
    code = (
        "```repl\ntry:\n    raw()\nexcept Exception as e:\n    err = str(e)\n"
        "FINAL(type(err).__name__ + ': ' + err)\n```"
    )
    model = ScriptedModel(router([code]))
    result = RLM(model, sandbox=sandbox, tools={"raw": lambda: b"\x00"}).completion("q", "c")
    assert "raw() cannot cross as JSON" in result.answer
    assert "bytes" in result.answer
