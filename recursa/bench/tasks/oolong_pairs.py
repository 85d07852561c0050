"""OOLONG-Pairs: the 20 pair-listing queries of the RLM paper (arXiv 2512.24601, App. D.1).

Same kind of data as :mod:`.oolong` (dated, per-user questions whose labels
must be inferred), but every query asks for *all pairs* of users meeting a
condition, so the answer grows quadratically with the number of users. Gold is
the sorted list of ``[lower id, higher id]`` pairs; the score is pair F1.

To keep gold sets manageable at any length, the number of users is capped
(``max_users``, 100 by default: at most 4,950 pairs) and each user asks about
a few favourite labels plus, sometimes, one or two "rare" labels a fixed
number of times, so that "at least one" and "exactly one" conditions stay
discriminative when contexts grow and each user has many lines.
"""

from __future__ import annotations

import collections
import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..scoring import pairs_f1
from ..tokens import CHARS_PER_TOKEN
from ._trec import LABELS
from .base import Item, check_args, item_id, item_rng
from .oolong import LabelSampler, Record, make_records, render_context

__all__ = ["PAIR_QUERIES", "Condition", "OolongPairsTask", "PairQuery", "gold_pairs"]

_SUFFIX = (
    "Each of the questions can be labelled as one of the labels (the data does not provide "
    "the labels, you need to figure out the label from the semantics of the question): "
    "description and abstract concept, entity, human being, numeric value, location, "
    "abbreviation. In your answer, list all pairs in the format (user_id_1, user_id_2), "
    "separated by newlines."
)
_PREFIX = "In the above data, list all pairs of user IDs (no duplicate pairs, list lower ID first)"

DESC, ENTY, HUM, NUM, LOC, ABBR = LABELS


@dataclass(frozen=True)
class Condition:
    """A user has ``at_least`` / ``exactly`` ``k`` instances with ``label``."""

    label: str
    op: Literal["at_least", "exactly"]
    k: int = 1

    def holds(self, counts: collections.Counter[str]) -> bool:
        n = counts[self.label]
        return n >= self.k if self.op == "at_least" else n == self.k


@dataclass(frozen=True)
class PairQuery:
    """One OOLONG-Pairs query: its text and the predicate that defines its gold pairs.

    Symmetric queries (1-10): both users have an instance with one of
    ``any_of``, and, when ``date_rule`` is set, every instance of that label
    for both users is strictly after / before the date. Asymmetric queries
    (11-20): one user meets all of ``role_a`` and the other all of ``role_b``.
    """

    number: int
    text: str
    any_of: tuple[str, ...] = ()
    date_rule: tuple[str, Literal["after", "before"], dt.date] | None = None
    role_a: tuple[Condition, ...] = field(default=())
    role_b: tuple[Condition, ...] = field(default=())


def _both(number: int, condition: str, any_of: tuple[str, ...], **kw: Any) -> PairQuery:
    text = f"{_PREFIX} where both users have at least one instance with {condition}. {_SUFFIX}"
    return PairQuery(number, text, any_of=any_of, **kw)


def _one_other(
    number: int, a: str, b: str, role_a: tuple[Condition, ...], role_b: tuple[Condition, ...]
) -> PairQuery:
    text = f"{_PREFIX} such that one user has {a}, and the other user has {b}. {_SUFFIX}"
    return PairQuery(number, text, role_a=role_a, role_b=role_b)


def _ge(label: str, k: int = 1) -> Condition:
    return Condition(label, "at_least", k)


def _eq(label: str, k: int = 1) -> Condition:
    return Condition(label, "exactly", k)


