"""OOLONG (``trec_coarse`` split, synthetic questions): aggregate over labelled lines.

The context is a list of lines ``Date: Mon DD, YYYY || User: N || Instance:
<question>``. Each question has one of six TREC coarse labels, which the
context does *not* give: a model must label every line from its meaning and
then aggregate (most/least common label, counts, comparisons, per user, per
date). 80% of the lines come from the 20% most active users, as in OOLONG.

The questions come from a built-in template bank (:mod:`._trec`) instead of
the TREC dataset, so nothing is downloaded and the gold labels are exact.
"""

from __future__ import annotations

import collections
import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..scoring import oolong_score
from ..tokens import CHARS_PER_TOKEN
from ._trec import LABELS, make_question
from .base import Item, check_args, item_id, item_rng

__all__ = [
    "DATE_FORMAT",
    "FIRST_DATE",
    "LABEL_INSTRUCTION",
    "LAST_DATE",
    "QUERY_KINDS",
    "OolongTask",
    "Record",
    "format_line",
    "make_records",
    "render_context",
]

FIRST_DATE = dt.date(2022, 11, 1)
LAST_DATE = dt.date(2023, 6, 30)
DATE_FORMAT = "%b %d, %Y"

LABEL_INSTRUCTION = (
    "Each of the questions can be labelled as one of the labels (the data does not provide "
    "the labels, you need to figure out the label from the semantics of the question): "
    + ", ".join(LABELS)
    + "."
)

HEADER = (
    "The following lines contain {n} general-knowledge questions, one per line. Each line has "
    "a date, a user ID (a user may ask several questions) and the question itself, called "
    "the instance.\n"
)

_COMPARISON_PHRASES = ("more common than", "less common than", "same frequency as")


@dataclass(frozen=True)
class Record:
    """One line of an OOLONG context, with its (hidden) label."""

    date: dt.date
    user: int
    question: str
    label: str


def format_line(record: Record) -> str:
    """``Date: Jan 06, 2023 || User: 48213 || Instance: Who wrote Hamlet?``"""
    return (
        f"Date: {record.date.strftime(DATE_FORMAT)} || User: {record.user} "
        f"|| Instance: {record.question}"
    )


def render_context(records: Sequence[Record]) -> str:
    """The context string: a header line, then one line per record."""
    header = HEADER.format(n=len(records))
    return header + "\n".join(format_line(r) for r in records)


#: Draws one label for a user; ``label_sampler`` in :func:`make_records` makes one per user.
LabelSampler = Callable[[random.Random], str]


