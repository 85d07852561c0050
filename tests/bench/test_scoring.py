"""Scorers and length helpers, checked against hand-computed values."""

from __future__ import annotations

import datetime as dt

import pytest

from recursa.bench.scoring import (
    choice_score,
    citation_scores,
    contains_score,
    normalize_answer,
    oolong_parse,
    oolong_score,
    pairs_f1,
    parse_choice,
    parse_date,
    sniah_score,
)
from recursa.bench.tokens import count_tokens, format_length, parse_length
from recursa.result import Citation

# --- tokens ---------------------------------------------------------------------------------


def test_count_tokens_is_chars_over_four_rounded_up() -> None:
    assert count_tokens("") == 0
    assert count_tokens("abcd") == 1
    assert count_tokens("abcde") == 2
    assert count_tokens(["abc", "de", "fgh"]) == 2  # 8 chars in all


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8k", 8_000),
        ("8K", 8_000),
        ("128k", 128_000),
        ("1m", 1_000_000),
        ("1.5k", 1_500),
        ("32000", 32_000),
        ("32_000", 32_000),
        ("8ki", 8_192),
        ("1mi", 1_048_576),
        (4096, 4096),
    ],
)
def test_parse_length(text: str | int, expected: int) -> None:
    assert parse_length(text) == expected


@pytest.mark.parametrize("bad", ["", "k", "8 kb", "-5", "0", "1e6"])
def test_parse_length_rejects_nonsense(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_length(bad)


@pytest.mark.parametrize("tokens", [1_000, 8_000, 8_192, 131_072, 1_000_000, 1_048_576, 1_234])
def test_format_length_round_trips(tokens: int) -> None:
    assert parse_length(format_length(tokens)) == tokens
    assert format_length(8_000) == "8k"
    assert format_length(1_000_000) == "1m"


# --- S-NIAH ---------------------------------------------------------------------------------


def test_sniah_score() -> None:
    assert sniah_score("The special magic number is 4817263.", "4817263") == 1.0
    assert sniah_score("It is 4817264.", "4817263") == 0.0
    uuid = "8A9B0C1D-2E3F-4a5b-8c6d-7e8f9a0b1c2d"
    assert sniah_score(f"uuid: {uuid.lower()}", uuid) == 1.0
    assert sniah_score("1111111 only", ["1111111", "2222222"]) == 0.5


# --- OOLONG ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("Answer: 10", 10, 1.0),
        ("Answer: 12", 10, 0.5625),  # 0.75 ** 2
        ("Answer: 9", 10, 0.75),
        ("Answer: **7**", 10, 0.421875),  # 0.75 ** 3
        ("Answer: 1,024", 1024, 1.0),
        ("Answer: ten", 10, 0.0),
        ("Label: **location**", "location", 1.0),
        ("Label: [Numeric Value]", "numeric value", 1.0),
        ("Label: entity", "location", 0.0),
        ("location", "location", 1.0),  # short reply without a colon
        ("After counting carefully, I conclude it is location", "location", 1.0),  # last word
        ("Answer: entity is more common than location", "more common than", 1.0),
        ("Answer: entity is less common than location", "more common than", 0.0),
        ("Answer: more common than", "more common than", 1.0),
        ("Answer: human being is same frequency as abbreviation", "same frequency as", 1.0),
        ("User: 48213", "48213", 1.0),
        ("User: 48214", "48213", 0.0),  # user ids get no partial credit
        ("Date: Jan 06, 2023", "2023-01-06", 1.0),
        ("Date: January 6th, 2023", "2023-01-06", 1.0),
        ("Date: 2023-01-06.", "2023-01-06", 1.0),
        ("Date: Jan 07, 2023", "2023-01-06", 0.0),
        ("Date: soon", "2023-01-06", 0.0),
    ],
)
def test_oolong_score(pred: str, gold: int | str, expected: float) -> None:
    assert oolong_score(pred, gold) == pytest.approx(expected)


def test_oolong_parse_takes_text_after_last_colon() -> None:
    assert oolong_parse("Reasoning: lots. Final: **[abbreviation]**") == "abbreviation"
    assert oolong_parse("x" * 30) == "x" * 30  # one long word: the last word is itself
    assert oolong_parse("Answer: it is clearly less common than the other label") == "less common"


