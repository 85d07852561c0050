"""Checking the citations a model attached to its answer against the context, on the host.

Model code cites with ``cite(...)`` or ``FINAL(answer, cite=[...])`` (see
:mod:`recursa.repl.runtime`); each citation reaches the host as an untrusted
:class:`~recursa.repl.protocol.CitationRef`, and :func:`verify` turns it into a
:class:`~recursa.result.Citation` by reading the context itself. Nothing the REPL
reports is believed: a quote is searched for, offsets are read back, and a citation
is ``verified`` only when its text is found in the context; its ``quote`` is then the
context's own text at ``start:end``.

**Quotes.** A quote is first looked for exactly; its **first** exact occurrence wins
(in a list or dict context: the first item, in order, that holds it). Failing that, it
is looked for *normalised*, and the first normalised occurrence wins. Normalising maps
text to a comparable form, and the offsets found are mapped back to the original text:

- each character, with the combining marks that follow it (non-zero combining class),
  is Unicode NFKC-normalised, then case-folded (``str.casefold``): ``"ﬁ"`` matches
  ``"fi"``, ``"ＡＢＣ"`` ``"abc"``, ``"e\\u0301"`` ``"é"``, ``"STRASSE"`` ``"straße"``;
- each run of whitespace (``str.isspace``: spaces, tabs, newlines, non-breaking
  spaces) becomes one space, so a quote may join lines or chunks a model split;
- the quote's leading and trailing whitespace is ignored.

A normalised match covers whole original characters: a quote that starts inside a
ligature starts at the ligature.

**Spans.** ``(start, end)`` are character offsets into the text (``(item, start,
end)`` into an item of a list or dict). They are read back from the context:
``0 <= start < end <= len(text)`` and at most :data:`MAX_SPAN_CHARS` long, or the
citation is unverified. A span sent with a quote must hold that quote (normalised).

**Items.** In a list context an item is its index (negative counts from the end),
in a dict context its key, in a files context (a folder) a file's name; an item that
is not a string is cited in its JSON text (as the model is told its length); an image
item cannot be cited. A file is decoded from the pack only while it is searched, one at
a time; a verified citation in a file with pages (a PDF in a folder, or given alone)
gets its 1-based ``page``.

**Large contexts.** A file context is never read into memory here: it is decoded in
blocks of :data:`BLOCK_CHARS` characters, each searched with the end of the one before
it (exact matches of any quote are never missed at a block boundary; a normalised
match whose original text is more than ``4 x len(quote) + 1,024`` characters long, a
quote across a huge run of whitespace, can be). The normalised search of text that is
not ASCII is done in Python, up to :data:`MAX_NORMALISED_CHARS` characters for all
the citations of one answer together (a :class:`SearchBudget`, so model code cannot make
the host spend hours); past that a citation is unverified and says so (quote such text
exactly). ASCII text is searched at C speed, normalised or not. Each citation of a file
context reads the file at most three times (exact, normalised, the span read back).

**In place.** A verified citation carries the context's text around it, up to
:data:`WINDOW_CHARS` characters ``before`` and ``after`` (read with the span, at no
extra pass), so the viewer can show the quote highlighted where it stands with only
the trace at hand.
"""

from __future__ import annotations

import bisect
import codecs
import dataclasses
import json
import re
import threading
import unicodedata
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .context import Context
from .repl.protocol import MAX_QUOTE_CHARS, CitationRef
from .repl.runtime import Image
from .result import Citation

#: The longest span a citation may cite (and the longest quote).
MAX_SPAN_CHARS = MAX_QUOTE_CHARS
#: Characters of a file context decoded and searched at a time.
BLOCK_CHARS = 1 << 20
#: Characters of non-ASCII text the normalised search covers per citation.
MAX_NORMALISED_CHARS = 64 << 20
#: Characters of the context kept on each side of a verified quote (``before``/``after``).
WINDOW_CHARS = 160

_TOKEN = re.compile(r"(\s+)|([!-~]+)|(.)", re.S)


