"""JSON files as lists of records: JSON Lines (one value a line) or one JSON document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .kinds import COMPRESSED_SUFFIXES
from .text import Unreadable, iter_text


def read_records(path: Path, *, encoding: str | None = None) -> list[Any] | dict[str, Any]:
    """The records of a JSON file, read through :func:`iter_text` (so compressed files
    and byte-order marks work as for text).

    ``.jsonl``/``.ndjson``: the list of JSON values, one per non-empty line. ``.json``:
    the parsed value, which must be an array or an object (a context is a list or a
    dict). Bad JSON is an :class:`Unreadable` naming the line.
    """
    blocks = iter_text(path, encoding=encoding)
    if _is_json_lines(path):
        return [_parse_line(line, number) for number, line in _numbered_lines(blocks)]
    try:
        value = json.loads("".join(blocks))
    except json.JSONDecodeError as exc:
        raise Unreadable(
            f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(value, list | dict):
        raise Unreadable(f"a .json file must hold an array or an object, not {_json_type(value)}")
    return value


def _is_json_lines(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    return bool(suffixes) and suffixes[-1] in {".jsonl", ".ndjson"}


def _numbered_lines(blocks: Iterator[str]) -> Iterator[tuple[int, str]]:
    """(line number from 1, line) for the non-blank lines, joined across blocks. A
    line longer than a block is gathered in parts, so it is copied once."""
    number = 0
    tail: list[str] = []
    for block in blocks:
        if "\n" not in block:
            tail.append(block)
            continue
        lines = block.split("\n")
        lines[0] = "".join([*tail, lines[0]])
        tail = [lines.pop()]
        for line in lines:
            number += 1
            if line.strip():
                yield number, line
    if (last := "".join(tail)).strip():
        yield number + 1, last


def _parse_line(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"line {number}: not valid JSON ({exc.msg}, column {exc.colno})") from None


def _json_type(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "null" if value is None else "a number"
