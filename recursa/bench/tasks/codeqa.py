"""CodeQA-lite: multiple-choice questions about a code repository.

LongBench-v2's Code Repository Understanding split (the RLM paper's "CodeQA")
asks 4-way multiple-choice questions about a whole repository. Here the
repository is this Python's own standard library (its ``.py`` files, read from
``sysconfig.get_paths()["stdlib"]``, so nothing is downloaded), and the
questions are built from facts in the files' syntax trees: which function takes
a parameter, how many methods a class defines, which module defines a function,
which method belongs to a class, which class subclasses a base.

The context is a ``list[str]`` of files, each ``"# file: <path>\\n<source>"``.
Items depend on the Python version (its stdlib is the corpus); ``meta`` records it.
"""

from __future__ import annotations

import ast
import functools
import os
import random
import re
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ..scoring import choice_score
from ..tokens import CHARS_PER_TOKEN
from .base import Item, check_args, item_id, item_rng

__all__ = ["FILE_HEADER", "QUESTION_KINDS", "CodeQALiteTask", "stdlib_files"]

FILE_HEADER = "# file: {path}\n"
LETTERS = "ABCD"

_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "pydoc_data"}
)


@functools.cache
def stdlib_files() -> tuple[str, ...]:
    """Paths (relative to the stdlib root, ``/``-separated, sorted) of the stdlib's ``.py``
    files, without tests, bundled third-party packages and generated data."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                found.append((Path(folder) / name).relative_to(root).as_posix())
    return tuple(sorted(found))


@functools.lru_cache(maxsize=4096)
def _document(path: str) -> str:
    source = (Path(sysconfig.get_paths()["stdlib"]) / path).read_text("utf-8", errors="replace")
    return FILE_HEADER.format(path=path) + source


@functools.cache
def _total_chars() -> int:
    return sum(len(_document(p)) for p in stdlib_files())


# --- facts from syntax trees ----------------------------------------------------------------

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class _ClassInfo:
    name: str
    methods: tuple[str, ...]  # every def directly in the body, in order (may repeat)
    bases: tuple[str, ...]


@dataclass(frozen=True)
class _ModuleInfo:
    path: str
    functions: dict[str, frozenset[str]]  # qualname -> parameter names (defined once only)
    top_functions: tuple[str, ...]
    classes: dict[str, _ClassInfo]  # top-level classes defined once


def _params(node: _FunctionNode) -> frozenset[str]:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return frozenset(n for n in names if n not in ("self", "cls"))


@functools.lru_cache(maxsize=1024)
def _module_info(path: str) -> _ModuleInfo | None:
    try:
        tree = ast.parse(_document(path))
    except (SyntaxError, ValueError):
        return None
    functions: dict[str, frozenset[str]] = {}
    seen: dict[str, int] = {}
    top: list[str] = []
    classes: dict[str, _ClassInfo] = {}
    class_seen: dict[str, int] = {}

    def add(qualname: str, node: _FunctionNode) -> None:
        seen[qualname] = seen.get(qualname, 0) + 1
        functions[qualname] = _params(node)

    for node in tree.body:
        if isinstance(node, _FunctionNode):
            add(node.name, node)
            top.append(node.name)
        elif isinstance(node, ast.ClassDef):
            class_seen[node.name] = class_seen.get(node.name, 0) + 1
            methods = [n for n in node.body if isinstance(n, _FunctionNode)]
            for method in methods:
                add(f"{node.name}.{method.name}", method)
            classes[node.name] = _ClassInfo(
                node.name,
                tuple(m.name for m in methods),
                tuple(ast.unparse(b) for b in node.bases),
            )
    return _ModuleInfo(
        path,
        {q: p for q, p in functions.items() if seen[q] == 1},
        tuple(f for f in top if seen[f] == 1),
        {c: info for c, info in classes.items() if class_seen[c] == 1},
    )


# --- questions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Question:
    text: str
    answer: str
    distractors: tuple[str, ...]
    params: dict[str, Any]


@dataclass(frozen=True)
class _Repo:
    paths: tuple[str, ...]  # complete files in the context
    texts: dict[str, str]


def _q_param(rng: random.Random, repo: _Repo, info: _ModuleInfo) -> _Question | None:
    owners: dict[str, list[str]] = {}
    for qualname, params in info.functions.items():
        for param in params:
            owners.setdefault(param, []).append(qualname)
    candidates = sorted(p for p, fs in owners.items() if len(fs) == 1)
    rng.shuffle(candidates)
    for param in candidates:
        gold = owners[param][0]
        others = sorted(q for q, ps in info.functions.items() if param not in ps and q != gold)
        if len(others) >= 3:
            return _Question(
                f"Which function or method in `{info.path}` takes a parameter named `{param}`?",
                gold,
                tuple(rng.sample(others, 3)),
                {"path": info.path, "param": param},
            )
    return None


def _q_method_count(rng: random.Random, repo: _Repo, info: _ModuleInfo) -> _Question | None:
    classes = sorted(c for c, ci in info.classes.items() if ci.methods)
    if not classes:
        return None
    cls = info.classes[rng.choice(classes)]
    count = len(cls.methods)
    near = [count + d for d in (-3, -2, -1, 1, 2, 3) if count + d >= 0]
    return _Question(
        f"How many methods does class `{cls.name}` in `{info.path}` define directly in its "
        "class body (count every `def` statement directly in the body, including dunder "
        "methods, properties and repeated names)?",
        str(count),
        tuple(str(n) for n in rng.sample(near, 3)),
        {"path": info.path, "class": cls.name},
    )


def _defines_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", re.MULTILINE)


def _q_defines(rng: random.Random, repo: _Repo, info: _ModuleInfo) -> _Question | None:
    if len(repo.paths) < 4:
        return None
    names = list(info.top_functions)
    rng.shuffle(names)
    for name in names[:10]:
        pattern = _defines_pattern(name)
        others = [p for p in repo.paths if p != info.path and not pattern.search(repo.texts[p])]
        if len(others) == len(repo.paths) - 1 and len(others) >= 3:
            return _Question(
                f"Which file of the repository defines a function named `{name}`?",
                info.path,
                tuple(rng.sample(others, 3)),
                {"function": name},
            )
    return None


def _q_method_of(rng: random.Random, repo: _Repo, info: _ModuleInfo) -> _Question | None:
    classes = sorted(c for c, ci in info.classes.items() if ci.methods)
    if not classes:
        return None
    cls = info.classes[rng.choice(classes)]
    own = set(cls.methods)
    pool = sorted({m for c in info.classes.values() if c.name != cls.name for m in c.methods} - own)
    if len(pool) < 3:
        for path in rng.sample(repo.paths, min(len(repo.paths), 20)):
            other = _module_info(path)
            if other is not None:
                pool = sorted(
                    set(pool) | ({m for c in other.classes.values() for m in c.methods} - own)
                )
            if len(pool) >= 3:
                break
    if len(pool) < 3:
        return None
    return _Question(
        f"Which of these is the name of a method defined directly in class `{cls.name}` of "
        f"`{info.path}`?",
        rng.choice(sorted(own)),
        tuple(rng.sample(pool, 3)),
        {"path": info.path, "class": cls.name},
    )


def _q_base_class(rng: random.Random, repo: _Repo, info: _ModuleInfo) -> _Question | None:
    subclasses: dict[str, list[str]] = {}
    for cls in info.classes.values():
        for base in set(cls.bases):
            subclasses.setdefault(base, []).append(cls.name)
    bases = sorted(  # skip giveaways such as `class IncrementalEncoder(codecs.IncrementalEncoder)`
        b for b, cs in subclasses.items() if len(cs) == 1 and b.rsplit(".", 1)[-1] != cs[0]
    )
    rng.shuffle(bases)
    for base in bases:
        gold = subclasses[base][0]
        others = sorted(c for c, ci in info.classes.items() if base not in ci.bases and c != gold)
        if len(others) >= 3:
            return _Question(
                f"Which class in `{info.path}` lists `{base}` among its direct base classes?",
                gold,
                tuple(rng.sample(others, 3)),
                {"path": info.path, "base": base},
            )
    return None


QUESTIONS: dict[str, Callable[[random.Random, _Repo, _ModuleInfo], _Question | None]] = {
    "param": _q_param,
    "method_count": _q_method_count,
    "defines": _q_defines,
    "method_of": _q_method_of,
    "base_class": _q_base_class,
}
QUESTION_KINDS: tuple[str, ...] = tuple(QUESTIONS)


class CodeQALiteTask:
    """4-way multiple choice about a repository made of this Python's stdlib files.

    Files are taken in sorted order from a seeded starting point, skipping any
    that would overshoot the requested length, until the length is reached
    (the last file may be cut at a line boundary to land within 5%). Item
    ``i`` asks a question of kind ``QUESTION_KINDS[i % 5]`` (or the next kind
    that has an unambiguous answer). Gold is the letter ``A``-``D``.
    """

    def __init__(self, kinds: Sequence[str] = QUESTION_KINDS, *, name: str = "codeqa-lite") -> None:
        unknown = [k for k in kinds if k not in QUESTIONS]
        if unknown or not kinds:
            raise ValueError(f"unknown question kinds {unknown}; choose from {QUESTION_KINDS}")
        self.name = name
        #: bump when the items for the same (n, length, seed) change; the stdlib is the corpus
        self.version = f"1+python-{sys.version_info.major}.{sys.version_info.minor}"
        self.kinds = tuple(kinds)

    def generate(self, n: int, length_tokens: int, seed: int) -> list[Item]:
        check_args(n, length_tokens)
        return [self._item(i, length_tokens, seed) for i in range(n)]

    def score(self, prediction: str, gold: Any) -> float:
        return choice_score(prediction, gold)

    def max_length_tokens(self) -> int:
        """The longest context this Python's standard library gives (checked before a
        bench starts)."""
        return int(0.9 * _total_chars()) // CHARS_PER_TOKEN

    def _item(self, index: int, length_tokens: int, seed: int) -> Item:
        rng = item_rng(self.name, length_tokens, seed, index)
        target = length_tokens * CHARS_PER_TOKEN
        if length_tokens > (limit := self.max_length_tokens()):
            raise ConfigError(
                f"codeqa-lite can build at most about {limit:,} tokens from this Python's "
                f"standard library; {length_tokens:,} were asked for"
            )
        for _attempt in range(20):
            docs, repo, truncated = _select_files(rng, target)
            built = self._question(rng, index, repo)
            if built is not None:
                break
        else:  # pragma: no cover - 20 repositories without a single question
            raise RuntimeError("could not build a CodeQA-lite question")
        kind, question = built
        choices = [question.answer, *question.distractors]
        rng.shuffle(choices)
        letter = LETTERS[choices.index(question.answer)]
        listing = "\n".join(f"{LETTERS[i]}) {choice}" for i, choice in enumerate(choices))
        query = (
            "The context is a Python code repository (files of the Python "
            f"{sys.version_info.major}.{sys.version_info.minor} standard library), given as a "
            "list of files that each start with a line '# file: <path>'. "
            f"{question.text}\n{listing}\n"
            "Answer with the letter of the correct choice, in the form 'Answer: X'."
        )
        return Item(
            id=item_id(self.name, length_tokens, seed, index),
            task=self.name,
            context=docs,
            query=query,
            gold=letter,
            length_tokens=length_tokens,
            meta={
                "kind": kind,
                "choices": choices,
                "answer": question.answer,
                **question.params,
                "n_files": len(docs),
                "truncated_file": truncated,
                "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            },
        )

    def _question(
        self, rng: random.Random, index: int, repo: _Repo
    ) -> tuple[str, _Question] | None:
        paths = list(repo.paths)
        rng.shuffle(paths)
        for step in range(len(self.kinds)):
            kind = self.kinds[(index + step) % len(self.kinds)]
            for path in paths[:40]:
                info = _module_info(path)
                if info is None:
                    continue
                question = QUESTIONS[kind](rng, repo, info)
                if question is not None and len({question.answer, *question.distractors}) == 4:
                    return kind, question
        return None


def _select_files(rng: random.Random, target: int) -> tuple[list[str], _Repo, str | None]:
    files = stdlib_files()
    start = rng.randrange(len(files))
    chosen: list[str] = []
    total = 0
    for offset in range(len(files)):
        path = files[(start + offset) % len(files)]
        size = len(_document(path))
        if total + size <= target:
            chosen.append(path)
            total += size
        if total >= 0.99 * target:
            break
    chosen.sort()
    docs = [_document(p) for p in chosen]
    truncated = None
    if total < 0.97 * target:  # top up with the head of one more file, cut at a line end
        taken = set(chosen)
        rest = [p for p in files if p not in taken]
        path = rest[rng.randrange(len(rest))]
        text = _document(path)[: target - total]
        cut = text.rfind("\n")
        docs.append(text[: cut + 1] if cut > 0 else text)
        truncated = path
    return docs, _Repo(tuple(chosen), {p: _document(p) for p in chosen}), truncated