# -- normalisation ---------------------------------------------------------------------
def normalise(text: str) -> tuple[str, array[int], array[int]]:
    """``text`` normalised (see the module's doc) and, for each of its characters, the
    ``[start, end)`` of the original characters it came from."""
    out: list[str] = []
    starts: array[int] = array("q")
    ends: array[int] = array("q")
    space = False
    pos, n = 0, len(text)
    match = _TOKEN.match
    combining = unicodedata.combining
    while pos < n:
        m = match(text, pos)
        assert m is not None
        s, e = m.span()
        if m.group(1) is not None:  # a run of whitespace: one space
            if space:
                ends[-1] = e
            else:
                out.append(" ")
                starts.append(s)
                ends.append(e)
                space = True
            pos = e
            continue
        if m.group(2) is not None:  # printable ASCII: lower-cased, one to one
            if e < n and combining(text[e]):
                e -= 1  # the last letter goes with the marks that follow it
            if e > s:
                out.append(text[s:e].lower())
                starts.extend(range(s, e))
                ends.extend(range(s + 1, e + 1))
                space = False
                pos = e
                continue
        e = s + 1  # one character and its combining marks
        while e < n and combining(text[e]):
            e += 1
        for ch in unicodedata.normalize("NFKC", text[s:e]).casefold():
            if ch.isspace():
                if space:
                    ends[-1] = e
                    continue
                space = True
                ch = " "
            else:
                space = False
            out.append(ch)
            starts.append(s)
            ends.append(e)
        pos = e
    return "".join(out), starts, ends


def normalised_quote(quote: str) -> str:
    """A quote as it is searched for when no exact match is found."""
    return normalise(quote)[0].strip(" ")


def _ascii_pattern(needle: str) -> re.Pattern[str]:
    """What ``needle`` (normalised, ASCII) matches in ASCII text: its words, any case,
    across any run of whitespace. On ASCII text this is exactly the normalised match."""
    return re.compile(r"\s+".join(map(re.escape, needle.split(" "))), re.IGNORECASE)


class SearchBudget:
    """The characters of non-ASCII text the normalised search may still cover (shared by
    the citations of one answer)."""

    def __init__(self, chars: int = MAX_NORMALISED_CHARS) -> None:
        self.chars = chars
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if n > self.chars:
                return False
            self.chars -= n
            return True


class _Search:
    """Finds one quote in blocks of text: exactly, else normalised."""

    def __init__(self, quote: str, budget: SearchBudget) -> None:
        self.quote = quote
        self.needle = normalised_quote(quote)
        self.pattern = _ascii_pattern(self.needle) if self.needle.isascii() else None
        self.budget = budget
        self.gave_up = False

    def exact(self, text: str) -> tuple[int, int] | None:
        i = text.find(self.quote)
        return None if i < 0 else (i, i + len(self.quote))

    def normalised(self, text: str) -> tuple[int, int] | None:
        if not self.needle:
            return None
        if text.isascii():
            if self.pattern is None:
                return None  # a non-ASCII needle is never in normalised ASCII text
            m = self.pattern.search(text)
            return None if m is None else m.span()
        if not self.budget.take(len(text)):
            self.gave_up = True
            return None
        norm, starts, ends = normalise(text)
        i = norm.find(self.needle)
        if i < 0:
            return None
        return starts[i], ends[i + len(self.needle) - 1]


