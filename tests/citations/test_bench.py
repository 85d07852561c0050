"""The benchmark scores citations where the gold has a location: sniah's needle. A real
RLM run (scripted model behind a real local HTTP server) cites the needle, a miss, or
nothing; the row carries precision and recall next to the answer's score."""

from __future__ import annotations

from typing import Any

import pytest

from recursa.bench.methods import MethodContext, get_method
from recursa.bench.runner import gold_spans, run_one
from recursa.bench.scoring import citation_scores
from recursa.bench.tasks.sniah import SNIAHTask
from recursa.result import Citation
from recursa.testing import ScriptedServer, http_router

FIND = (
    "m = re.search(r'special magic numbers for [\\w-]+ is: (\\d+)', context)\nneedle = m.group(0)\n"
)


def cite(verified: bool, start: int | None, end: int | None) -> Citation:
    return Citation("q", "context", start, end, verified)


def test_citation_scores() -> None:
    gold = [(100, 150)]
    assert citation_scores([], gold) == (None, 0.0)
    assert citation_scores([cite(True, 120, 130)], gold) == (1.0, 1.0)
    assert citation_scores([cite(True, 120, 130), cite(True, 0, 10)], gold) == (0.5, 1.0)
    assert citation_scores([cite(False, 120, 130)], gold) == (0.0, 0.0)  # unverified: no hit
    assert citation_scores([cite(True, 150, 160)], gold) == (0.0, 0.0)  # touching is no overlap
    assert citation_scores([cite(True, 1, 2)], []) == (None, None)


@pytest.mark.parametrize(
    ("cell", "precision", "recall"),
    [
        (FIND + "FINAL(m.group(1), cite=[needle])", 1.0, 1.0),
        (FIND + "FINAL(m.group(1), cite=[needle, context[:40], 'not there'])", 1 / 3, 1.0),
        (FIND + "FINAL(m.group(1))", None, 0.0),
    ],
)
async def test_sniah_rows_score_citations(
    cell: str, precision: float | None, recall: float
) -> None:
    task = SNIAHTask(["niah_single_1"])
    (item,) = task.generate(1, 2_000, seed=3)
    start, end = gold_spans(item)[0]
    assert item.context[start:end] == item.meta["needle"]
    with ScriptedServer(http_router(["```repl\n" + cell + "\n```"])) as server:
        ctx = MethodContext(model="openai/s", base_url=server.url, sandbox="inprocess")
        row: Any = await run_one(task, item, get_method("rlm"), ctx)
    assert row.error is None and row.score == 1.0
    assert row.citation_recall == recall
    assert row.citation_precision == (pytest.approx(precision) if precision else precision)
    assert "citation_precision" in row.to_dict()
