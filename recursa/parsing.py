"""Reading a model's reply: its code cells and a plain-text FINAL(...)/FINAL_VAR(...).

Code comes in fenced blocks tagged ``repl`` or ``python`` (``py`` too); several
blocks run in order. An unterminated fence at the end of a reply (a model cut
off by its token limit) still counts as code up to the end. A fence closes only with a
fence of the same character at least as long (as CommonMark says). A fence of any other
tag (or none) is quoted text, unless its body holds a code-tagged fenced block: then it
is a decorative wrapper (a ``markdown`` fence, a bare one, or ``~~~`` around a
``python`` block) and the code blocks inside it run; a line that could close both an
inner block and its wrapper closes the inner one. The wrapper's own text stays quoted.

``FINAL(...)`` written outside any block also ends the run, but only on its own line: at
the start of a line (optionally in ``**bold**``), not quoted (after ``>``, in inline
code, in quotation marks, in a fenced block with other text, in a wrapper's text), not
mid-line, and with nothing but punctuation after its closing parenthesis. A model that
quotes a line of the context (which an attacker may have written) never ends the run
with it.
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
#: How deep wrappers nest before a fence is read as plain quoted text again.
_MAX_WRAPPERS = 8


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
        block = _block(text, opening, None)
        cells.extend(block.cells)
        if block.quoted is not None:
            prose.append(block.quoted)
            if block.plain and _only_final(block.quoted):  # a ```text block of just FINAL(...)
                own.append(block.quoted)
        pos = block.after
        if pos >= len(text):
            break
    return cells, prose, own


@dataclass(frozen=True)
class _Block:
    cells: list[str]  # the code it runs
    quoted: str | None  # its text when it is not a code block (less any code inside)
    plain: bool  # a quotation with no code blocks inside it
    after: int  # where the text after its closing fence starts (len(text): no fence)
    closed_outer: bool  # its last line closed the wrapper around it as well


def _closer(fence: str) -> re.Pattern[str]:
    """The line that closes ``fence``: the same character, at least as many, no info."""
    return re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)


def _block(
    text: str, opening: re.Match[str], outer_close: re.Match[str] | None, depth: int = 0
) -> _Block:
    """The fenced block that ``opening`` starts. Inside a wrapper, ``outer_close`` is the
    next line that would close the wrapper (a block still open there ends with it)."""
    fence, tag = opening.group(1), opening.group(2).lower()
    body_start = opening.end() + 1
    closer = _closer(fence)
    end = closer.search(text, body_start)
    closed_outer = outer_close is not None and (end is None or outer_close.start() < end.start())
    if closed_outer:
        end = outer_close  # the wrapper ends first: so does this block
    stop, after = (end.start(), end.end()) if end else (len(text), len(text))
    body = text[body_start:stop]
    if tag in CODE_TAGS:
        cells = [body.rstrip() + "\n"] if body.strip() else []
        return _Block(cells, None, False, after, closed_outer)
    if depth >= _MAX_WRAPPERS or not any(
        m.group(2).lower() in CODE_TAGS for m in _FENCE.finditer(text, body_start, stop)
    ):
        return _Block([], body, True, after, closed_outer)
    # a wrapper: the blocks inside it are parsed; a line that closes both an inner block
    # and the wrapper closes the inner one (```\n```repl\n...\n```\n```)
    cells = []
    quoted: list[str] = []
    pos = body_start
    own_close = closer.search(text, pos)
    while True:
        line = _FENCE.search(text, pos)
        if line is None:
            quoted.append(text[pos:])
            return _Block(cells, "".join(quoted), False, len(text), False)
        quoted.append(text[pos : line.start()])
        if closer.fullmatch(line.group(0)):
            return _Block(cells, "".join(quoted), False, line.end(), False)
        if outer_close is not None and line.start() == outer_close.start():
            return _Block(cells, "".join(quoted), False, line.end(), True)
        if own_close is not None and own_close.start() < line.end():
            own_close = closer.search(text, line.end())
        inner = _block(text, line, own_close, depth + 1)
        cells.extend(inner.cells)
        if inner.quoted is not None:
            quoted.append(inner.quoted)
        if inner.closed_outer or inner.after >= len(text):
            return _Block(cells, "".join(quoted), False, inner.after, False)
        pos = inner.after


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