# -- where text comes from ---------------------------------------------------------------
def _file_blocks(path: Path, block_chars: int = BLOCK_CHARS) -> Iterator[tuple[int, str]]:
    """``(offset, text)`` blocks of a UTF-8 file, offsets in characters (as the REPL's
    ``context`` counts them: the raw decoded text, newlines untranslated)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    offset = 0
    with path.open("rb") as fh:
        while data := fh.read(block_chars):
            text = decoder.decode(data)
            if text:
                yield offset, text
                offset += len(text)
        rest = decoder.decode(b"", final=True)
        if rest:
            yield offset, rest


def _str_blocks(text: str, block_chars: int = BLOCK_CHARS) -> Iterator[tuple[int, str]]:
    for i in range(0, len(text), block_chars):
        yield i, text[i : i + block_chars]


class _Text:
    """One citable text: a str, a file read in blocks, or a pack's file decoded each time
    it is read (``load``), so searching a folder holds one file's text at a time."""

    def __init__(
        self,
        text: str | None = None,
        path: Path | None = None,
        load: Callable[[], str] | None = None,
    ) -> None:
        self.text, self.path, self.load = text, path, load

    def _whole(self) -> str | None:
        return self.text if self.text is not None or self.load is None else self.load()

    def blocks(self, block_chars: int) -> Iterator[tuple[int, str]]:
        if (text := self._whole()) is not None:
            return _str_blocks(text, block_chars)
        assert self.path is not None
        return _file_blocks(self.path, block_chars)

    def exact(self, search: _Search, block_chars: int) -> tuple[int, int] | None:
        if (text := self._whole()) is not None:  # in memory: one search at C speed
            return search.exact(text)
        return self._scan(search.exact, len(search.quote) - 1, block_chars)

    def normalised(self, search: _Search, block_chars: int) -> tuple[int, int] | None:
        overlap = 4 * len(search.quote) + 1024
        return self._scan(search.normalised, overlap, block_chars)

    def _scan(self, find: Any, overlap: int, block_chars: int) -> tuple[int, int] | None:
        """The first match of ``find`` over the blocks, each searched with the last
        ``overlap`` characters of the text before it."""
        tail, tail_at = "", 0
        for offset, block in self.blocks(block_chars):
            window = tail + block
            found = find(window)
            if found is not None:
                return tail_at + found[0], tail_at + found[1]
            keep = min(len(window), max(0, overlap))
            tail, tail_at = window[len(window) - keep :], offset + len(block) - keep
        return None

    def window(self, start: int, end: int, block_chars: int) -> str:
        """``text[start:end]``, shorter where the text ends first."""
        if (text := self._whole()) is not None:
            return text[start:end]
        parts: list[str] = []
        for offset, block in self.blocks(block_chars):
            if offset + len(block) <= start:
                continue
            parts.append(block[max(0, start - offset) : end - offset])
            if offset + len(block) >= end:
                break
        return "".join(parts)

    def located(
        self, source: str, item: Any, start: int, end: int, block_chars: int
    ) -> Citation | None:
        """The verified citation of ``text[start:end]`` with the text around it, or None
        when the text is shorter than ``end``."""
        lo = max(0, start - WINDOW_CHARS)
        region = self.window(lo, end + WINDOW_CHARS, block_chars)
        if len(region) < end - lo:
            return None
        at, to = start - lo, end - lo
        before, quote, after = region[:at], region[at:to], region[to:]
        return Citation(quote, source, start, end, True, item=item, before=before, after=after)


def _item_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Image):
        return None
    return json.dumps(value, ensure_ascii=False)


# -- verifying -------------------------------------------------------------------------
def verify(
    context: Context,
    refs: Sequence[CitationRef],
    *,
    block_chars: int = BLOCK_CHARS,
    budget: SearchBudget | None = None,
) -> list[Citation]:
    """Each citation in ``refs`` checked against ``context``, read by the host itself;
    ``budget`` caps their slow normalised search together (a fresh one by default)."""
    budget = budget if budget is not None else SearchBudget()
    return [verify_one(context, ref, block_chars=block_chars, budget=budget) for ref in refs]


def _with_page(context: Context, citation: Citation) -> Citation:
    """``citation`` with the 1-based page its start is on, in a file that has pages: one
    of a folder's, or the one document a str context was made from."""
    if not citation.verified or citation.start is None:
        return citation
    kind = context.info.kind
    starts = context.page_starts(str(citation.item)) if kind == "files" else context.info.pages
    if not starts:
        return citation
    return dataclasses.replace(citation, page=max(1, bisect.bisect_right(starts, citation.start)))


def verify_one(
    context: Context,
    ref: CitationRef,
    *,
    block_chars: int = BLOCK_CHARS,
    budget: SearchBudget | None = None,
) -> Citation:
    """One citation checked against ``context``: verified with its location, or
    unverified with the reason."""
    quote = ref.quote or ""

    def unverified(reason: str, source: str = "context", item: Any = None) -> Citation:
        return Citation(quote, source, ref.start, ref.end, False, reason, item=item)

    candidates = _candidates(context, ref)
    if isinstance(candidates, str):
        return unverified(candidates, *_named(context, ref.item))
    if ref.start is not None and ref.end is not None:
        ((source, item, text),) = candidates
        if text is None:
            return unverified(f"{source} is an image: it has no text to cite", source, item)
        return _with_page(context, _verify_span(ref, source, item, text, block_chars))
    if not normalised_quote(quote):
        return unverified("the quote is empty")
    search = _Search(quote, budget if budget is not None else SearchBudget())
    texts = [(s, i, t) for s, i, t in candidates if t is not None]
    for find in (_Text.exact, _Text.normalised):
        for source, item, text in texts:
            found = find(text, search, block_chars)
            if found is not None:
                cited = text.located(source, item, *found, block_chars)
                if cited is not None:  # a match always lies inside its text
                    return _with_page(context, cited)
    where = "the context" if len(texts) <= 1 else f"any of the context's {len(texts)} items"
    reason = f"not found in {where}, exactly or normalised"
    if search.gave_up:
        reason += (
            f" (the normalised search covers {MAX_NORMALISED_CHARS:,} characters of "
            "non-ASCII text per answer: quote it exactly)"
        )
    source, item = _named(context, ref.item) if ref.item is not None else ("context", None)
    return unverified(reason, source, item)


