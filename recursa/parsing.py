"""Reading a model's reply: its code cells and a plain-text FINAL(...)/FINAL_VAR(...).

Code comes in fenced blocks tagged ``repl`` or ``python`` (``py`` too); several
blocks run in order. An unterminated fence at the end of a reply (a model cut
off by its token limit) still counts as code up to the end. ``FINAL(...)``
written outside any block also ends the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CODE_TAGS = frozenset({"repl", "python", "py", "python3"})
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*$", re.MULTILINE)
_FINAL = re.compile(r"^[ \t>*_-]*(FINAL_VAR|FINAL)\(", re.MULTILINE)


@dataclass(frozen=True)
class ParsedReply:
    """What a reply asks for: cells to run, and/or a final answer given as text."""

    cells: list[str]
    prose: str  # the reply with every code block removed
    final: FinalSpec | None


@dataclass(frozen=True)
class FinalSpec:
    """``FINAL(text)`` (kind "text") or ``FINAL_VAR(name)`` (kind "var") outside code."""

    kind: Literal["text", "var"]
    value: str


def parse_reply(text: str) -> ParsedReply:
    cells, prose_parts = _split_blocks(text)
    prose = "\n".join(prose_parts)
    return ParsedReply(cells, prose, find_final(prose))


def _split_blocks(text: str) -> tuple[list[str], list[str]]:
    cells: list[str] = []
    prose: list[str] = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            prose.append(text[pos:])
            break
        prose.append(text[pos : opening.start()])
        fence, tag = opening.group(1), opening.group(2).lower()
        body_start = opening.end() + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = closing.search(text, body_start)
        body = text[body_start : end.start() if end else len(text)]
        if tag in CODE_TAGS:
            if body.strip():
                cells.append(body.rstrip() + "\n")
        else:
            prose.append(body)  # a ```text block may hold FINAL(...) prose
        if end is None:
            break
        pos = end.end()
    return cells, prose


def find_final(prose: str) -> FinalSpec | None:
    """The last ``FINAL(...)``/``FINAL_VAR(...)`` at the start of a line of prose."""
    matches = list(_FINAL.finditer(prose))
    if not matches:
        return None
    match = matches[-1]
    inner = _balanced(prose, match.end())
    if inner is None:
        return None
    kind: Literal["text", "var"] = "var" if match.group(1) == "FINAL_VAR" else "text"
    return FinalSpec(kind, _unquote(inner.strip()))


def _balanced(text: str, start: int) -> str | None:
    """Text from ``start`` up to the parenthesis that closes the one just before it.

    Unbalanced text (a stray ``(`` inside the answer) falls back to the last ``)``.
    """
    depth = 1
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
    last = text.rfind(")")
    return text[start:last] if last >= start else None


def _unquote(value: str) -> str:
    for quote in ('"""', "'''", '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return value[len(quote) : -len(quote)]
    return value
