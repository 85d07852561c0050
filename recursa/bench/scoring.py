"""Scorers for the benchmark tasks. Each takes a model's answer and a gold value
and returns a float in ``[0, 1]``.

===================  ==========================================================
``sniah_score``      RULER ``string_match_all``: share of gold values found
                     (case-insensitive substring) in the answer.
``oolong_score``     OOLONG's ``synth_process_response``: parse the text after
                     the last ``:``; exact match, comparison phrase, ``0.75 **
                     |gold - pred|`` for numbers, equal dates.
``pairs_f1``         OOLONG-Pairs: F1 between the ``(a, b)`` pairs in the answer
                     and the gold pairs, order within a pair ignored.
``contains_score``   BrowseComp-lite: normalised gold answer appears, on word
                     boundaries, in the normalised answer.
``choice_score``     multiple choice: the answer's chosen letter (A-D) is gold.
===================  ==========================================================
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "choice_score",
    "contains_score",
    "normalize_answer",
    "oolong_parse",
    "oolong_score",
    "pairs_f1",
    "parse_choice",
    "parse_date",
    "parse_pairs",
    "sniah_score",
]


# --- S-NIAH (RULER) ------------------------------------------------------------------------


def sniah_score(pred: str, gold: Any) -> float:
    """Share of gold values (one value, or a list of them) found in ``pred``, ignoring case."""
    golds = [str(g) for g in gold] if isinstance(gold, list | tuple) else [str(gold)]
    if not golds:
        return 1.0
    text = pred.lower()
    return sum(1.0 for g in golds if g.lower() in text) / len(golds)


# --- OOLONG ---------------------------------------------------------------------------------

_COMPARISONS = ("more common", "less common", "same frequency")
_STRIP_CHARS = "*[] \t\r\n"


def oolong_parse(answer: str) -> str:
    """The candidate answer in a model's reply, as OOLONG's ``synth_attempt_answer_parse``.

    The text after the last ``:`` (or, with no ``:``, the whole reply when short,
    else its last word), without ``*``, ``[``, ``]``, surrounding whitespace and a
    trailing full stop. A long candidate that mentions a comparison phrase is
    reduced to that phrase.
    """
    if ":" not in answer:
        candidate = answer if len(answer.strip()) < 20 else (answer.split() or [""])[-1]
        return _clean(candidate)
    candidate = _clean(answer.rsplit(":", 1)[-1])
    if len(candidate) >= 20:
        lowered = candidate.lower()
        for phrase in _COMPARISONS:
            if phrase in lowered:
                return phrase
    return candidate


def _clean(text: str) -> str:
    text = text.replace("*", "").replace("[", "").replace("]", "").strip(_STRIP_CHARS)
    return text.removesuffix(".").strip()


def oolong_score(pred: str, gold: Any) -> float:
    """Score an OOLONG answer the way OOLONG's ``synth_process_response`` does.

    ``gold`` is an ``int`` for numeric answers (partial credit ``0.75 ** |gold -
    pred|``), an ISO date string (``"2023-01-06"``) for dates (any common date
    spelling in the answer is accepted), or any other string (a label, a user
    id, or a comparison phrase such as ``"more common than"``), matched exactly
    but ignoring case.
    """
    candidate = oolong_parse(pred)
    gold_text = str(gold)
    if candidate.lower() == gold_text.lower():
        return 1.0
    if candidate.lower() in _COMPARISONS:
        return 1.0 if candidate.lower() in gold_text.lower() else 0.0
    if isinstance(gold, int) and not isinstance(gold, bool):
        try:
            value = int(candidate.replace(",", ""))
        except ValueError:
            return 0.0
        return float(0.75 ** abs(gold - value))
    gold_date = parse_date(gold_text) if isinstance(gold, str) else None
    if gold_date is not None:
        return 1.0 if parse_date(candidate) == gold_date else 0.0
    return 0.0


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%b %d, %Y",
    "%B %d, %Y",
    "%b %d %Y",
    "%B %d %Y",
    "%d %b %Y",
    "%d %B %Y",
    "%d %b, %Y",
    "%d %B, %Y",
    "%m/%d/%Y",
    "%Y/%m/%d",
)
_ORDINAL_RE = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)\b", re.IGNORECASE)


def parse_date(text: str) -> dt.date | None:
    """A date written in one of the common English spellings, or ``None``.

    Accepts ``2023-01-06``, ``Jan 06, 2023``, ``January 6 2023``, ``6 January
    2023``, ``Jan. 6th, 2023``, ``01/06/2023`` (month first) and similar.
    """
    cleaned = _ORDINAL_RE.sub(r"\1", text.strip().rstrip("."))
    cleaned = re.sub(r"(?<=[A-Za-z])\.", "", cleaned)
    cleaned = re.sub(r"\s*,\s*", ", ", re.sub(r"\s+", " ", cleaned)).strip()
    cleaned = re.sub(r"^Sept\b", "Sep", cleaned, flags=re.IGNORECASE)
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
    return None


# --- OOLONG-Pairs ---------------------------------------------------------------------------

_PAIR_RE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def parse_pairs(text: str) -> set[tuple[int, int]]:
    """Every ``(a, b)`` in ``text``, as ``(min, max)``, without duplicates."""
    return {_ordered(int(a), int(b)) for a, b in _PAIR_RE.findall(text)}


def pairs_f1(pred: str, gold_pairs: Iterable[Sequence[int]]) -> float:
    """F1 between the pairs written in ``pred`` and ``gold_pairs``; 1.0 when both are empty."""
    predicted = parse_pairs(pred)
    gold = {_ordered(int(pair[0]), int(pair[1])) for pair in gold_pairs}
    if not predicted and not gold:
        return 1.0
    hits = len(predicted & gold)
    if hits == 0:
        return 0.0
    precision = hits / len(predicted)
    recall = hits / len(gold)
    return 2 * precision * recall / (precision + recall)


def _ordered(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


# --- BrowseComp-lite ------------------------------------------------------------------------

_PUNCTUATION = str.maketrans({ch: " " for ch in string.punctuation})
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, punctuation to spaces, no articles, single spaces (SQuAD-style)."""
    text = _ARTICLES_RE.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def contains_score(pred: str, gold: Any) -> float:
    """1.0 if the normalised gold (or any of a list of aliases) occurs in the normalised
    prediction on word boundaries, else 0.0."""
    golds = [str(g) for g in gold] if isinstance(gold, list | tuple) else [str(gold)]
    haystack = f" {normalize_answer(pred)} "
    for alias in golds:
        needle = normalize_answer(alias)
        if needle and f" {needle} " in haystack:
            return 1.0
    return 0.0