def _verify_span(
    ref: CitationRef, source: str, item: Any, text: _Text, block_chars: int
) -> Citation:
    start, end = ref.start, ref.end
    assert start is not None and end is not None
    quote = ref.quote or ""
    if not 0 <= start < end:
        return Citation(quote, source, start, end, False, "not a span: need 0 <= start < end",
                        item=item)  # fmt: skip
    if end - start > MAX_SPAN_CHARS:
        return Citation(quote, source, start, end, False,
                        f"a span is at most {MAX_SPAN_CHARS:,} characters", item=item)  # fmt: skip
    cited = text.located(source, item, start, end, block_chars)
    if cited is None:
        return Citation(quote, source, start, end, False,
                        f"the span ends past the end of {source}", item=item)  # fmt: skip
    read = cited.quote
    if (
        ref.quote is not None
        and read != ref.quote
        and normalised_quote(read) != normalised_quote(ref.quote)
    ):
        return Citation(quote, source, start, end, False,
                            f"the text at {start}:{end} is not the quote", item=item)  # fmt: skip
    return cited


def _named(context: Context, item: Any) -> tuple[str, Any]:
    """``(source, item)`` as a citation names them."""
    if item is None or context.info.kind == "str":
        return "context", None
    if context.info.kind in ("dict", "files"):
        return str(item), str(item)
    return f"context[{item}]", item


def _candidates(context: Context, ref: CitationRef) -> list[tuple[str, Any, _Text | None]] | str:
    """The texts a citation may be in, as ``(source, item, text)`` (``text`` None for an
    image item), or the reason it names none."""
    kind = context.info.kind
    if kind == "str":
        if ref.item is not None:
            return "the context is text: cite a quote or (start, end), without an item"
        path = context.path
        if path is not None:
            return [("context", None, _Text(path=path))]
        value = context.value()
        assert isinstance(value, str)
        return [("context", None, _Text(text=value))]
    value = context.value()
    if kind == "files":
        return _file_candidates(value, ref)
    if kind == "list":
        assert isinstance(value, list)
        if ref.item is None:
            if ref.start is not None:
                return "the context is a list: cite (index, start, end)"
            return [(f"context[{i}]", i, _wrap(v)) for i, v in enumerate(value)]
        if not isinstance(ref.item, int):
            return "the context is a list: an item is an int index"
        index = ref.item + len(value) if ref.item < 0 else ref.item
        if not 0 <= index < len(value):
            return f"the context has no item {ref.item} (it has {len(value)})"
        return [(f"context[{index}]", index, _wrap(value[index]))]
    assert isinstance(value, dict)
    if ref.item is None:
        if ref.start is not None:
            return "the context is a dict: cite (key, start, end)"
        return [(str(k), str(k), _wrap(v)) for k, v in value.items()]
    key: Any = ref.item
    if key not in value:
        key = str(key)
        if key not in value:
            return f"the context has no key {str(ref.item)[:80]!r}"
    return [(str(key), str(key), _wrap(value[key]))]


def _file_candidates(files: Any, ref: CitationRef) -> list[tuple[str, Any, _Text | None]] | str:
    """The files a citation may be in, each decoded only while it is searched."""
    assert isinstance(files, Mapping)

    def member(name: str) -> tuple[str, Any, _Text | None]:
        return name, name, _Text(load=lambda: files[name])

    if ref.item is None:
        if ref.start is not None:
            return "the context is files: cite (name, start, end)"
        return [member(name) for name in files]
    if str(ref.item) not in files:
        return f"the context has no file {str(ref.item)[:200]!r}"
    return [member(str(ref.item))]


def _wrap(value: Any) -> _Text | None:
    text = _item_text(value)
    return None if text is None else _Text(text=text)
