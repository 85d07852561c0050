"""Typed answers: plain values coerced as models write them, structured ones validated."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from recursa import RLM
from recursa.errors import ConfigError
from recursa.models.scripted import ScriptedModel
from recursa.output import AnswerInvalid, OutputSpec, coerce, is_plain
from recursa.testing import router

SANDBOXES = ["inprocess", "subprocess"]


class Answer(enum.Enum):
    YES = "yes"
    NO = "no"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class City(BaseModel):
    name: str
    population: int


@dataclass
class Point:
    x: int
    y: int


YesNo = Literal["yes", "no"]
# typing.Optional (a typing.Union) on purpose: `X | None` is covered apart.
OptInt = Optional[int]  # noqa: UP045
OptStr = Optional[str]  # noqa: UP045
OptBool = Optional[bool]  # noqa: UP045
OptCity = Optional[City]  # noqa: UP045


# -- unit: coercion of plain values -----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "text", "value", "answer"),
    [
        (str, "yes", "yes", "yes"),
        (str, "True", "True", "True"),
        (str, ' "quoted" ', ' "quoted" ', ' "quoted" '),  # str keeps the text as it is
        (str, "", "", ""),
        (bool, "yes", True, "true"),
        (bool, "YES", True, "true"),
        (bool, "True", True, "true"),
        (bool, "true", True, "true"),
        (bool, "1", True, "true"),
        (bool, " No. ", False, "false"),
        (bool, "false", False, "false"),
        (bool, "0", False, "false"),
        (bool, '"no"', False, "false"),
        (int, "42", 42, "42"),
        (int, " -7 ", -7, "-7"),
        (int, "1,000", 1000, "1000"),
        (int, "1,234,567", 1234567, "1234567"),
        (int, "42.0", 42, "42"),
        (int, "'5'", 5, "5"),
        (float, " 3.5 ", 3.5, "3.5"),
        (float, "42", 42.0, "42.0"),
        (float, "1,000.25", 1000.25, "1000.25"),
        (float, "-1e3", -1000.0, "-1000.0"),
        (YesNo, "yes", "yes", "yes"),
        (YesNo, "Yes", "yes", "yes"),
        (YesNo, "'no'", "no", "no"),
        (Literal[1, 2, 3], "2", 2, "2"),
        (Literal[True], "yes", True, "true"),
        (Answer, "yes", Answer.YES, "yes"),
        (Answer, "NO", Answer.NO, "no"),  # by name
        (Answer, "Answer.NO", Answer.NO, "no"),
        (Answer, "No", Answer.NO, "no"),  # ignoring case
        (Level, "2", Level.HIGH, "2"),
        (Level, "low", Level.LOW, "1"),
        (OptInt, "7", 7, "7"),
        (OptInt, "None", None, "null"),
        (OptInt, "null", None, "null"),
        (int | None, "", None, "null"),
        (OptStr, "None", None, "null"),
        (OptStr, "text", "text", "text"),
        (int | str, "5", 5, "5"),
        (int | str, "five", "five", "five"),
        (bool | int, "yes", True, "true"),
        (YesNo | None, "no", "no", "no"),
        (None, "None", None, "null"),
    ],
)
def test_plain_values_are_coerced(target: Any, text: str, value: Any, answer: str) -> None:
    spec = OutputSpec(target)
    assert spec.plain
    got, got_answer = spec.validate(text)
    assert got == value and type(got) is type(value)
    assert got_answer == answer


@pytest.mark.parametrize(
    ("target", "text", "message"),
    [
        (bool, "maybe", "expected a boolean"),
        (bool, "2", "expected a boolean"),
        (bool, "", "expected a boolean"),
        (int, "4.2", "expected an integer"),
        (int, "forty", "expected an integer"),
        (int, "True", "expected an integer"),
        (int, "1,00", "expected an integer"),
        (float, "nan", "finite"),
        (float, "inf", "finite"),
        (float, "abc", "expected a number"),
        (YesNo, "y", "one of 'yes', 'no'"),
        (YesNo, "True", "one of 'yes', 'no'"),
        (Answer, "maybe", "one of 'yes', 'no'"),
        (Answer, "Other.YES.x", "one of"),
        (OptInt, "seven", "an integer or None"),
    ],
)
def test_plain_values_refused_say_why(target: Any, text: str, message: str) -> None:
    with pytest.raises(AnswerInvalid, match="does not validate") as info:
        OutputSpec(target).validate(text)
    assert message in str(info.value)


def test_annotated_plain_types_coerce_then_check_constraints() -> None:
    positive = Annotated[int, Field(gt=0)]
    assert OutputSpec(positive).plain
    assert OutputSpec(positive).validate("1,000") == (1000, "1000")
    with pytest.raises(AnswerInvalid, match="greater than 0"):
        OutputSpec(positive).validate("-1")
    assert "an integer" in OutputSpec(positive).instructions()
    assert OutputSpec(YesNo).validate("Literal['no']") == ("no", "no")  # as DSPy reads it


def test_is_plain_and_coerce() -> None:
    for plain in (str, bool, int, float, None, Answer, YesNo, OptBool, int | str):
        assert is_plain(plain)
    for structured in (City, Point, list[int], dict[str, int], OptCity, date):
        assert not is_plain(structured)
    assert coerce("on", str) == "on"
    with pytest.raises(ValueError, match="not a plain type"):
        coerce("x", list)


def test_instructions_show_a_plain_example_or_the_schema() -> None:
    assert "FINAL(True)" in OutputSpec(bool).instructions()
    assert "'yes', 'no'" in OutputSpec(Answer).instructions()
    assert "an integer" in OutputSpec(int).instructions()
    assert "JSON Schema" not in OutputSpec(int).instructions()
    text = OutputSpec(City).instructions()
    assert "JSON Schema" in text and '"population"' in text


# -- unit: structured types and JSON Schemas stay JSON ----------------------------------


def test_structured_types_are_json_validated() -> None:
    spec = OutputSpec(City)
    value, answer = spec.validate('{"name": "Oslo", "population": 709000}')
    assert value == City(name="Oslo", population=709000)
    assert json.loads(answer) == {"name": "Oslo", "population": 709000}
    fenced = '```json\n{"name": "Oslo", "population": 1}\n```'
    assert spec.validate(fenced)[0].population == 1
    with pytest.raises(AnswerInvalid, match="not JSON"):
        spec.validate("Oslo")
    with pytest.raises(AnswerInvalid, match="does not validate"):
        spec.validate('{"name": "Oslo", "population": "many"}')
    assert OutputSpec(list[int]).validate("[1, 2]") == ([1, 2], "[1,2]")
    assert OutputSpec(list[int]).validate("(1, 2)")[0] == [1, 2]  # a Python literal
    assert OutputSpec(dict[str, int]).validate("{'a': 1}")[0] == {"a": 1}
    assert OutputSpec(Point).validate('{"x": 1, "y": 2}')[0] == Point(1, 2)
    assert OutputSpec(OptCity).validate("null") == (None, "null")
    # A type pydantic reads from a string may be given as its plain text.
    assert OutputSpec(date).validate("2024-05-01") == (date(2024, 5, 1), "2024-05-01")


@pytest.mark.parametrize(
    ("schema", "text", "value"),
    [
        ({"type": "boolean"}, "yes", True),
        ({"type": "boolean"}, "true", True),
        ({"type": "integer"}, "1,000", 1000),
        ({"type": "number"}, " 2.5 ", 2.5),
        ({"type": "string"}, "42", "42"),
        ({"type": "string"}, '"quoted"', "quoted"),
        ({"enum": ["a", "b"]}, "a", "a"),
        ({"type": ["integer", "null"]}, "null", None),
        ({"type": "object", "required": ["a"]}, '{"a": 1}', {"a": 1}),
    ],
)
def test_json_schema_targets(schema: dict[str, Any], text: str, value: Any) -> None:
    assert OutputSpec(schema).validate(text)[0] == value


def test_json_schema_refusals() -> None:
    with pytest.raises(AnswerInvalid, match="not JSON"):
        OutputSpec({"type": "object"}).validate("hello")
    with pytest.raises(AnswerInvalid, match="does not match the schema"):
        OutputSpec({"type": "object", "required": ["a"]}).validate("{}")
    with pytest.raises(AnswerInvalid, match="does not match the schema"):
        OutputSpec({"type": "boolean"}).validate("maybe")
    with pytest.raises(ConfigError, match="invalid JSON Schema"):
        OutputSpec({"type": "no-such-type"}).validate("1")


# -- real runs: FINAL("yes"), FINAL(True), FINAL_VAR of an int, for each type ----------

YES = '```repl\nFINAL("yes")\n```'
TRUE = "```repl\nFINAL(True)\n```"
VAR = "```repl\nn = 6 * 7\nFINAL_VAR('n')\n```"
INVALID = object()
#: What the model answers after a refusal, and the value that gives.
FALLBACK: dict[str, tuple[str, Any]] = {
    "bool": ("```repl\nFINAL(False)\n```", False),
    "int": ("```repl\nFINAL(7)\n```", 7),
    "float": ("```repl\nFINAL('2.5')\n```", 2.5),
    "literal": ('```repl\nFINAL("no")\n```', "no"),
    "enum": ('```repl\nFINAL("NO")\n```', Answer.NO),
    "optional": ("```repl\nFINAL(None)\n```", None),
}
TYPES: dict[str, Any] = {
    "str": str,
    "bool": bool,
    "int": int,
    "float": float,
    "literal": YesNo,
    "enum": Answer,
    "optional": OptInt,
}
CASES = [
    ("str", YES, "yes"),
    ("str", TRUE, "True"),
    ("str", VAR, "42"),
    ("bool", YES, True),
    ("bool", TRUE, True),
    ("bool", VAR, INVALID),
    ("int", YES, INVALID),
    ("int", TRUE, INVALID),
    ("int", VAR, 42),
    ("float", YES, INVALID),
    ("float", TRUE, INVALID),
    ("float", VAR, 42.0),
    ("literal", YES, "yes"),
    ("literal", TRUE, INVALID),
    ("literal", VAR, INVALID),
    ("enum", YES, Answer.YES),
    ("enum", TRUE, INVALID),
    ("enum", VAR, INVALID),
    ("optional", YES, INVALID),
    ("optional", VAR, 42),
]


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize(("kind", "turn", "expected"), CASES)
def test_run_ends_with_a_typed_answer(sandbox: str, kind: str, turn: str, expected: Any) -> None:
    fallback, fallback_value = FALLBACK.get(kind, ("FINAL('unused')", None))
    model = ScriptedModel(router([turn, fallback]))
    result = RLM(model, sandbox=sandbox).completion("Answer.", "ctx", output_type=TYPES[kind])
    assert result.error is None, result.error
    want = fallback_value if expected is INVALID else expected
    assert result.output == want and type(result.output) is type(want)
    assert result.answer == OutputSpec(TYPES[kind]).validate(result.answer)[1]
    roots = [c for c in model.calls if c.messages[0]["role"] == "system"]
    if expected is INVALID:
        assert len(roots) == 2
        assert "does not validate" in str(roots[1].messages[-1]["content"])
    else:
        assert len(roots) == 1


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_run_answers_in_prose_and_strings_keep_their_text(sandbox: str) -> None:
    model = ScriptedModel(router(["The answer is clear.\n\nFINAL(Yes)"]))
    result = RLM(model, sandbox=sandbox).completion("Is it?", "ctx", output_type=bool)
    assert (result.output, result.answer) == (True, "true")
    model = ScriptedModel(router(['```repl\nFINAL("Paris")\n```']))
    result = RLM(model, sandbox=sandbox).completion("Where?", "ctx", output_type=str)
    assert (result.output, result.answer) == ("Paris", "Paris")
    system = str(model.calls[0].messages[0]["content"]) + str(model.calls[0].messages[1])
    assert "JSON Schema" not in system
