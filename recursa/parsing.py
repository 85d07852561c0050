"""Reading a model's reply: its code cells and a plain-text FINAL(...)/FINAL_VAR(...).

Code comes in fenced blocks tagged ``repl`` or ``python`` (``py`` too); several
blocks run in order. An unterminated fence at the end of a reply (a model cut
off by its token limit) still counts as code up to the end. ``FINAL(...)``
written outside any block also ends the run, but only on its own line: at the start
of a line (optionally in ``**bold**``), not quoted (after ``>``, in inline code, in
quotation marks, in a fenced block with other text), not mid-line, and with nothing but
punctuation after its closing parenthesis. A model that quotes a line of the context
(which an attacker may have written) never ends the run with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CODE_TAGS = frozenset({"repl", "python", "py", "python3"})
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*$", re.MULTILINE)
# at most 3 spaces (4 make a markdown code block, a quote), optional bold/italic markers
_FINAL = re.compile(r"^ {0,3}(?:\*\*|__|\*|_)?(FINAL_VAR|FINAL)\(", re.MULTILINE)
# what may follow the closing parenthesis on its line: closing markers, punctuation
_FINAL_TAIL = re.compile(r"[ \t*_.!]*(?:\n|\Z)")


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
    cells, prose_parts, own_parts = _split_blocks(text)
    prose = "\n".join(prose_parts)
    return ParsedReply(cells, prose, find_final("\n".join(own_parts)))


def _split_blocks(text: str) -> tuple[list[str], list[str], list[str]]:
    """Code cells, the prose (every non-code block's text included), and the text the
    model wrote itself: the prose less the non-code fenced blocks (quotations), except a
    block that holds nothing but one ``FINAL(...)``."""
    cells: list[str] = []
    prose: list[str] = []
    own: list[str] = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            prose.append(text[pos:])
            own.append(text[pos:])
            break
        prose.append(text[pos : opening.start()])
        own.append(text[pos : opening.start()])
        fence, tag = opening.group(1), opening.group(2).lower()
        body_start = opening.end() + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = closing.search(text, body_start)
        body = text[body_start : end.start() if end else len(text)]
        if tag in CODE_TAGS:
            if body.strip():
                cells.append(body.rstrip() + "\n")
        else:
            prose.append(body)
            if _only_final(body):  # a ```text block holding just FINAL(...): the model's own
                own.append(body)
        if end is None:
            break
        pos = end.end()
    return cells, prose, own


def _only_final(body: str) -> bool:
    """True for a block that is one ``FINAL(...)`` call and nothing else."""
    stripped = body.strip()
    match = _FINAL.match(stripped)
    end = None if match is None else _balanced(stripped, match.end())
    return end is not None and re.fullmatch(r"[ \t*_.!]*", stripped[end + 1 :]) is not None


def find_final(prose: str) -> FinalSpec | None:
    """The last ``FINAL(...)``/``FINAL_VAR(...)`` of prose that stands on its own line:
    it starts a line (not quoted, not mid-line) and only punctuation follows its ``)``."""
    for match in reversed(list(_FINAL.finditer(prose))):
        end = _balanced(prose, match.end())
        if end is None or not _FINAL_TAIL.match(prose, end + 1):
            continue
        kind: Literal["text", "var"] = "var" if match.group(1) == "FINAL_VAR" else "text"
        return FinalSpec(kind, _unquote(prose[match.end() : end].strip()))
    return None


def _balanced(text: str, start: int) -> int | None:
    """The index of the parenthesis that closes the one just before ``start``.

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
                return i
    last = text.rfind(")")
    return last if last >= start else None


def _unquote(value: str) -> str:
    for quote in ('"""', "'''", '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return value[len(quote) : -len(quote)]
    return value
