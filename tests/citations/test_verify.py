"""The host's check of citations (``recursa.citations``), on real contexts: strings, lists,
dicts and files read in blocks. Every verified citation's quote must be the context's own
text at its offsets; nothing outside the context ever verifies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recursa.citations import (
    MAX_SPAN_CHARS,
    WINDOW_CHARS,
    SearchBudget,
    normalise,
    normalised_quote,
    verify,
    verify_one,
)
from recursa.context import Context
from recursa.repl.protocol import CitationRef as Ref
from recursa.result import Citation

TEXT = (
    "Clause 1. The tenant pays rent monthly.\n"
    "Clause 2. The landlord repairs the roof.\n"
    "Clause 3. The tenant pays rent monthly, in advance.\n"
)


def check(context: Context, ref: Ref, **kw: Any) -> Citation:
    c = verify_one(context, ref, **kw)
    if c.verified:  # the quote is always the context's own text at its offsets
        assert c.start is not None and c.end is not None
        whole = context.value()
        source = whole if isinstance(whole, str) else whole[c.item]  # type: ignore[index]
        if not isinstance(source, str):
            import json

            source = json.dumps(source, ensure_ascii=False)
        assert source[c.start : c.end] == c.quote
        assert c.before == source[max(0, c.start - WINDOW_CHARS) : c.start]
        assert c.after == source[c.end : c.end + WINDOW_CHARS]
    else:
        assert c.reason and c.before is None and c.after is None
    return c


def test_an_exact_quote_is_located() -> None:
    c = check(Context(TEXT), Ref("The landlord repairs the roof."))
    assert (c.verified, c.start, c.end, c.source, c.item) == (True, 50, 80, "context", None)


def test_a_quote_that_appears_twice_is_the_first_occurrence() -> None:
    c = check(Context(TEXT), Ref("The tenant pays rent monthly"))
    assert (c.start, c.end) == (10, 38)
    assert TEXT.index("The tenant pays rent monthly", 11) > 10  # there is a second one


def test_an_exact_occurrence_wins_over_an_earlier_normalised_one() -> None:
    c = check(Context("Rent IS due. rent is due."), Ref("rent is due"))
    assert (c.start, c.quote) == (13, "rent is due")


def test_whitespace_and_case_are_normalised_and_mapped_back() -> None:
    c = check(Context(TEXT), Ref("  the TENANT pays\trent   monthly, IN\nADVANCE "))
    assert c.verified and c.quote == "The tenant pays rent monthly, in advance"
    # a quote that joins two lines (a model's chunks split them)
    c = check(Context(TEXT), Ref("rent monthly. Clause 2."))
    assert c.quote == "rent monthly.\nClause 2." and c.start == TEXT.index("rent monthly.\n")


@pytest.mark.parametrize(
    ("context", "quote", "found"),
    [
        ("the ﬁnal oﬃce", "final office", "ﬁnal oﬃce"),  # ligatures (NFKC)
        ("ＡＢＣ１２３ ok", "abc123", "ＡＢＣ１２３"),  # fullwidth forms (NFKC)
        ("a cafe\u0301 here", "CAFÉ", "cafe\u0301"),  # a combining accent vs one character
        ("Die STRASSE ist lang", "straße", "STRASSE"),  # full case folding
        ("no\u00a0break\u2003space", "no break space", "no\u00a0break\u2003space"),
    ],
)
def test_unicode_normalisation(context: str, quote: str, found: str) -> None:
    c = check(Context(context), Ref(quote))
    assert c.verified, c.reason
    assert c.quote == found and c.start == context.index(found)


def test_the_normaliser_maps_each_character_back() -> None:
    text, starts, ends = normalise("Aﬁ  B\u0301")
    assert text == "afi b\u0301".replace("b\u0301", "b\u0301")
    assert list(starts) == [0, 1, 1, 2, 4, 4][: len(text)]
    assert list(ends)[2] == 2 and list(ends)[3] == 4  # "ﬁ" -> two chars, spaces -> one
    assert normalised_quote("  x \n y  ") == "x y"


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        (Ref("The tenant pays rent weekly"), "not found in the context"),
        (Ref("   "), "the quote is empty"),
        (Ref(start=5, end=5), "need 0 <= start < end"),
        (Ref(start=-3, end=4), "need 0 <= start < end"),
        (Ref(start=0, end=10**9), "at most"),
        (Ref(start=len(TEXT) - 2, end=len(TEXT) + 5), "past the end"),
        (Ref("The landlord", start=10, end=22), "is not the quote"),
        (Ref("x", item=0), "the context is text"),
    ],
)
def test_forged_and_bogus_citations_are_unverified(ref: Ref, reason: str) -> None:
    c = check(Context(TEXT), ref)
    assert not c.verified and reason in (c.reason or "")


def test_a_span_is_read_back_by_the_host() -> None:
    c = check(Context(TEXT), Ref(start=10, end=20))
    assert (c.verified, c.quote) == (True, "The tenant")
    c = check(Context(TEXT), Ref("THE  tenant", start=10, end=20))  # with its quote, normalised
    assert c.verified and c.quote == "The tenant"
    assert check(Context(TEXT), Ref(start=0, end=MAX_SPAN_CHARS + 1)).verified is False


def test_list_and_dict_contexts_cite_items() -> None:
    docs = Context(["first doc", "second doc: the answer is 42", {"n": 7}])
    c = check(docs, Ref("answer is 42"))
    assert (c.source, c.item, c.start) == ("context[1]", 1, 16)
    assert check(docs, Ref(item=-2, start=0, end=6)).quote == "second"
    assert check(docs, Ref('"n": 7')).source == "context[2]"  # a JSON item, in its JSON text
    assert "no item 9" in (check(docs, Ref("x", item=9)).reason or "")
    assert "(index, start, end)" in (check(docs, Ref(start=0, end=2)).reason or "")
    files = Context({"a.txt": "alpha text", "b.txt": "beta text"})
    c = check(files, Ref("BETA"))
    assert (c.source, c.item, c.quote) == ("b.txt", "b.txt", "beta")
    assert check(files, Ref("alpha", item="b.txt")).verified is False
    assert "no key" in (check(files, Ref("alpha", item="c.txt")).reason or "")


def test_a_file_is_searched_in_blocks_across_their_boundaries(tmp_path: Path) -> None:
    body = "x" * 995 + "The needle\n  is HERE" + "y" * 3000 + "ünïcode ﬁnal words" + "z" * 50
    path = tmp_path / "big.txt"
    path.write_text(body, encoding="utf-8")
    context = Context(path)
    for block in (7, 64, 1000, 1 << 20):
        exact = verify_one(context, Ref("needle\n  is HERE"), block_chars=block)
        assert (exact.verified, exact.start) == (True, 999), block
        loose = verify_one(context, Ref("the NEEDLE is here"), block_chars=block)
        assert (loose.start, loose.end, loose.quote) == (995, 1015, "The needle\n  is HERE")
        uni = verify_one(context, Ref("ÜNÏCODE final"), block_chars=block)
        assert uni.verified and uni.quote == "ünïcode ﬁnal", block
        span = verify_one(context, Ref(start=990, end=1005), block_chars=block)
        assert span.quote == body[990:1005]
        assert (span.before, span.after) == (body[830:990], body[1005:1165]), block
        tail = verify_one(context, Ref("z" * 50), block_chars=block)  # the text ends first
        at = len(body) - 50
        assert (tail.start, tail.before, tail.after) == (at, body[at - 160 : at], ""), block
        assert not verify_one(context, Ref(start=0, end=len(body) + 1), block_chars=block).verified
        assert not verify_one(context, Ref("needle is there"), block_chars=block).verified


def test_a_verified_quote_carries_the_text_around_it() -> None:
    text = "a" * 300 + "The needle." + "b" * 300
    c = check(Context(text), Ref("the NEEDLE"))  # normalised: the window is the original's
    assert (c.before, c.quote, c.after) == ("a" * 160, "The needle", "." + "b" * 159)
    head = check(Context(text), Ref(start=0, end=5))  # the text starts first
    assert (head.before, head.after) == ("", "a" * 160)
    item = check(Context(["short", "x" * 20 + "key" + "y" * 5]), Ref("key"))
    assert (item.before, item.after) == ("x" * 20, "y" * 5)  # the item's text, not the list's
    assert check(Context(text), Ref("no such needle")).before is None


def test_verify_keeps_order() -> None:
    out = verify(Context(TEXT), [Ref("nope"), Ref("Clause 3")])
    assert [c.verified for c in out] == [False, True]


def test_the_slow_normalised_search_has_a_budget_per_answer() -> None:
    """Model code cannot make the host normalise non-ASCII text without end: past the
    budget shared by an answer's citations, a citation says why it was not verified."""
    text = "é " * 500 + "Ünïcode target"
    budget = SearchBudget(3 * len(text) // 2)
    first = verify_one(Context(text), Ref("ÜNÏCODE target"), budget=budget)
    assert first.verified and first.quote == "Ünïcode target"
    second = verify_one(Context(text), Ref("unicode target"), budget=budget)
    assert not second.verified and "per answer: quote it exactly" in (second.reason or "")
    # exact quotes need no normalising: still verified with the budget spent
    assert verify_one(Context(text), Ref("Ünïcode target"), budget=budget).verified
