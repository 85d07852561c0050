"""Typed answers: the final value must be of a Python type or match a JSON Schema.

A final answer reaches the host as text (``FINAL(True)`` is ``"True"``,
``FINAL_VAR`` of an int is ``"42"``). How that text becomes the typed value:

* **Plain types** (``str``, ``bool``, ``int``, ``float``, ``None``, an ``Enum``, a
  ``Literal[...]``, and ``Optional``/unions of them) are coerced from what models
  write, as DSPy's ``parse_value`` does: ``str`` takes the text as it is; booleans
  read ``true/false/yes/no/1/0`` in any case; numbers read numeric text (``" 3.5 "``,
  ``"1,000"``; an ``int`` takes ``"42.0"`` but not ``"4.2"``; non-finite numbers are
  refused); literals and enums match by value (an enum by name too, and
  ``Color.RED``), exactly first, then ignoring case when that is unambiguous. One
  pair of surrounding quotes and a trailing full stop are ignored (``'"Yes."'``).
  A union tries its members in order, ``None`` first and ``str`` last.
* **Everything else** (pydantic models, dataclasses, ``dict``/``list`` types, JSON
  Schema dicts) is parsed as JSON (inside a Markdown code fence too; a Python literal
  such as ``{'a': (1, 2)}`` is accepted as well) and validated; a type that pydantic
  reads from a string (``datetime.date``, ``UUID``, ``Decimal``) may also be given
  as its plain text. A JSON Schema for a scalar (``{"type": "boolean"}``,
  ``{"enum": [...]}``) coerces like the plain types.

When the value is refused, the model is shown why and tries again (a bounded
number of times). ``result.output`` holds the typed value and ``result.answer`` its
text: a string as it is (an enum's or literal's string value too), anything else as
JSON (``true``, ``42``, ``{"name":"Oslo"}``).
"""

from __future__ import annotations

import ast
import contextlib
import enum
import json
import math
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import TypeAdapter, ValidationError

from .errors import ConfigError


class AnswerInvalid(Exception):
    """The final answer does not validate; the message is shown to the model."""


_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_NONE = frozenset({"none", "null"})
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_FENCE = re.compile(r"\A```[\w+-]*[ \t]*\n(.*?)\n?```\Z", re.DOTALL)
_LITERAL_WRAPPER = re.compile(r"(?:Literal|str)\[(.*)\]", re.DOTALL)
_NoneType = type(None)


@dataclass(frozen=True)
class OutputSpec:
    """What a final answer must be: a Python type (pydantic) or a JSON Schema dict."""

    target: Any

    @property
    def schema(self) -> dict[str, Any]:
        if isinstance(self.target, dict):
            return self.target
        schema: dict[str, Any] = TypeAdapter(self.target).json_schema()
        return schema

    @property
    def plain(self) -> bool:
        """True for a target coerced from plain text (see the module docstring)."""
        return not isinstance(self.target, dict) and is_plain(self.target)

    def instructions(self) -> str:
        if self.plain:
            return (
                f"The final answer must be {describe(self.target)}: pass the plain value "
                f"to FINAL(...), e.g. FINAL({example(self.target)})."
            )
        return (
            "The final answer must be JSON matching this JSON Schema; pass a dict/list to "
            f"FINAL(...) or a JSON string:\n{json.dumps(self.schema, indent=1)}"
        )

    def validate(self, answer: str) -> tuple[Any, str]:
        """Return (typed value, its text) or raise :class:`AnswerInvalid`."""
        if isinstance(self.target, dict):
            data = _validate_schema(answer, self.target)
            return data, data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        if self.plain:
            try:
                value = coerce(answer, self.target)
            except ValueError as exc:
                raise AnswerInvalid(f"the final answer does not validate: {exc}") from None
            try:  # constraints of Annotated[...] (Field(gt=0), ...)
                value = TypeAdapter(self.target).validate_python(value)
            except ValidationError as exc:
                raise AnswerInvalid(f"the final answer does not validate:\n{exc}") from None
        else:
            value = _validate_structured(answer, self.target)
        return value, _text(value, self.target)


# -- plain types ---------------------------------------------------------------------------


