"""The import graph of recursa: no cycles, and no module imports one from a higher layer.

Every module under ``recursa/`` is parsed with :mod:`ast`; every import counts
(function-level ones too), except those under ``if TYPE_CHECKING:``. Relative
imports are resolved, and ``from . import x`` counts as importing ``recursa.x``
when ``x`` is a module. An import names the most specific module it reaches:
``from recursa.repl.runtime import Image`` is an edge to ``recursa.repl.runtime``
(not to the package ``recursa.repl``, whose ``__init__`` Python also runs).
Imports by string (``importlib.import_module("...")``) are not seen.

:data:`LAYERS` places every module, low to high; a module may import its own layer
or a lower one, and a module placed nowhere fails the test, so that a new module
gets its place on purpose. :data:`INDEPENDENT` names groups within one layer that
must not import each other. The checker is tested on a small fake package below.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "recursa"

#: Layer number -> modules. ``pkg.*`` maps the package and every module under it; a
#: name may be listed before its module exists.
LAYERS: dict[int, tuple[str, ...]] = {
    0: (  # foundation: data, errors, settings; imports nothing above itself
        "recursa.errors",
        "recursa.budget",
        "recursa.settings",
        "recursa.sampling",
        "recursa.plugins",
        "recursa.trace",
        "recursa.events",
        "recursa._version",
        "recursa.context",
        "recursa.parsing",
        "recursa.prompts",
        "recursa.prompts_compact",
        "recursa.output",
        "recursa.tools",
        "recursa.result",
        "recursa.guards",
        "recursa.citations",  # checks citations against a context: pure, on the host
        "recursa.config",  # the config file and the runs directory: where, what it may say
        "recursa.runs",  # the log of runs: each trace summarised from its two ends
        "recursa.pack",  # many documents into one file a sandbox maps
        "recursa.sources.*",  # the user's files: discovery, text, documents, records
        # The REPL's contract: the Sandbox protocol and its data types, the host <->
        # REPL messages, and the REPL runtime (the last two stdlib-only, copied into
        # sandboxes). Prompts and tools describe the REPL with them.
        "recursa.repl.base",
        "recursa.repl.protocol",
        "recursa.repl.runtime",
    ),
    1: (  # parts: model backends, sandboxes, recording and resuming runs
        "recursa.models.*",
        "recursa.repl.*",
        "recursa.recording",
        "recursa.resume",
        "recursa.subcall_tools",  # the function-calling loop of a sub-call given tools
    ),
    2: ("recursa.engine.*",),  # the engine: runs a tree of nodes over the parts
    3: (  # the facade: what `from recursa import ...` offers
        "recursa.rlm",
        "recursa.session",
        "recursa.replay",
        "recursa",
        "recursa.notebook",  # a run's live progress in a notebook cell; a trace as HTML
        # the live progress display: the CLI draws it, and the facade in a notebook
        "recursa.progress",
    ),
    4: (  # surfaces over the facade
        "recursa.cli",
        "recursa.trace_export",  # traces as training data (chat JSONL)
        "recursa.cli_options",
        "recursa.cli_context",
        "recursa.cache_cli",
        "recursa.models_cli",
        "recursa.config_cli",
        "recursa.runs_cli",
        "recursa.mcp_server",
        "recursa.serve.*",
        "recursa.bench.*",
        "recursa.batch",  # one RLM run per line of a JOBS.jsonl file, resumable
        "recursa.batch_cli",
        "recursa.jobrunner",  # what bench and batch share: results file, progress, Ray
        "recursa.demo",
        "recursa.viewer.*",
        "recursa.otel",
        "recursa.resume_hint",  # the --resume command printed when a run is interrupted
        "recursa.testing",
        "recursa.__main__",
    ),
}

#: Groups within one layer that must not import each other.
INDEPENDENT: tuple[tuple[str, str], ...] = (("recursa.models.*", "recursa.repl.*"),)

#: (importer, imported) edges accepted despite the rules, each with its reason. Empty
#: on purpose: add one only where no better structure exists, and say why.
ALLOWED: dict[tuple[str, str], str] = {}


# -- the checker -----------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    path: Path

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root.parent)}:{self.line}"


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted name: file}`` for every module of the package at ``root``."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth, less the bodies of ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _reached(name: str, modules: Mapping[str, Path]) -> str | None:
    """The most specific module ``name`` (a dotted import path) reaches, if ours."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> Iterator[Import]:
    """The package modules that ``module`` imports, one :class:`Import` per statement
    and target."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _runtime_imports(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                sub = f"{prefix}.{alias.name}"
                targets.append(sub if sub in modules else prefix)
        reached = {_reached(target, modules) for target in targets}
        for name in sorted(r for r in reached if r is not None and r != module):
            yield Import(module, name, node.lineno, path)


def import_graph(root: Path) -> dict[str, list[Import]]:
    """``{module: [its imports of other package modules]}`` for the package at ``root``."""
    modules = module_names(root)
    return {name: list(imports_of(name, path, modules)) for name, path in modules.items()}


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        package = pattern[:-2]
        return module == package or module.startswith(package + ".")
    return module == pattern


def layer_of(module: str, layers: Mapping[int, Sequence[str]]) -> int | None:
    """The layer of the most specific entry that names ``module``: its own name, else
    the innermost package listed as ``pkg.*``."""
    found = [
        (not p.endswith(".*"), len(p), layer)
        for layer, patterns in layers.items()
        for p in patterns
        if _matches(module, p)
    ]
    return max(found)[2] if found else None


def find_cycles(graph: Mapping[str, Sequence[Import]]) -> list[list[str]]:
    """Import cycles, each as a path ``[a, b, ..., a]``: for every import that closes a
    loop, the shortest loop through it (each loop once)."""
    edges = {m: sorted({i.imported for i in imports}) for m, imports in graph.items()}

    def shortest_path(start: str, goal: str) -> list[str] | None:
        previous: dict[str, str | None] = {start: None}
        queue = [start]
        for node in queue:
            if node == goal:
                path = [node]
                while (back := previous[path[-1]]) is not None:
                    path.append(back)
                return path[::-1]
            for nxt in edges.get(node, []):
                if nxt not in previous:
                    previous[nxt] = node
                    queue.append(nxt)
        return None

    seen: set[tuple[str, ...]] = set()
    cycles: list[list[str]] = []
    for a in sorted(edges):
        for b in edges[a]:
            back = shortest_path(b, a)
            if back is None:
                continue
            loop = [a, *back]  # a -> b -> ... -> a
            body = loop[:-1]
            turn = body.index(min(body))
            key = tuple(body[turn:] + body[:turn])
            if key not in seen:
                seen.add(key)
                cycles.append([*key, key[0]])
    return cycles


def layer_violations(
    graph: Mapping[str, Sequence[Import]],
    root: Path,
    layers: Mapping[int, Sequence[str]],
    independent: Iterable[tuple[str, str]] = (),
    allowed: Mapping[tuple[str, str], str] | None = None,
) -> list[str]:
    """One line per module without a layer, upward import, or import across groups
    that must stay independent."""
    allowed = allowed or {}
    problems: list[str] = []
    for module in sorted(graph):
        if layer_of(module, layers) is None:
            problems.append(f"{module}: no layer; assign it a layer in tests/test_architecture.py")
    for module in sorted(graph):
        low = layer_of(module, layers)
        for imp in graph[module]:
            if (imp.importer, imp.imported) in allowed:
                continue
            high = layer_of(imp.imported, layers)
            if low is None or high is None:
                continue
            if high > low:
                problems.append(
                    f"{imp.where(root)}: {module} (layer {low}) imports {imp.imported} "
                    f"(layer {high})"
                )
            for left, right in independent:
                for one, other in ((left, right), (right, left)):
                    if _matches(module, one) and _matches(imp.imported, other):
                        problems.append(
                            f"{imp.where(root)}: {module} imports {imp.imported}, but "
                            f"{left} and {right} must not import each other"
                        )
    return problems


def cycle_report(graph: Mapping[str, Sequence[Import]], root: Path) -> list[str]:
    """One line per import cycle: the path, and where each of its imports is."""
    lines: list[str] = []
    for cycle in find_cycles(graph):
        steps = []
        for a, b in itertools.pairwise(cycle):
            where = next(i.where(root) for i in graph[a] if i.imported == b)
            steps.append(f"{a} -> {b} ({where})")
        lines.append(" -> ".join(cycle) + "\n    " + "\n    ".join(steps))
    return lines


# -- the package ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return import_graph(ROOT)


def test_recursa_has_no_import_cycles(graph: dict[str, list[Import]]) -> None:
    cycles = cycle_report(graph, ROOT)
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(cycles)


def test_recursa_imports_only_its_own_layer_or_lower(graph: dict[str, list[Import]]) -> None:
    problems = layer_violations(graph, ROOT, LAYERS, INDEPENDENT, ALLOWED)
    assert not problems, f"{len(problems)} layering problem(s):\n" + "\n".join(problems)


def test_the_allowlist_holds_only_imports_that_exist(graph: dict[str, list[Import]]) -> None:
    edges = {(i.importer, i.imported) for imports in graph.values() for i in imports}
    assert not set(ALLOWED) - edges, "stale ALLOWED entries: remove them"


# -- the checker itself, on a small fake package --------------------------------------
def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


FAKE_LAYERS = {0: ("pkg.base", "pkg.util.*"), 1: ("pkg.parts.*", "pkg.other.*"), 2: ("pkg",)}


def test_the_checker_finds_cycles_upward_imports_and_unplaced_modules(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "from . import base\nfrom .parts import a\n",
            "base.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pkg.parts import a  # not counted\n"
                "else:\n"
                "    import os\n"
                "def late():\n"
                "    from .parts.b import thing  # function-level: counted, upward\n"
            ),
            "util/__init__.py": "",
            "util/x.py": "from .. import base\nfrom . import y\n",  # util.x -> base, util.y
            "util/y.py": "import pkg.util.x\n",  # cycle util.x <-> util.y
            "parts/__init__.py": "",
            "parts/a.py": "from . import b\nfrom ..other import c\n",
            "parts/b.py": "from .a import name\nimport json\nimport pkg\n",  # cycle a<->b, upward
            "other/__init__.py": "",
            "other/c.py": "from pkg.parts.a import name\n",
            "stray.py": "import pkg.base\n",
        },
    )
    graph = import_graph(pkg)
    assert sorted(graph) == [
        "pkg",
        "pkg.base",
        "pkg.other",
        "pkg.other.c",
        "pkg.parts",
        "pkg.parts.a",
        "pkg.parts.b",
        "pkg.stray",
        "pkg.util",
        "pkg.util.x",
        "pkg.util.y",
    ]
    assert {m: sorted({i.imported for i in imports}) for m, imports in graph.items()} == {
        "pkg": ["pkg.base", "pkg.parts.a"],
        "pkg.base": ["pkg.parts.b"],
        "pkg.other": [],
        "pkg.other.c": ["pkg.parts.a"],
        "pkg.parts": [],
        "pkg.parts.a": ["pkg.other.c", "pkg.parts.b"],
        "pkg.parts.b": ["pkg", "pkg.parts.a"],
        "pkg.stray": ["pkg.base"],
        "pkg.util": [],
        "pkg.util.x": ["pkg.base", "pkg.util.y"],
        "pkg.util.y": ["pkg.util.x"],
    }
    cycles = {tuple(c) for c in find_cycles(graph)}
    assert cycles == {
        ("pkg", "pkg.base", "pkg.parts.b", "pkg"),
        ("pkg", "pkg.parts.a", "pkg.parts.b", "pkg"),
        ("pkg.other.c", "pkg.parts.a", "pkg.other.c"),
        ("pkg.parts.a", "pkg.parts.b", "pkg.parts.a"),
        ("pkg.util.x", "pkg.util.y", "pkg.util.x"),
    }
    report = cycle_report(graph, pkg)
    assert "pkg.util.x -> pkg.util.y (pkg/util/x.py:2)" in "\n".join(report)

    problems = layer_violations(graph, pkg, FAKE_LAYERS, [("pkg.parts.*", "pkg.other.*")])
    assert problems == [
        "pkg.stray: no layer; assign it a layer in tests/test_architecture.py",
        "pkg/base.py:7: pkg.base (layer 0) imports pkg.parts.b (layer 1)",
        "pkg/other/c.py:1: pkg.other.c imports pkg.parts.a, but pkg.parts.* and pkg.other.* "
        "must not import each other",
        "pkg/parts/a.py:2: pkg.parts.a imports pkg.other.c, but pkg.parts.* and pkg.other.* "
        "must not import each other",
        "pkg/parts/b.py:3: pkg.parts.b (layer 1) imports pkg (layer 2)",
    ]
    allowed = {("pkg.base", "pkg.parts.b"): "reason"}
    assert "pkg/base.py:7" not in "\n".join(layer_violations(graph, pkg, FAKE_LAYERS, [], allowed))


def test_the_most_specific_entry_places_a_module() -> None:
    layers = {0: ("pkg.parts.low",), 1: ("pkg.parts.*",), 2: ("pkg.*",)}
    assert layer_of("pkg.parts.low", layers) == 0
    assert layer_of("pkg.parts.other", layers) == 1
    assert layer_of("pkg.parts", layers) == 1
    assert layer_of("pkg.top", layers) == 2
    assert layer_of("elsewhere", layers) is None


def test_the_checker_passes_a_clean_package(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "from .parts import a\n",
            "base.py": "import os\n",
            "parts/__init__.py": "",
            "parts/a.py": "from .. import base\nfrom . import b\n",
            "parts/b.py": "from pkg.base import thing\n",
        },
    )
    graph = import_graph(pkg)
    assert find_cycles(graph) == []
    assert layer_violations(graph, pkg, FAKE_LAYERS) == []
    assert {i.imported for i in graph["pkg.parts.a"]} == {"pkg.base", "pkg.parts.b"}