#: The 20 queries, worded as in the paper's appendix.
PAIR_QUERIES: tuple[PairQuery, ...] = (
    _both(1, "a numeric value or location", (NUM, LOC)),
    _both(2, "an entity or human being", (ENTY, HUM)),
    _both(3, "a description and abstract concept or abbreviation", (DESC, ABBR)),
    _both(
        4,
        "a human being or location, and all instances that are a human being for both users "
        "must be after January 6, 2023",
        (HUM, LOC),
        date_rule=(HUM, "after", dt.date(2023, 1, 6)),
    ),
    _both(
        5,
        "an entity or numeric value, and all instances that are an entity for both users must "
        "be before March 15, 2023",
        (ENTY, NUM),
        date_rule=(ENTY, "before", dt.date(2023, 3, 15)),
    ),
    _both(6, "a location or abbreviation", (LOC, ABBR)),
    _both(
        7,
        "a description and abstract concept or numeric value, and all instances that are a "
        "numeric value for both users must be after February 1, 2023",
        (DESC, NUM),
        date_rule=(NUM, "after", dt.date(2023, 2, 1)),
    ),
    _both(8, "a human being or description and abstract concept", (HUM, DESC)),
    _both(
        9,
        "an entity or location, and all instances that are a location for both users must be "
        "after April 10, 2023",
        (ENTY, LOC),
        date_rule=(LOC, "after", dt.date(2023, 4, 10)),
    ),
    _both(
        10,
        "a numeric value or abbreviation, and all instances that are an abbreviation for both "
        "users must be before May 20, 2023",
        (NUM, ABBR),
        date_rule=(ABBR, "before", dt.date(2023, 5, 20)),
    ),
    _one_other(
        11,
        "at least one instance with entity and one with abbreviation",
        "exactly one instance with entity",
        (_ge(ENTY), _ge(ABBR)),
        (_eq(ENTY),),
    ),
    _one_other(
        12,
        "at least two instances with numeric value",
        "at least one instance with location and at least one instance with human being",
        (_ge(NUM, 2),),
        (_ge(LOC), _ge(HUM)),
    ),
    _one_other(
        13,
        "exactly one instance with description and abstract concept",
        "at least one instance with abbreviation and at least one instance with entity",
        (_eq(DESC),),
        (_ge(ABBR), _ge(ENTY)),
    ),
    _one_other(
        14,
        "at least one instance with human being and at least one instance with numeric value",
        "exactly two instances with location",
        (_ge(HUM), _ge(NUM)),
        (_eq(LOC, 2),),
    ),
    _one_other(
        15,
        "at least one instance with entity, at least one instance with location, and at least "
        "one instance with abbreviation",
        "exactly one instance with numeric value",
        (_ge(ENTY), _ge(LOC), _ge(ABBR)),
        (_eq(NUM),),
    ),
    _one_other(
        16,
        "at least one instance with description and abstract concept and at least one instance "
        "with human being",
        "at least two instances with entity and exactly one instance with abbreviation",
        (_ge(DESC), _ge(HUM)),
        (_ge(ENTY, 2), _eq(ABBR)),
    ),
    _one_other(
        17,
        "exactly one instance with numeric value",
        "at least one instance with location and at least one instance with description and "
        "abstract concept",
        (_eq(NUM),),
        (_ge(LOC), _ge(DESC)),
    ),
    _one_other(
        18,
        "at least one instance with abbreviation and exactly one instance with human being",
        "at least one instance with entity and at least one instance with numeric value",
        (_ge(ABBR), _eq(HUM)),
        (_ge(ENTY), _ge(NUM)),
    ),
    _one_other(
        19,
        "at least two instances with location and at least one instance with entity",
        "exactly one instance with description and abstract concept and exactly one instance "
        "with abbreviation",
        (_ge(LOC, 2), _ge(ENTY)),
        (_eq(DESC), _eq(ABBR)),
    ),
    _one_other(
        20,
        "at least one instance with numeric value and at least one instance with human being",
        "at least one instance with location, at least one instance with entity, and exactly "
        "one instance with abbreviation",
        (_ge(NUM), _ge(HUM)),
        (_ge(LOC), _ge(ENTY), _eq(ABBR)),
    ),
)


