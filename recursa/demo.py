"""``recursa demo``: a question over a million-token document, answered offline.

The document is a harbour town's archive of log entries (about 4M characters,
far beyond the embedded model's 32K-token window) with one fact hidden at a
random depth; the question asks for that fact. The name the question is about
also appears in a couple of sentences that do not answer it, and a dozen
similar facts about other names are scattered around. Everything is deterministic per
seed. The RLM runs on the embedded model (``local/qwen2.5-coder-0.5b``): the
model's own code and sub-calls have to find the fact, nothing here points at it.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .models.base import Model
from .trace import Sink

DEFAULT_MODEL = "local/qwen2.5-coder-0.5b"
DEFAULT_TOKENS = 1_000_000
CHARS_PER_TOKEN = 4  # the benchmarks' length rule (recursa.bench.tokens)


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(sep) if w.strip())


# --- the haystack: varied, dull, harbour-town log entries ---------------------------------

_FIRST = _words(
    "Anna Ben Clara David Elena Frank Grace Henry Iris Jonas Karen Leo Maria Nina Oscar Paula "
    "Quentin Rosa Samuel Tara Victor Wendy Yusuf Zoe Marta Pavel Hugo Lena Ruth Tomas"
)
_LAST = _words(
    "Adams Baker Carter Dalton Evans Fischer Garcia Hansen Ivanov Jensen Keller Lopez Morgan "
    "Novak Olsen Peters Quinn Reyes Schmidt Turner Weber Young Brooks Cole Hart Lund Moss Price"
)
_ROLES = _words(
    "harbour master, night watchman, ferry captain, customs officer, baker, fisherman, "
    "schoolteacher, town clerk, lighthouse keeper, carpenter, net mender, dock foreman, "
    "innkeeper, blacksmith, weather observer, postmistress",
    ", ",
)
_PLACES = _words(
    "north pier, fish market, old warehouse, customs house, boat yard, town hall, chapel, "
    "east breakwater, rope walk, salt store, harbour office, market square, net loft, "
    "coal wharf, signal station, tide gauge, slipway, ice house",
    ", ",
)
_THINGS = _words(
    "crates, barrels, nets, lanterns, ropes, sacks of flour, crab pots, oars, buoys, tarpaulins, "
    "coils of wire, tins of paint, bundles of timber, baskets of herring, spare sails",
    ", ",
)
_ADJ = _words(
    "heavy, small, damaged, new, old, wet, rusty, freshly painted, borrowed, missing, "
    "unlabelled, spare, broken, clean",
    ", ",
)
_WEATHER = _words(
    "fog, light rain, drizzle, clear skies, a strong swell, sleet, low cloud, bright sun, "
    "a gale, hail showers, a calm sea, thick mist",
    ", ",
)
_DIRS = _words("north, north-east, east, south-east, south, south-west, west, north-west", ", ")
_MONTHS = _words(
    "January February March April May June July August September October November December"
)
_FILLER_TEMPLATES = (
    "{person}, the {role}, reported {n} {things} at the {place}.",
    "Weather: {weather}, wind from the {dir} at {n} knots.",
    "The {adj} {things} near the {place} were moved before noon.",
    "{person} asked the {role} to check the {things} at the {place}.",
    "The council met in the {place} and discussed the {adj} {things}.",
    "Tide at {hour}:{minute:02d}, {n} centimetres above the mark.",
    "{person} signed for {n} {things} delivered to the {place}.",
    "The {role} noted that the {things} in the {place} were {adj}.",
    "No visitors at the {place} today; the {role} kept the log.",
    "{person} and {person2} repaired the {adj} {things} by the {place}.",
    "A boat came in with {n} {things}; the {role} counted them twice.",
    "Inventory of the {place}: {n} {things}, {n2} {things2}.",
    "The meeting about the {place} moved to {month}.",
    "{person} was thanked for the work on the {place}.",
)

# --- the needle: one fact about a name found nowhere else ---------------------------------

_SYLLABLES_A = _words("vel tor mar quin bral dun sor kel ves thal gor lun fen mor ash cal")
_SYLLABLES_B = _words("ith ara ond ux eva imbe orra ast ell iro una ekk")
_SYLLABLES_C = _words("wick mere holt by stead moor ford haven dale combe")
_COLOURS = _words("turquoise crimson ochre lilac saffron teal vermilion indigo")
_OBJECTS = _words(
    "blue flowerpot, loose floorboard, brass bell, cracked anchor, stone owl, tin lantern", ", "
)
_TEAS = _words(
    "jasmine oolong, smoked lapsang, rooibos, mint darjeeling, genmaicha, hibiscus", ", "
)
_WORDS = _words("thimble saltmarsh juniper cobweb lantern parsnip quartz marigold pebble")


@dataclass(frozen=True)
class Needle:
    fact: str
    question: str
    answer: str
    key: str  # the invented name the question is about
    kind: str  # "person" or "place": what the name is, for the decoy sentences


def _needle(rng: random.Random) -> Needle:
    place = (
        rng.choice(_SYLLABLES_A).capitalize() + rng.choice(_SYLLABLES_B) + rng.choice(_SYLLABLES_C)
    )
    person = (
        rng.choice(_SYLLABLES_A).capitalize()
        + rng.choice(_SYLLABLES_B)
        + " "
        + rng.choice(_SYLLABLES_A).capitalize()
        + rng.choice(_SYLLABLES_C)
    )
    pier = str(rng.randint(11, 97))
    year = str(rng.randint(1890, 1990))
    colour, obj, tea, word = (
        rng.choice(_COLOURS),
        rng.choice(_OBJECTS),
        rng.choice(_TEAS),
        rng.choice(_WORDS),
    )
    facts = (
        Needle(
            f"The ferry to {place} leaves from pier {pier} every morning.",
            f"From which pier does the ferry to {place} leave?",
            pier,
            place,
            "place",
        ),
        Needle(
            f"{person} keeps the spare key of the observatory under the {obj}.",
            f"Where does {person} keep the spare key of the observatory?",
            obj,
            person,
            "person",
        ),
        Needle(
            f"In {year} the lighthouse of {place} was repainted {colour}.",
            f"What colour was the lighthouse of {place} repainted?",
            colour,
            place,
            "place",
        ),
        Needle(
            f"{person} only ever drinks {tea} tea.",
            f"Which tea does {person} drink?",
            tea,
            person,
            "person",
        ),
        Needle(
            f"The password for the {place} expedition was {word}.",
            f"What was the password for the {place} expedition?",
            word,
            place,
            "place",
        ),
    )
    return rng.choice(facts)


# Sentences that mention a needle's name without giving its answer.
_DECOYS = {
    "person": (
        "{key} signed for {n} {things} delivered to the {place}.",
        "{key} asked the {role} about the {adj} {things}.",
        "The {role} saw {key} near the {place} before noon.",
    ),
    "place": (
        "A boat from {key} came in with {n} {things}.",
        "The {role} wrote to {key} about the {adj} {things}.",
        "Weather at {key}: {weather}.",
    ),
}
DECOY_MENTIONS = 2
SIMILAR_FACTS = 12


def _decoy(rng: random.Random, needle: Needle) -> str:
    return rng.choice(_DECOYS[needle.kind]).format(
        key=needle.key,
        n=rng.randint(2, 90),
        things=rng.choice(_THINGS),
        place=rng.choice(_PLACES),
        role=rng.choice(_ROLES),
        adj=rng.choice(_ADJ),
        weather=rng.choice(_WEATHER),
    )


@dataclass(frozen=True)
class DemoDocument:
    """The generated context, the question about it and the expected answer."""

    text: str
    question: str
    expected: str
    needle: str
    offset: int  # where the needle starts in ``text``

    @property
    def approx_tokens(self) -> int:
        return len(self.text) // CHARS_PER_TOKEN


def _sentence(rng: random.Random) -> str:
    def person() -> str:
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"

    return rng.choice(_FILLER_TEMPLATES).format(
        person=person(),
        person2=person(),
        role=rng.choice(_ROLES),
        place=rng.choice(_PLACES),
        things=rng.choice(_THINGS),
        things2=rng.choice(_THINGS),
        adj=rng.choice(_ADJ),
        weather=rng.choice(_WEATHER),
        dir=rng.choice(_DIRS),
        n=rng.randint(2, 90),
        n2=rng.randint(2, 90),
        hour=rng.randint(0, 23),
        minute=rng.randint(0, 59),
        month=rng.choice(_MONTHS),
    )


def make_document(seed: int = 0, tokens: int = DEFAULT_TOKENS) -> DemoDocument:
    """A deterministic archive of about ``tokens`` tokens (4 characters each) with one
    hidden fact, the question that asks for it, and the answer."""
    rng = random.Random(f"recursa-demo-{seed}")
    needle = _needle(rng)
    # A pool of entries assembled at random keeps generation fast (~1 s for 4M chars).
    entries: list[str] = []
    for _ in range(1500):
        sentences = " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))
        entries.append(sentences)
    target = max(1, tokens) * CHARS_PER_TOKEN
    parts: list[str] = []
    size = 0
    day = 0
    start_year = 1900 + rng.randint(0, 60)
    while size < target:
        day += 1
        year, rest = divmod(day - 1, 360)
        head = f"Log {day}, {rest % 30 + 1} {_MONTHS[rest // 30]} {start_year + year}."
        entry = f"{head} {rng.choice(entries)}\n\n"
        parts.append(entry)
        size += len(entry)
    # The fact, a few sentences that name the same key without the answer, and similar
    # facts about other names, each put between two sentences of a random entry.
    others = [
        n for n in (_needle(rng) for _ in range(SIMILAR_FACTS * 2)) if needle.key not in n.fact
    ]
    inserts = [_decoy(rng, needle) for _ in range(DECOY_MENTIONS)]
    inserts += [n.fact for n in others[:SIMILAR_FACTS]]
    margin = len(parts) // 20
    slots = rng.sample(range(margin, len(parts) - margin), len(inserts) + 1)
    at = slots[0]
    for slot, sentence in zip(slots[1:], inserts, strict=True):
        parts[slot] = _insert(parts[slot], sentence)
    parts[at] = _insert(parts[at], needle.fact)
    offset = sum(map(len, parts[:at])) + parts[at].index(needle.fact)
    text = "".join(parts)
    # The filler's vocabulary never forms an invented name, so the key is only where we put it.
    assert text.count(needle.key) == 1 + DECOY_MENTIONS, f"{needle.key!r} is not where we put it"
    return DemoDocument(text, needle.question, needle.answer, needle.fact, offset)


def _insert(entry: str, sentence: str) -> str:
    """``entry`` with ``sentence`` between two of its sentences, so nothing marks it out."""
    cut = entry.find(". ", len(entry) // 2)
    cut = cut + 2 if cut != -1 else 0
    return f"{entry[:cut]}{sentence} {entry[cut:]}"


def is_correct(answer: str, expected: str) -> bool:
    """Lenient match: the expected answer appears in the model's answer, ignoring case,
    punctuation and spacing."""

    def norm(s: str) -> str:
        return " ".join(re.sub(r"[^\w]+", " ", s.lower()).split())

    return f" {norm(expected)} " in f" {norm(answer)} "


# --- running it ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoResult:
    seed: int
    model: str
    question: str
    expected: str
    answer: str
    correct: bool
    context_chars: int
    context_tokens: int
    iterations: int
    calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    seconds: float
    stopped: str | None
    trace: Path | None
    error: str | None = None


def run_demo(
    seed: int = 0,
    model: str | Model = DEFAULT_MODEL,
    tokens: int = DEFAULT_TOKENS,
    trace: Path | bool | None = None,
    *,
    max_iterations: int = 6,
    sandbox: str = "subprocess",
    progress: Callable[[str], None] | None = None,
    sinks: Sequence[Sink] = (),
) -> DemoResult:
    """Generate the document for ``seed`` and answer its question with an RLM.

    ``trace`` is a JSONL path; ``None`` writes one in the runs directory (``trace=True``) and
    ``False`` writes none. ``progress`` receives a line before the slow part starts;
    ``sinks`` receive the run's events (the CLI's live progress display).
    """
    from .rlm import RLM
    from .settings import Settings

    say = progress or (lambda _msg: None)
    started = time.monotonic()
    doc = make_document(seed, tokens)
    settings = Settings(
        model=model,
        max_depth=1,
        max_iterations=max_iterations,
        sandbox=sandbox,
        trace=True if trace is None else trace,
    )
    rlm = RLM.from_settings(settings)
    spec = rlm.model.spec
    say(
        f"{len(doc.text):,} characters (~{doc.approx_tokens:,} tokens) of harbour logs; "
        f"asking {spec}: {doc.question}"
    )
    result = rlm.completion(doc.question, context=doc.text, sinks=sinks)
    usage = result.usage
    return DemoResult(
        seed=seed,
        model=spec,
        question=doc.question,
        expected=doc.expected,
        answer=result.answer,
        correct=is_correct(result.answer, doc.expected),
        context_chars=len(doc.text),
        context_tokens=doc.approx_tokens,
        iterations=result.iterations,
        calls=usage.calls,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        seconds=time.monotonic() - started,
        stopped=result.stopped,
        trace=result.trace,
        error=result.error,
    )


def print_demo(result: DemoResult, out: TextIO | None = None) -> None:
    """The human summary ``recursa demo`` prints."""
    out = out or sys.stdout
    mark = "correct" if result.correct else "WRONG"
    lines = [
        f"context:   {result.context_chars:,} characters (~{result.context_tokens:,} tokens; "
        f"the model's window is far smaller)",
        f"question:  {result.question}",
        f"answer:    {result.answer.strip() or '(none)'}",
        f"expected:  {result.expected}  -> {mark}",
        f"model:     {result.model}, {result.iterations} iterations, {result.calls} calls",
        f"tokens:    {result.input_tokens:,} in ({result.cached_tokens:,} cached), "
        f"{result.output_tokens:,} out; cost $0.00",
        f"time:      {result.seconds:.1f} s",
    ]
    if result.stopped:
        lines.append(
            f"stopped:   {result.stopped}" + (f" ({result.error})" if result.error else "")
        )
    if result.trace is not None:
        lines.append(f"trace:     {result.trace}  (open it with: recursa view {result.trace})")
    print("\n".join(lines), file=out)