@pytest.mark.parametrize(
    "text",
    [
        "2023-03-15",
        "Mar 15, 2023",
        "March 15, 2023",
        "15 March 2023",
        "Mar. 15th, 2023",
        "03/15/2023",
    ],
)
def test_parse_date_spellings(text: str) -> None:
    assert parse_date(text) == dt.date(2023, 3, 15)


def test_parse_date_rejects_non_dates() -> None:
    assert parse_date("48213") is None
    assert parse_date("location") is None


# --- OOLONG-Pairs ---------------------------------------------------------------------------


def test_pairs_f1_ignores_order_within_pairs_and_duplicates() -> None:
    gold = [[1, 2], [3, 4]]
    assert pairs_f1("(2, 1)\n(1,2)\n( 3 , 4 )", gold) == 1.0


def test_pairs_f1_partial() -> None:
    gold = [[1, 2], [3, 4]]
    assert pairs_f1("(1, 2)\n(5, 6)", gold) == pytest.approx(0.5)  # P = R = 1/2
    assert pairs_f1("(1, 2)", gold) == pytest.approx(2 / 3)  # P = 1, R = 1/2
    assert pairs_f1("(1, 2) (3, 4) (5, 6) (7, 8)", gold) == pytest.approx(2 / 3)  # P = 1/2, R = 1
    assert pairs_f1("(9, 10)", gold) == 0.0


def test_pairs_f1_empty_sets() -> None:
    assert pairs_f1("No valid pairs.", []) == 1.0
    assert pairs_f1("(1, 2)", []) == 0.0
    assert pairs_f1("none", [[1, 2]]) == 0.0


# --- BrowseComp-lite ------------------------------------------------------------------------


def test_normalize_answer() -> None:
    assert normalize_answer("  The Red-Lion, Inc.! ") == "red lion inc"


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("The answer is Luirpo.", "Luirpo", 1.0),
        ("luirpo", "Luirpo", 1.0),
        ("It was born in the city of The Harbor", "Harbor", 1.0),
        ("Zorvax 3X", "Zorvax 3", 0.0),  # a look-alike is not the answer
        ("Zorvax-3", "Zorvax 3", 1.0),
        ("19421", "1942", 0.0),
        ("born in 1942", "1942", 1.0),
        ("Talin Orvask", ["Talin Orvesk", "T. Orvesk"], 0.0),
        ("T. Orvesk", ["Talin Orvesk", "T. Orvesk"], 1.0),
        ("anything", "", 0.0),
    ],
)
def test_contains_score(pred: str, gold: str | list[str], expected: float) -> None:
    assert contains_score(pred, gold) == expected


# --- multiple choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "letter"),
    [
        ("Answer: C", "C"),
        ("**Answer:** (b)", "B"),
        ("The answer is D.", "D"),
        ("I think it's B. Answer: A", "A"),
        ("A and B are wrong; C is right", "C"),
        ("(D)", "D"),
        ("this is a test", None),
        ("", None),
    ],
)
def test_parse_choice(pred: str, letter: str | None) -> None:
    assert parse_choice(pred) == letter


def test_choice_score() -> None:
    assert choice_score("Answer: C", "C") == 1.0
    assert choice_score("Answer: c", "C") == 1.0
    assert choice_score("Answer: B", "C") == 0.0
    assert choice_score("no idea", "C") == 0.0


def test_citation_scores_in_list_items() -> None:
    def cited(item: int, start: int, end: int, verified: bool = True) -> Citation:
        return Citation("q", f"context[{item}]", start, end, verified, item=item)

    gold = [[3, 0, 500], [7, 0, 400]]  # two evidence documents
    assert citation_scores([cited(3, 10, 20)], gold) == (1.0, 0.5)
    assert citation_scores([cited(4, 10, 20)], gold) == (0.0, 0.0)  # another document
    assert citation_scores([cited(3, 10, 20), cited(7, 0, 5), cited(9, 0, 5)], gold) == (
        2 / 3,
        1.0,
    )
    assert citation_scores([cited(3, 10, 20, verified=False)], gold) == (0.0, 0.0)
    assert citation_scores([cited(3, 500, 510)], gold) == (0.0, 0.0)  # just past its end