def gold_pairs(query: PairQuery, records: Sequence[Record]) -> list[list[int]]:
    """The sorted ``[lower, higher]`` user-id pairs that satisfy ``query`` on ``records``."""
    by_user: dict[int, list[Record]] = collections.defaultdict(list)
    for record in records:
        by_user[record.user].append(record)
    counts = {u: collections.Counter(r.label for r in rs) for u, rs in by_user.items()}
    users = sorted(by_user)
    pairs: set[tuple[int, int]] = set()
    if query.any_of:
        eligible = [u for u in users if _eligible(query, counts[u], by_user[u])]
        pairs = {(a, b) for i, a in enumerate(eligible) for b in eligible[i + 1 :]}
    else:
        role_a = [u for u in users if all(c.holds(counts[u]) for c in query.role_a)]
        role_b = [u for u in users if all(c.holds(counts[u]) for c in query.role_b)]
        pairs = {(min(a, b), max(a, b)) for a in role_a for b in role_b if a != b}
    return [[a, b] for a, b in sorted(pairs)]


def _eligible(query: PairQuery, counts: collections.Counter[str], mine: list[Record]) -> bool:
    if not any(counts[label] >= 1 for label in query.any_of):
        return False
    if query.date_rule is None:
        return True
    label, side, cutoff = query.date_rule
    dates = [r.date for r in mine if r.label == label]
    return all(d > cutoff for d in dates) if side == "after" else all(d < cutoff for d in dates)


class OolongPairsTask:
    """The paper's 20 OOLONG-Pairs queries; item ``i`` asks query ``(i % 20) + 1``."""

    def __init__(
        self,
        queries: Sequence[int] = tuple(range(1, 21)),
        *,
        lines_per_user: int = 6,
        max_users: int = 100,
        name: str = "oolong-pairs",
    ) -> None:
        if not queries or any(not 1 <= q <= len(PAIR_QUERIES) for q in queries):
            raise ValueError(f"query numbers must be in 1..{len(PAIR_QUERIES)}, got {queries}")
        self.name = name
        #: bump when the items for the same (n, length, seed) change
        self.version = "1"
        self.queries = tuple(queries)
        self.lines_per_user = lines_per_user
        self.max_users = max_users

    def generate(self, n: int, length_tokens: int, seed: int) -> list[Item]:
        check_args(n, length_tokens)
        return [self._item(i, length_tokens, seed) for i in range(n)]

    def score(self, prediction: str, gold: Any) -> float:
        return pairs_f1(prediction, gold)

    def _item(self, index: int, length_tokens: int, seed: int) -> Item:
        rng = item_rng(self.name, length_tokens, seed, index)
        query = PAIR_QUERIES[self.queries[index % len(self.queries)] - 1]
        rare: dict[int, list[str]] = {}

        def sampler(rng: random.Random, user: int) -> LabelSampler:
            favourites = rng.sample(LABELS, rng.choice((1, 2, 2, 3, 3, 4)))
            weights = [rng.uniform(0.5, 1.5) for _ in favourites]
            others = [label for label in LABELS if label not in favourites]
            rare[user] = [
                label
                for label in others
                if rng.random() < 0.2
                for _ in range(rng.choice((1, 1, 2)))
            ]
            return lambda r: r.choices(favourites, weights)[0]

        records = make_records(
            rng,
            length_tokens * CHARS_PER_TOKEN,
            lines_per_user=self.lines_per_user,
            max_users=self.max_users,
            label_sampler=sampler,
            extra_labels=lambda rng, user: rare.get(user, []),
        )
        gold = gold_pairs(query, records)
        return Item(
            id=item_id(self.name, length_tokens, seed, index),
            task=self.name,
            context=render_context(records),
            query=query.text,
            gold=gold,
            length_tokens=length_tokens,
            meta={
                "query_number": query.number,
                "n_lines": len(records),
                "n_users": len({r.user for r in records}),
                "n_gold_pairs": len(gold),
            },
        )