def make_records(
    rng: random.Random,
    target_chars: int,
    *,
    lines_per_user: int,
    max_users: int,
    label_sampler: Callable[[random.Random, int], LabelSampler],
    extra_labels: Callable[[random.Random, int], list[str]] | None = None,
) -> list[Record]:
    """Records whose rendered context is within 1% of ``target_chars``.

    The number of users grows with the number of lines (``lines_per_user``)
    up to ``max_users``; 80% of the lines go to the 20% most active users.
    ``label_sampler(rng, user)`` gives each user's label distribution;
    ``extra_labels(rng, user)`` may add labels a user must have on top (the
    pairs task uses it for rare labels). Lines are shuffled, then trimmed or
    topped up so the rendered length lands in ``[0.99, 1.0] * target_chars``.
    """
    sample = [_random_record(rng, 10_000, rng.choice(LABELS)) for _ in range(64)]
    mean_line = sum(len(format_line(r)) + 1 for r in sample) / len(sample)
    est_lines = max(4, round((target_chars - len(HEADER)) / mean_line))
    n_users = max(2, min(max_users, est_lines // lines_per_user))
    users = rng.sample(range(10_000, 100_000), n_users)
    n_heavy = max(1, round(0.2 * n_users))
    heavy, light = users[:n_heavy], users[n_heavy:] or users[:n_heavy]
    samplers = {u: label_sampler(rng, u) for u in users}

    def pick_user() -> int:
        return rng.choice(heavy) if rng.random() < 0.8 else rng.choice(light)

    owners = [pick_user() for _ in range(est_lines)]
    labels = [samplers[u](rng) for u in owners]
    if extra_labels is not None:
        for user in sorted(set(owners)):
            for label in extra_labels(rng, user):
                owners.append(user)
                labels.append(label)
    records = [_random_record(rng, user, label) for user, label in zip(owners, labels, strict=True)]
    rng.shuffle(records)

    total = len(HEADER) + sum(len(format_line(r)) + 1 for r in records)
    while total > target_chars and len(records) > 1:
        total -= len(format_line(records.pop())) + 1
    while total < 0.99 * target_chars:
        user = pick_user()
        label = samplers[user](rng)
        record = _random_record(rng, user, label)
        line = len(format_line(record)) + 1
        if total + line > target_chars:
            break
        records.append(record)
        total += line
    return records


def _random_record(rng: random.Random, user: int, label: str) -> Record:
    day = FIRST_DATE + dt.timedelta(days=rng.randrange((LAST_DATE - FIRST_DATE).days + 1))
    return Record(day, user, make_question(rng, label), label)


# --- queries ------------------------------------------------------------------------------

_FORMAT_LABEL = (
    "Give your final answer in the form 'Label: answer', where answer is one of the labels."
)
_FORMAT_NUMBER = "Give your final answer in the form 'Answer: number'."
_FORMAT_USER = "Give your final answer in the form 'User: answer', where answer is the user ID."
_FORMAT_DATE = "Give your final answer in the form 'Date: Mon DD, YYYY'."


@dataclass(frozen=True)
class _Query:
    kind: str
    text: str
    gold: int | str
    answer_type: str
    params: dict[str, Any]


def _label_counts(records: Sequence[Record]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter({label: 0 for label in LABELS})
    counts.update(r.label for r in records)
    return counts


def _unique_extreme(counts: collections.Counter[Any], *, most: bool) -> Any | None:
    """The key with the strictly largest (or smallest) count, or ``None`` on a tie."""
    ordered = sorted(counts.items(), key=lambda kv: kv[1], reverse=most)
    if len(ordered) > 1 and ordered[0][1] == ordered[1][1]:
        return None
    return ordered[0][0] if ordered else None


def _q(text: str, fmt: str) -> str:
    return f"In the above data, {text} {LABEL_INSTRUCTION} {fmt}"


def _most_common(rng: random.Random, records: Sequence[Record]) -> _Query | None:
    label = _unique_extreme(_label_counts(records), most=True)
    if label is None:
        return None
    text = _q("which of the labels is the most common?", _FORMAT_LABEL)
    return _Query("most_common", text, label, "label", {})


def _least_common(rng: random.Random, records: Sequence[Record]) -> _Query | None:
    label = _unique_extreme(_label_counts(records), most=False)
    if label is None:
        return None
    text = _q("which of the labels is the least common?", _FORMAT_LABEL)
    return _Query("least_common", text, label, "label", {})


def _label_count(rng: random.Random, records: Sequence[Record]) -> _Query | None:
    label = rng.choice(LABELS)
    text = _q(f"how many data points should be classified as label '{label}'?", _FORMAT_NUMBER)
    return _Query("label_count", text, _label_counts(records)[label], "numeric", {"label": label})


def _comparison(rng: random.Random, records: Sequence[Record]) -> _Query | None:
    a, b = rng.sample(LABELS, 2)
    counts = _label_counts(records)
    gold = _COMPARISON_PHRASES[0 if counts[a] > counts[b] else 1 if counts[a] < counts[b] else 2]
    text = _q(
        f"is label '{a}' more common, less common, or the same frequency as label '{b}'?",
        f"Give your final answer in the form 'Answer: {a} is [X] {b}', where [X] is "
        "'more common than', 'less common than', or 'same frequency as'.",
    )
    return _Query("comparison", text, gold, "comparison", {"label": a, "other_label": b})


def _user_most(rng: random.Random, records: Sequence[Record]) -> _Query | None:
    label = rng.choice(LABELS)
    counts = collections.Counter(r.user for r in records if r.label == label)
    user = _unique_extreme(counts, most=True)
    if user is None:
        return None
    text = _q(f"which user has the most instances with the label '{label}'?", _FORMAT_USER)
    return _Query("user_most", text, str(user), "user", {"label": label})


def _user_count(rng: random.Random, records: Sequence[Record]) -> _Query | None:
    label = rng.choice(LABELS)
    user = rng.choice(records).user
    gold = sum(1 for r in records if r.user == user and r.label == label)
    text = _q(f"how many instances with the label '{label}' does user {user} have?", _FORMAT_NUMBER)
    return _Query("user_count", text, gold, "numeric", {"label": label, "user": user})


def _user_top_label(rng: random.Random, records: Sequence[Record]) -> _Query | None:
    user = rng.choice(records).user
    label = _unique_extreme(_label_counts([r for r in records if r.user == user]), most=True)
    if label is None:
        return None
    text = _q(f"which label is the most common among the instances of user {user}?", _FORMAT_LABEL)
    return _Query("user_top_label", text, label, "label", {"user": user})


def _date_count(rng: random.Random, records: Sequence[Record]) -> _Query | None:
    label = rng.choice(LABELS)
    cutoff = FIRST_DATE + dt.timedelta(days=rng.randrange(30, (LAST_DATE - FIRST_DATE).days - 30))
    gold = sum(1 for r in records if r.label == label and r.date > cutoff)
    text = _q(
        f"how many instances with the label '{label}' are dated after "
        f"{cutoff.strftime(DATE_FORMAT)} (not counting that day)?",
        _FORMAT_NUMBER,
    )
    return _Query("date_count", text, gold, "numeric", {"label": label, "date": cutoff.isoformat()})


def _first_or_last_date(first: bool) -> Callable[[random.Random, Sequence[Record]], _Query | None]:
    def build(rng: random.Random, records: Sequence[Record]) -> _Query | None:
        user = rng.choice(records).user
        mine = [r for r in records if r.user == user]
        label = rng.choice(sorted({r.label for r in mine}))
        dates = [r.date for r in mine if r.label == label]
        gold = min(dates) if first else max(dates)
        which = "earliest" if first else "latest"
        text = _q(
            f"what is the {which} date of an instance of user {user} with the label '{label}'?",
            _FORMAT_DATE,
        )
        kind = "first_date" if first else "last_date"
        return _Query(kind, text, gold.isoformat(), "date", {"label": label, "user": user})

    return build


_BUILDERS: dict[str, Callable[[random.Random, Sequence[Record]], _Query | None]] = {
    "most_common": _most_common,
    "least_common": _least_common,
    "label_count": _label_count,
    "comparison": _comparison,
    "user_most": _user_most,
    "user_count": _user_count,
    "user_top_label": _user_top_label,
    "date_count": _date_count,
    "first_date": _first_or_last_date(first=True),
    "last_date": _first_or_last_date(first=False),
}

#: The query kinds, in the order items cycle through them.
QUERY_KINDS: tuple[str, ...] = tuple(_BUILDERS)


class OolongTask:
    """OOLONG ``trec_coarse``-style aggregation questions over generated lines.

    Item ``i`` asks a question of kind ``kinds[i % len(kinds)]``; when that kind
    has no unambiguous answer on the generated data (a tie), the next kind is
    used. The gold is an ``int`` (counts), an ISO date string, or a string
    (label, user id, comparison phrase); ``meta["answer_type"]`` says which.
    """

    def __init__(
        self,
        kinds: Sequence[str] = QUERY_KINDS,
        *,
        lines_per_user: int = 8,
        max_users: int = 2_000,
        name: str = "oolong",
    ) -> None:
        unknown = [k for k in kinds if k not in _BUILDERS]
        if unknown or not kinds:
            raise ValueError(f"unknown OOLONG query kinds {unknown}; choose from {QUERY_KINDS}")
        self.name = name
        #: bump when the items for the same (n, length, seed) change
        self.version = "1"
        self.kinds = tuple(kinds)
        self.lines_per_user = lines_per_user
        self.max_users = max_users

    def generate(self, n: int, length_tokens: int, seed: int) -> list[Item]:
        check_args(n, length_tokens)
        return [self._item(i, length_tokens, seed) for i in range(n)]

    def score(self, prediction: str, gold: Any) -> float:
        return oolong_score(prediction, gold)

    def _item(self, index: int, length_tokens: int, seed: int) -> Item:
        rng = item_rng(self.name, length_tokens, seed, index)
        weights = [rng.uniform(0.4, 1.6) for _ in LABELS]

        def sampler(rng: random.Random, user: int) -> LabelSampler:
            return lambda r: r.choices(LABELS, weights)[0]

        records = make_records(
            rng,
            length_tokens * CHARS_PER_TOKEN,
            lines_per_user=self.lines_per_user,
            max_users=self.max_users,
            label_sampler=sampler,
        )
        query = None
        for step in range(len(self.kinds) * 4):
            kind = self.kinds[(index + step) % len(self.kinds)]
            query = _BUILDERS[kind](rng, records)
            if query is not None:
                break
        if query is None:  # pragma: no cover - every kind tied, repeatedly
            raise RuntimeError("could not build an unambiguous OOLONG question")
        return Item(
            id=item_id(self.name, length_tokens, seed, index),
            task=self.name,
            context=render_context(records),
            query=query.text,
            gold=query.gold,
            length_tokens=length_tokens,
            meta={
                "kind": query.kind,
                "answer_type": query.answer_type,
                **query.params,
                "n_lines": len(records),
                "n_users": len({r.user for r in records}),
                "label_counts": dict(_label_counts(records)),
            },
        )
