"""BrowseComp-lite: multi-hop questions over a generated corpus of documents.

BrowseComp-Plus (the RLM paper's "BrowseComp+ (1K documents)") asks questions
whose answer needs facts from several web documents, among many distractors.
This task builds a small fictional world instead (people, companies, cities,
products, with made-up names), writes one document per entity, and asks 2-3
hop questions such as "In which city was the founder of the company that makes
<product> born?". Near misses are built in: look-alike names (``Zorvax 3`` and
``Zorvax Pro``, ``Talin Orvesk`` and ``Talin Orvask``), relations that sound
like the asked one (a product's *distributor* next to its *maker*, a person's
later home next to their birthplace, an investor next to the founder), and
entities that share attributes (same category and year, same birthplace).

The context is a ``list[str]`` of documents (1,000 at large lengths).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..scoring import contains_score, normalize_answer
from ..tokens import CHARS_PER_TOKEN
from ._words import ADJECTIVES, NOUNS, near_miss, syllable_word, word_list
from .base import Item, check_args, item_id, item_rng

__all__ = ["CATEGORIES", "FACTS", "QUESTIONS", "QUESTION_KINDS", "BrowseCompLiteTask"]

#: Every fact sentence a document can contain, by relation. ``{s}`` is the document's
#: subject; the other slots are objects. Tests parse the corpus back with these.
FACTS: dict[str, tuple[str, ...]] = {
    "maker": ("{s} is made by {company}.", "{s} is manufactured by {company}."),
    "distributor": ("{s} is sold in stores by {company}, which distributes it.",),
    "launch_year": ("{s} was first released in {year}.", "The first {s} was released in {year}."),
    "category": ("{s} is a {category}.",),
    "makes": ("{s} makes {product}.",),
    "founder": ("{s} was founded by {person} in {year}.",),
    "hq": ("{s} is headquartered in {city}.", "The headquarters of {s} are in {city}."),
    "office": ("{s} also runs a small regional office in {city}.",),
    "industry": ("{s} works in the {industry} industry.",),
    "founded": ("{s} founded {company} in {year}.",),
    "investor": ("{s} was an early investor in {company}.",),
    "born_in": (
        "{s} was born in the city of {city}.",
        "{s} is a native of {city}, where they were born.",
    ),
    "born_year": ("{s} was born in {year}.",),
    "moved_to": ("{s} later moved to {city}.",),
    "profession": ("{s} worked as {profession}.",),
    "mayor_of": ("{s} is the current mayor of {city}.",),
    "country": ("{s} is a city in {country}.", "{s} lies in {country}."),
    "mayor": ("The current mayor of {s} is {person}.",),
    "city_founded": ("{s} was founded in {year}.",),
    "population": ("{s} has about {population} inhabitants.",),
    "not_confused": ("{s} should not be confused with {other}.",),
}

CATEGORIES = word_list(
    """kitchen blender | mobile game | desk lamp | smart watch | board game | running shoe |
    coffee grinder | camera drone | word processor | synthesizer | camping tent | reading tablet |
    sewing machine | garden tool | robot vacuum | bicycle helmet | portable speaker |
    video doorbell""",
    "|",
)
INDUSTRIES = word_list(
    """consumer electronics | home appliance | software | sporting goods | toy | outdoor equipment |
    audio equipment | furniture | textile""",
    "|",
)
PROFESSIONS = word_list(
    """an engineer | a chemist | a designer | an architect | an economist | a teacher | a pilot |
    a physician | a journalist | an inventor | a carpenter | a musician | a lawyer""",
    "|",
)
_COMPANY_SUFFIXES = word_list("Industries Labs Systems Works Group Dynamics Holdings Foundry")
_PRODUCT_SUFFIXES = word_list("2 3 5 Pro Max Mini X One Air Neo")
_COUNTRY_ENDS = ("ia", "land", "ova", "istan", "ar")

_FILLERS = (
    "{s} is often mentioned in regional guides for its {adj} {noun}.",
    "Local writers have described {s} as {adj} and {adj2}.",
    "A {adj} {noun} became an informal symbol associated with {s}.",
    "Visitors sometimes compare {s} to a {adj} {noun}.",
    "Several essays about {s} focus on the {adj} {noun} and its long history.",
    "An old photograph connected with {s} shows a {adj} {noun} next to a {noun2}.",
    "The archive on {s} contains letters about a {adj} {noun}.",
    "Critics have called the public image of {s} {adj}, though others find it {adj2}.",
    "Few records explain why the {noun} matters so much in stories about {s}.",
    "A popular anecdote about {s} involves a {adj} {noun} and a {adj2} {noun2}.",
)


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiou])")


@dataclass
class _Person:
    name: str
    born_in: str
    born_year: int
    profession: str
    moved_to: str | None = None
    invested_in: str | None = None
    founded: list[str] = field(default_factory=list)
    mayor_of: str | None = None


@dataclass
class _Company:
    name: str
    founder: str
    founded_year: int
    hq: str
    industry: str
    office: str | None = None
    products: list[str] = field(default_factory=list)


@dataclass
class _Product:
    name: str
    maker: str
    launch_year: int
    category: str
    distributor: str | None = None


@dataclass
class _City:
    name: str
    country: str
    founded_year: int
    population: int
    mayor: str = ""


@dataclass
class _World:
    people: dict[str, _Person]
    companies: dict[str, _Company]
    products: dict[str, _Product]
    cities: dict[str, _City]
    look_alikes: dict[str, str]


class _Names:
    """Unique names, none of which is a whole-word part of another (so containment scoring
    cannot credit ``Zorvax`` for ``Zorvax 3``)."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._parts: set[str] = set()

    def add(self, name: str) -> bool:
        words = normalize_answer(name).split()
        parts = {
            " ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)
        }
        key = " ".join(words)
        if not words or key in self._parts or parts & self._names:
            return False
        self._names.add(key)
        self._parts |= parts
        return True