def is_plain(tp: Any) -> bool:
    """``str``/``bool``/``int``/``float``/``None``, an Enum, a Literal, or a union of them."""
    if tp in (str, bool, int, float, None, _NoneType):
        return True
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return True
    origin = get_origin(tp)
    if origin is Literal:
        return True
    if origin is Annotated:
        return is_plain(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return all(is_plain(arm) for arm in get_args(tp))
    return False


def coerce(text: str, tp: Any) -> Any:
    """``text`` (what a model wrote) as a value of the plain type ``tp``; ``ValueError``
    says why it is not one."""
    if tp is str:
        return text
    if tp is None or tp is _NoneType:
        if _clean(text).lower() in _NONE | {""}:
            return None
        raise ValueError(f"expected None, got {_show(text)}")
    if tp is bool:
        return _bool(text)
    if tp is int:
        return _int(text)
    if tp is float:
        return _float(text)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(text, tp)
    origin = get_origin(tp)
    if origin is Annotated:
        return coerce(text, get_args(tp)[0])
    if origin is Literal:
        return _literal(text, get_args(tp))
    if origin in (Union, types.UnionType):
        arms = sorted(get_args(tp), key=lambda a: 0 if a is _NoneType else 2 if a is str else 1)
        for arm in arms:
            try:
                return coerce(text, arm)
            except ValueError:
                continue
        raise ValueError(f"expected {describe(tp)}, got {_show(text)}")
    raise ValueError(f"{tp!r} is not a plain type")


def _clean(text: str) -> str:
    """Strip spaces, one pair of surrounding quotes or backticks, and a trailing full stop."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":
        s = s[1:-1].strip()
    if len(s) > 1 and s.endswith(".") and not s[-2].isdigit():
        s = s[:-1].rstrip()
    return s


def _show(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _bool(text: str) -> bool:
    word = _clean(text).lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false, yes/no, 1/0), got {_show(text)}")


def _number_text(text: str) -> str:
    s = _clean(text)
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s


def _float(text: str) -> float:
    s = _number_text(text)
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"expected a number, got {_show(text)}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {_show(text)}")
    return value


def _int(text: str) -> int:
    s = _number_text(text)
    try:
        return int(s)
    except ValueError:
        pass
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"expected an integer, got {_show(text)}") from None
    if not value.is_integer():
        raise ValueError(f"expected an integer, got {_show(text)}")
    return int(value)


def _matches(text: str, value: Any) -> bool:
    """Does ``text`` spell ``value`` (a literal's or an enum member's value) exactly?"""
    if isinstance(value, enum.Enum):
        return _matches(text, value.value) or _clean(text) in (value.name, _qualified(value))
    if isinstance(value, str):
        return text == value or _clean(text) == value
    converters: dict[type, Callable[[str], Any]] = {bool: _bool, int: _int, float: _float}
    convert = converters.get(type(value))
    if convert is None:
        return value is None and _clean(text).lower() in _NONE
    try:
        converted = convert(text)
    except ValueError:
        return False
    return converted is value if type(value) is bool else converted == value


def _qualified(member: enum.Enum) -> str:
    return f"{type(member).__name__}.{member.name}"


def _pick(text: str, candidates: list[tuple[Any, list[str]]], what: str) -> Any:
    """The candidate ``text`` names exactly, else the one it names ignoring case."""
    for value, _ in candidates:
        if _matches(text, value):
            return value
    folded = _clean(text).casefold()
    found = [value for value, names in candidates if folded in {n.casefold() for n in names}]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"expected {what}, got {_show(text)}")


def _literal(text: str, allowed: tuple[Any, ...]) -> Any:
    candidates = [(a, _names(a)) for a in allowed]
    what = describe(Literal[allowed])
    try:
        return _pick(text, candidates, what)
    except ValueError:
        wrapped = _LITERAL_WRAPPER.fullmatch(_clean(text))  # Literal['yes'], as DSPy reads
        if wrapped is None:
            raise
        return _pick(wrapped.group(1), candidates, what)


def _enum(text: str, cls: type[enum.Enum]) -> Any:
    candidates = [(m, _names(m)) for m in cls]
    try:
        return _pick(text, candidates, describe(cls))
    except ValueError:
        head, dot, name = _clean(text).rpartition(".")
        if not (dot and head.isidentifier() and name.isidentifier()):
            raise
        return _pick(name, candidates, describe(cls))  # SomeEnum.NAME


def _names(value: Any) -> list[str]:
    if isinstance(value, enum.Enum):
        return [str(value.value), value.name, _qualified(value)]
    return [str(value)]


def describe(tp: Any) -> str:
    """A plain type in words, for the prompt and error messages."""
    if tp is str:
        return "text"
    if tp is None or tp is _NoneType:
        return "None"
    if tp is bool:
        return "a boolean (True or False)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    origin = get_origin(tp)
    if origin is Annotated:
        return describe(get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(
            repr(a.value if isinstance(a, enum.Enum) else a) for a in get_args(tp)
        )
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(tp))
    return repr(tp)


def example(tp: Any) -> str:
    """An example FINAL(...) argument for a plain type."""
    if tp is bool:
        return "True"
    if tp is int:
        return "42"
    if tp is float:
        return "3.5"
    if tp is None or tp is _NoneType:
        return "None"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return repr(next(iter(tp)).value)
    origin = get_origin(tp)
    if origin is Annotated:
        return example(get_args(tp)[0])
    if origin is Literal:
        first = get_args(tp)[0]
        return repr(first.value if isinstance(first, enum.Enum) else first)
    if origin in (Union, types.UnionType):
        arms = [a for a in get_args(tp) if a is not _NoneType]
        return example(arms[0]) if arms else "None"
    return "'the answer'"


def _text(value: Any, tp: Any) -> str:
    """The answer's text: a string as it is, anything else as JSON."""
    adapter = TypeAdapter(tp)
    try:
        dumped = adapter.dump_python(value, mode="json")
    except Exception:  # a value pydantic cannot dump: its str
        return str(value)
    if isinstance(dumped, str):
        return dumped
    return adapter.dump_json(value).decode()


# -- structured types and JSON Schemas ------------------------------------------------------


def _parsed(answer: str) -> tuple[list[Any], str | None]:
    """The values ``answer`` may stand for (JSON, then a Python literal), and the JSON
    error when it is not JSON."""
    body = answer.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return [json.loads(body)], None
    except json.JSONDecodeError as exc:
        error = str(exc)
    try:
        return [ast.literal_eval(body)], None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return [], error


def _validate_structured(answer: str, target: Any) -> Any:
    adapter = TypeAdapter(target)
    values, json_error = _parsed(answer)
    first: ValidationError | None = None
    for candidate in [*values, answer.strip()]:
        try:
            return adapter.validate_python(candidate)
        except ValidationError as exc:
            first = first or exc
    if json_error is not None and _wants_structure(adapter):
        raise AnswerInvalid(f"the final answer is not JSON: {json_error}")
    raise AnswerInvalid(f"the final answer does not validate:\n{first}")


def _wants_structure(adapter: TypeAdapter[Any]) -> bool:
    try:
        schema = adapter.json_schema()
    except Exception:
        return True
    kind = schema.get("type")
    return kind in ("object", "array") or "$ref" in schema or "properties" in schema


def _validate_schema(answer: str, schema: dict[str, Any]) -> Any:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"invalid JSON Schema: {exc.message}") from None
    values, json_error = _parsed(answer)
    candidates = [*values, *_schema_scalars(answer, schema)]
    first: jsonschema.ValidationError | None = None
    for candidate in candidates:
        try:
            jsonschema.validate(candidate, schema)
        except jsonschema.ValidationError as exc:
            first = first or exc
            continue
        return candidate
    if first is None:
        kinds = schema.get("type")
        scalar = {"boolean", "integer", "number", "null"} & set(
            kinds if isinstance(kinds, list) else [kinds]
        )
        if scalar or "enum" in schema or "const" in schema:
            wanted = ", ".join(sorted(scalar)) or "one of " + json.dumps(
                schema.get("enum", [schema.get("const")])
            )
            raise AnswerInvalid(
                f"the final answer does not match the schema: expected {wanted}, "
                f"got {_show(answer)}"
            )
        raise AnswerInvalid(f"the final answer is not JSON: {json_error}")
    raise AnswerInvalid(f"the final answer does not match the schema: {first.message}")


def _schema_scalars(answer: str, schema: dict[str, Any]) -> list[Any]:
    """Plain readings of ``answer`` for a schema that allows scalars."""
    kinds = schema.get("type")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds} if kinds else set()
    out: list[Any] = []
    for enum_value in schema.get("enum", []) + ([schema["const"]] if "const" in schema else []):
        if _matches(answer, enum_value):
            out.append(enum_value)
    readers: list[tuple[str, Callable[[str], Any]]] = [
        ("null", lambda t: coerce(t, None)),
        ("boolean", _bool),
        ("integer", _int),
        ("number", _float),
    ]
    for kind, reader in readers:
        if kind in kinds:
            with contextlib.suppress(ValueError):
                out.append(reader(answer))
    if "string" in kinds:
        out.append(answer)
    return out