# --- multiple choice ------------------------------------------------------------------------

_ANSWER_LETTER_RE = re.compile(
    r"answer\W{0,6}(?:is\W{0,4})?(?:option\W{0,2}|choice\W{0,2})?\(?([A-D])\)?(?![A-Za-z0-9_])",
    re.IGNORECASE,
)
_STANDALONE_LETTER_RE = re.compile(r"(?<![A-Za-z0-9_'])([A-D])(?![A-Za-z0-9_'])")


def parse_choice(text: str) -> str | None:
    """The letter A-D a reply chooses: the last ``answer: X`` (``Answer is (X)``, ...) if
    any, else the last standalone capital A-D; ``None`` if there is none."""
    explicit = _ANSWER_LETTER_RE.findall(text)
    if explicit:
        return str(explicit[-1]).upper()
    standalone = _STANDALONE_LETTER_RE.findall(text)
    return str(standalone[-1]) if standalone else None


def choice_score(pred: str, gold: Any) -> float:
    """1.0 if the letter chosen in ``pred`` is ``gold`` (``"A"``-``"D"``), else 0.0."""
    return 1.0 if parse_choice(pred) == str(gold).strip().upper() else 0.0


def citation_scores(
    citations: Sequence[Any], gold_spans: Sequence[Sequence[int]]
) -> tuple[float | None, float | None]:
    """``(precision, recall)`` of an answer's citations against the gold's locations:
    ``[start, end)`` character spans in a text context (sniah's needle), or ``[item,
    start, end)`` in item ``item`` of a list context (browsecomp-lite's documents).

    Precision: the share of the citations that the host verified *and* that overlap a
    gold span (``None`` with no citation). Recall: the share of the gold spans that some
    verified citation overlaps. Both ``None`` when the item has no gold location.
    """
    if not gold_spans:
        return None, None

    def hits(c: Any, span: Sequence[int]) -> bool:
        start, end = getattr(c, "start", None), getattr(c, "end", None)
        if not getattr(c, "verified", False) or start is None or end is None:
            return False
        if len(span) == 3:
            item, first, last = span
            return bool(getattr(c, "item", None) == item and start < last and first < end)
        return bool(start < span[1] and span[0] < end)

    precision = (
        sum(any(hits(c, s) for s in gold_spans) for c in citations) / len(citations)
        if citations
        else None
    )
    recall = sum(any(hits(c, s) for c in citations) for s in gold_spans) / len(gold_spans)
    return precision, recall