def _unique(names: _Names, make: Callable[[], str]) -> str:
    while True:
        name = make()
        if names.add(name):
            return name


def _build_world(rng: random.Random, n_docs: int) -> _World:
    n_cities = max(2, round(0.15 * n_docs))
    n_companies = max(2, round(0.25 * n_docs))
    n_products = max(2, round(0.25 * n_docs))
    n_people = max(2, n_docs - n_cities - n_companies - n_products)
    names = _Names()
    look_alikes: dict[str, str] = {}

    countries = [
        _unique(names, lambda: syllable_word(rng, 2).rstrip("aeiouy") + rng.choice(_COUNTRY_ENDS))
        for _ in range(max(2, n_cities // 4))
    ]
    city_names: list[str] = []
    for _ in range(n_cities):
        if city_names and rng.random() < 0.2:
            original = rng.choice(city_names)
            candidate = near_miss(rng, original)
            if names.add(candidate):
                city_names.append(candidate)
                look_alikes[candidate] = original
                continue
        city_names.append(_unique(names, lambda: syllable_word(rng, rng.choice((2, 3)))))

    person_names: list[str] = []
    for _ in range(n_people):
        if person_names and rng.random() < 0.25:
            original = rng.choice(person_names)
            first, last = original.split(" ", 1)
            candidate = f"{first} {near_miss(rng, last)}"
            if names.add(candidate):
                person_names.append(candidate)
                look_alikes[candidate] = original
                continue
        person_names.append(
            _unique(
                names, lambda: f"{syllable_word(rng, 2)} {syllable_word(rng, rng.choice((2, 3)))}"
            )
        )

    company_names: list[str] = []
    for _ in range(n_companies):
        if company_names and rng.random() < 0.25:
            original = rng.choice(company_names)
            candidate = f"{original.rsplit(' ', 1)[0]} {rng.choice(_COMPANY_SUFFIXES)}"
            if names.add(candidate):
                company_names.append(candidate)
                look_alikes[candidate] = original
                continue
        company_names.append(
            _unique(
                names,
                lambda: f"{syllable_word(rng, rng.choice((2, 3)))} {rng.choice(_COMPANY_SUFFIXES)}",
            )
        )

    product_names: list[str] = []
    for _ in range(n_products):
        if product_names and rng.random() < 0.35:
            original = rng.choice(product_names)
            candidate = f"{original.rsplit(' ', 1)[0]} {rng.choice(_PRODUCT_SUFFIXES)}"
            if names.add(candidate):
                product_names.append(candidate)
                look_alikes[candidate] = original
                continue
        product_names.append(
            _unique(
                names,
                lambda: f"{syllable_word(rng, rng.choice((2, 3)))} {rng.choice(_PRODUCT_SUFFIXES)}",
            )
        )

    cities = {
        name: _City(
            name, rng.choice(countries), rng.randint(1100, 1900), rng.randint(20, 2000) * 1000
        )
        for name in city_names
    }
    people: dict[str, _Person] = {}
    for name in person_names:
        born_in = rng.choice(city_names)
        moved = rng.choice([c for c in city_names if c != born_in]) if rng.random() < 0.5 else None
        people[name] = _Person(
            name, born_in, rng.randint(1900, 1975), rng.choice(PROFESSIONS), moved
        )

    for city, mayor in zip(city_names, rng.sample(person_names, len(city_names)), strict=True):
        cities[city].mayor = mayor  # there are always more people than cities
        people[mayor].mayor_of = city

    founders = rng.sample(person_names, min(len(person_names), len(company_names)))
    companies: dict[str, _Company] = {}
    for index, name in enumerate(company_names):
        founder = people[founders[index % len(founders)]]
        hq = rng.choice(city_names)
        office = rng.choice([c for c in city_names if c != hq]) if rng.random() < 0.5 else None
        year = min(2020, founder.born_year + rng.randint(22, 55))
        companies[name] = _Company(name, founder.name, year, hq, rng.choice(INDUSTRIES), office)
        founder.founded.append(name)
    for person in people.values():
        candidates = [c for c in company_names if companies[c].founder != person.name]
        if candidates and rng.random() < 0.3:
            person.invested_in = rng.choice(candidates)

    products: dict[str, _Product] = {}
    for name in product_names:
        maker = companies[rng.choice(company_names)]
        if products and rng.random() < 0.3:  # a look-alike in category and year
            twin = rng.choice(list(products.values()))
            category, year = twin.category, twin.launch_year
        else:
            category, year = (
                rng.choice(CATEGORIES),
                min(2024, maker.founded_year + rng.randint(1, 35)),
            )
        others = [c for c in company_names if c != maker.name]
        distributor = rng.choice(others) if others and rng.random() < 0.5 else None
        products[name] = _Product(name, maker.name, year, category, distributor)
        maker.products.append(name)
    return _World(people, companies, products, cities, look_alikes)


def _facts(world: _World) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per entity name: the (relation, slots) facts its document states."""
    facts: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for p in world.products.values():
        facts[p.name] = [
            ("maker", {"company": p.maker}),
            ("launch_year", {"year": p.launch_year}),
            ("category", {"category": p.category}),
        ]
        if p.distributor:
            facts[p.name].append(("distributor", {"company": p.distributor}))
    for c in world.companies.values():
        facts[c.name] = [
            ("founder", {"person": c.founder, "year": c.founded_year}),
            ("hq", {"city": c.hq}),
            ("industry", {"industry": c.industry}),
            *[("makes", {"product": product}) for product in c.products],
        ]
        if c.office:
            facts[c.name].append(("office", {"city": c.office}))
    for person in world.people.values():
        facts[person.name] = [
            ("born_in", {"city": person.born_in}),
            ("born_year", {"year": person.born_year}),
            ("profession", {"profession": person.profession}),
            *[
                ("founded", {"company": c, "year": world.companies[c].founded_year})
                for c in person.founded
            ],
        ]
        if person.moved_to:
            facts[person.name].append(("moved_to", {"city": person.moved_to}))
        if person.invested_in:
            facts[person.name].append(("investor", {"company": person.invested_in}))
        if person.mayor_of:
            facts[person.name].append(("mayor_of", {"city": person.mayor_of}))
    for city in world.cities.values():
        facts[city.name] = [
            ("country", {"country": city.country}),
            ("mayor", {"person": city.mayor}),
            ("city_founded", {"year": city.founded_year}),
            ("population", {"population": f"{city.population:,}"}),
        ]
    for name, original in world.look_alikes.items():
        facts[name].append(("not_confused", {"other": original}))
    return facts


def _documents(rng: random.Random, world: _World, target_chars: int) -> list[str]:
    """One document per entity, in random order, filled with neutral prose so that all
    documents together are ``target_chars`` long (within one sentence)."""
    facts = _facts(world)
    order = sorted(facts)
    rng.shuffle(order)
    docs: list[str] = []
    produced = 0
    for index, name in enumerate(order):
        sentences = [rng.choice(FACTS[rel]).format(s=name, **slots) for rel, slots in facts[name]]
        goal = (target_chars - produced) / (len(order) - index)
        title = f"Title: {name}\n\n"
        length = len(title) + sum(len(s) + 1 for s in sentences)
        while True:
            filler = _A_BEFORE_VOWEL.sub(
                r"\1n ",
                rng.choice(_FILLERS).format(
                    s=name,
                    adj=rng.choice(ADJECTIVES),
                    adj2=rng.choice(ADJECTIVES),
                    noun=rng.choice(NOUNS),
                    noun2=rng.choice(NOUNS),
                ),
            )
            if length + len(filler) + 1 - goal > goal - length:
                break
            sentences.insert(rng.randrange(len(sentences) + 1), filler)
            length += len(filler) + 1
        doc = title + _paragraphs(rng, sentences)
        docs.append(doc)
        produced += len(doc)
    return docs


def _paragraphs(rng: random.Random, sentences: list[str]) -> str:
    out: list[str] = []
    for index, sentence in enumerate(sentences):
        out.append(sentence)
        if index < len(sentences) - 1:
            out.append("\n" if rng.random() < 0.15 else " ")
    return "".join(out)


# --- questions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Question:
    text: str
    gold: str
    hops: list[list[str]]  # [relation, subject, object] along the reasoning chain
    params: dict[str, str]


def _q_founder_birth_city(rng: random.Random, w: _World) -> _Question | None:
    product = w.products[rng.choice(sorted(w.products))]
    company = w.companies[product.maker]
    founder = w.people[company.founder]
    return _Question(
        f"In which city was the founder of the company that makes {product.name} born?",
        founder.born_in,
        [
            ["maker", product.name, company.name],
            ["founder", company.name, founder.name],
            ["born_in", founder.name, founder.born_in],
        ],
        {"product": product.name},
    )


def _q_product_founder(rng: random.Random, w: _World) -> _Question | None:
    product = w.products[rng.choice(sorted(w.products))]
    company = w.companies[product.maker]
    return _Question(
        f"Who founded the company that makes {product.name}?",
        company.founder,
        [["maker", product.name, company.name], ["founder", company.name, company.founder]],
        {"product": product.name},
    )


def _q_hq_mayor(rng: random.Random, w: _World) -> _Question | None:
    product = w.products[rng.choice(sorted(w.products))]
    company = w.companies[product.maker]
    city = w.cities[company.hq]
    return _Question(
        f"Who is the current mayor of the city where the company that makes {product.name} "
        "is headquartered?",
        city.mayor,
        [
            ["maker", product.name, company.name],
            ["hq", company.name, city.name],
            ["mayor", city.name, city.mayor],
        ],
        {"product": product.name},
    )


def _q_founder_birth_year(rng: random.Random, w: _World) -> _Question | None:
    company = w.companies[rng.choice(sorted(w.companies))]
    founder = w.people[company.founder]
    return _Question(
        f"In what year was the founder of {company.name} born?",
        str(founder.born_year),
        [
            ["founder", company.name, founder.name],
            ["born_year", founder.name, str(founder.born_year)],
        ],
        {"company": company.name},
    )


def _q_maker_country(rng: random.Random, w: _World) -> _Question | None:
    product = w.products[rng.choice(sorted(w.products))]
    company = w.companies[product.maker]
    city = w.cities[company.hq]
    return _Question(
        f"In which country is the company that makes {product.name} headquartered?",
        city.country,
        [
            ["maker", product.name, company.name],
            ["hq", company.name, city.name],
            ["country", city.name, city.country],
        ],
        {"product": product.name},
    )


def _q_birth_city_mayor(rng: random.Random, w: _World) -> _Question | None:
    person = w.people[rng.choice(sorted(w.people))]
    city = w.cities[person.born_in]
    return _Question(
        f"Who is the current mayor of the city where {person.name} was born?",
        city.mayor,
        [["born_in", person.name, city.name], ["mayor", city.name, city.mayor]],
        {"person": person.name},
    )


def _q_product_by_constraints(rng: random.Random, w: _World) -> _Question | None:
    product = w.products[rng.choice(sorted(w.products))]
    company = w.companies[product.maker]
    city = w.people[company.founder].born_in
    matches = [
        p
        for p in w.products.values()
        if p.category == product.category
        and p.launch_year == product.launch_year
        and w.people[w.companies[p.maker].founder].born_in == city
    ]
    if len(matches) != 1:
        return None
    return _Question(
        f"Which {product.category} was first released in {product.launch_year} by a company "
        f"whose founder was born in {city}?",
        product.name,
        [
            ["maker", product.name, company.name],
            ["founder", company.name, company.founder],
            ["born_in", company.founder, city],
        ],
        {"category": product.category, "year": str(product.launch_year), "city": city},
    )


def _q_company_by_constraints(rng: random.Random, w: _World) -> _Question | None:
    company = w.companies[rng.choice(sorted(w.companies))]
    natives = sorted(p.name for p in w.people.values() if p.born_in == company.hq)
    if not natives:
        return None
    person = rng.choice(natives)
    matches = [
        c
        for c in w.companies.values()
        if c.hq == company.hq and c.founded_year == company.founded_year
    ]
    if len(matches) != 1:
        return None
    return _Question(
        f"Which company, founded in {company.founded_year}, is headquartered in the city where "
        f"{person} was born?",
        company.name,
        [["born_in", person, company.hq], ["hq", company.name, company.hq]],
        {"person": person, "year": str(company.founded_year)},
    )


QUESTIONS: dict[str, Callable[[random.Random, _World], _Question | None]] = {
    "founder_birth_city": _q_founder_birth_city,
    "product_founder": _q_product_founder,
    "hq_mayor": _q_hq_mayor,
    "founder_birth_year": _q_founder_birth_year,
    "maker_country": _q_maker_country,
    "product_by_constraints": _q_product_by_constraints,
    "birth_city_mayor": _q_birth_city_mayor,
    "company_by_constraints": _q_company_by_constraints,
}
QUESTION_KINDS: tuple[str, ...] = tuple(QUESTIONS)

_INSTRUCTION = (
    " The documents describe a fictional world: answer from them only. Give the name "
    "(or year) alone as your final answer."
)


def _evidence_spans(docs: list[str], hops: list[list[str]]) -> list[list[int]]:
    """``[doc index, 0, len(doc)]`` for each document that states a hop's fact (the hop's
    subject's document), in hop order: the gold locations citations are scored against."""
    by_title = {doc.split("\n", 1)[0].removeprefix("Title: "): i for i, doc in enumerate(docs)}
    indexes = dict.fromkeys(by_title[subject] for _, subject, _ in hops)
    return [[i, 0, len(docs[i])] for i in indexes]


class BrowseCompLiteTask:
    """Multi-hop questions over ``list[str]`` documents about a generated fictional world.

    The corpus has ``clamp(length_tokens // 250, 8, max_docs)`` documents of equal
    length (about 250 tokens each up to 250K tokens; beyond, 1,000 longer ones).
    Item ``i`` asks a question of kind ``QUESTION_KINDS[i % 8]`` (the next kind if
    that one has no unique answer in the generated world).
    """

    def __init__(
        self,
        kinds: tuple[str, ...] = QUESTION_KINDS,
        *,
        max_docs: int = 1_000,
        tokens_per_doc: int = 250,
        name: str = "browsecomp-lite",
    ) -> None:
        unknown = [k for k in kinds if k not in QUESTIONS]
        if unknown or not kinds:
            raise ValueError(f"unknown question kinds {unknown}; choose from {QUESTION_KINDS}")
        self.name = name
        #: bump when the items for the same (n, length, seed) change
        self.version = "1"
        self.kinds = kinds
        self.max_docs = max_docs
        self.tokens_per_doc = tokens_per_doc

    def generate(self, n: int, length_tokens: int, seed: int) -> list[Item]:
        check_args(n, length_tokens)
        return [self._item(i, length_tokens, seed) for i in range(n)]

    def score(self, prediction: str, gold: Any) -> float:
        return contains_score(prediction, gold)

    def _item(self, index: int, length_tokens: int, seed: int) -> Item:
        rng = item_rng(self.name, length_tokens, seed, index)
        n_docs = max(8, min(self.max_docs, length_tokens // self.tokens_per_doc))
        world = _build_world(rng, n_docs)
        question = None
        for step in range(len(self.kinds) * 8):
            kind = self.kinds[(index + step) % len(self.kinds)]
            question = QUESTIONS[kind](rng, world)
            if question is not None:
                break
        if question is None:  # pragma: no cover - no kind had a unique answer, repeatedly
            raise RuntimeError("could not build a BrowseComp-lite question with a unique answer")
        docs = _documents(rng, world, length_tokens * CHARS_PER_TOKEN)
        return Item(
            id=item_id(self.name, length_tokens, seed, index),
            task=self.name,
            context=docs,
            query=question.text + _INSTRUCTION,
            gold=question.gold,
            length_tokens=length_tokens,
            meta={
                "kind": kind,
                "hops": question.hops,
                "params": question.params,
                "n_docs": len(docs),
                "gold_spans": _evidence_spans(docs, question.hops),
            },
        )
