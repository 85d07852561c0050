"""The bench end to end against a real local OpenAI-compatible server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from recursa.bench.methods import RLMMethod, SummaryMethod
from recursa.bench.report import write_report
from recursa.bench.runner import read_results, run_bench
from recursa.bench.tasks import SNIAHTask, get_task
from recursa.testing import ScriptedServer
from tests.benchrun.script import reply
from tests.helpers import requires

MODEL = "openai/gpt-5-mini"  # priced, so costs are known; served by the scripted server
SUB_MODEL = "openai/gpt-5-nano"
METHODS = ["rlm", "base", "summary", "codeact-bm25"]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(reply) as srv:
        yield srv


def bench(server: ScriptedServer, out: Path, **kw: object) -> object:
    args: dict[str, object] = {
        "tasks": [SNIAHTask(essay_fallback=True), get_task("oolong")],
        "methods": METHODS,
        "model": MODEL,
        "sub_model": SUB_MODEL,
        "base_url": server.url,
        "lengths": ["2k"],
        "n": 2,
        "out_dir": out,
        "concurrency": 4,
        "sandbox": "inprocess",
        "progress": False,
    }
    args.update(kw)
    return run_bench(**args)  # type: ignore[arg-type]


@requires("needlehaystack", "bm25s", "matplotlib")
def test_two_tasks_four_methods_then_resume(server: ScriptedServer, tmp_path: Path) -> None:
    out = tmp_path / "results"
    summary = bench(server, out)
    assert (summary.ran, summary.skipped, summary.failed) == (16, 0, 0)  # type: ignore[attr-defined]
    rows = read_results(out / "results.jsonl")
    assert len(rows) == 16
    assert {(r.task, r.method) for r in rows} == {
        (t, m) for t in ("sniah", "oolong") for m in METHODS
    }
    by = {(r.task, r.method, r.index): r for r in rows}
    for method in METHODS:  # every method finds the needle
        for index in (0, 1):
            row = by[("sniah", method, index)]
            assert row.score == 1.0, (method, row.answer)
    for index in (0, 1):  # only the RLM labels every line and counts
        assert by[("oolong", "rlm", index)].score == 1.0
    for row in rows:
        assert row.error is None
        assert row.length == 2000 and row.model == MODEL and row.sub_model == SUB_MODEL
        assert row.calls >= 1 and row.input_tokens > 0 and row.output_tokens > 0
        assert row.cost_usd is not None and row.cost_usd > 0
        assert 0.0 <= row.score <= 1.0
    rlm_rows = [r for r in rows if r.method == "rlm"]
    assert all(r.trace and Path(r.trace).exists() for r in rlm_rows)
    assert all(r.trace is None for r in rows if r.method != "rlm")
    assert by[("sniah", "rlm", 0)].calls == 3  # two root turns and one llm_query
    assert by[("oolong", "rlm", 0)].calls > 50  # one sub-call per line
    assert by[("sniah", "summary", 0)].calls == 2  # one chunk at 2k tokens, then the answer

    files = write_report(out)
    table = files.table.read_text()
    assert "| method | sniah | oolong |" in table
    for method in METHODS:
        assert f"| {method} | " in table
    assert "| rlm | 100.0 [34.2–100.0] $" in table
    for png in (files.score_plot, files.cost_plot):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The same command again: everything is done, so not one request is made.
    requests = len(server.requests)
    again = bench(server, out)
    assert (again.ran, again.skipped) == (0, 16)  # type: ignore[attr-defined]
    assert len(server.requests) == requests
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 16


def test_resume_after_interruption_runs_only_what_is_missing(
    server: ScriptedServer, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    bench(server, out, methods=["base"], tasks=["oolong"])
    path = out / "results.jsonl"
    first, second = path.read_text().splitlines()
    path.write_text(first + "\n" + second[:25])  # the run was killed while writing line 2
    server.requests.clear()
    summary = bench(server, out, methods=["base"], tasks=["oolong"])
    assert (summary.ran, summary.skipped) == (1, 1)  # type: ignore[attr-defined]
    assert len(server.requests) == 1
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()[-1:] == "}"]
    assert sorted(r["index"] for r in rows) == [0, 1]
    assert len(read_results(path)) == 2


class Boom:
    name = "boom"

    def check(self) -> None:
        pass

    async def run(self, item: object, ctx: object) -> object:
        raise RuntimeError("kaput")


@requires("matplotlib")
def test_failures_are_rows_not_crashes(server: ScriptedServer, tmp_path: Path) -> None:
    out = tmp_path / "results"
    summary = bench(
        server,
        out,
        tasks=["oolong"],
        methods=[Boom(), "base"],
        base_url=server.url,
    )
    assert (summary.ran, summary.failed) == (4, 2)  # type: ignore[attr-defined]
    rows = read_results(out / "results.jsonl")
    boom = [r for r in rows if r.method == "boom"]
    assert [r.error for r in boom] == ["RuntimeError: kaput"] * 2
    assert all(r.score == 0.0 and r.calls == 0 for r in boom)
    table = write_report(out).table.read_text()
    assert "Failed runs: boom on oolong: 2 of 2." in table

    # Failed rows are kept on a plain rerun and run again with retry_failed.
    assert bench(server, out, tasks=["oolong"], methods=[Boom(), "base"]).ran == 0  # type: ignore[attr-defined]
    again = bench(server, out, tasks=["oolong"], methods=[Boom(), "base"], retry_failed=True)
    assert again.ran == 2  # type: ignore[attr-defined]


def test_model_errors_are_recorded_with_their_usage(tmp_path: Path) -> None:
    from recursa.testing import HTTPFailure

    def failing(body: dict[str, object]) -> str:
        messages = body["messages"]
        assert isinstance(messages, list)
        if "one chunk at a time" in str(messages[-1]["content"]):
            return "notes"
        raise HTTPFailure(400, "bad request")

    with ScriptedServer(failing) as srv:
        summary = run_bench(
            ["oolong"],
            [SummaryMethod(chunk_tokens=1_000)],
            MODEL,
            base_url=srv.url,
            lengths=["2k"],
            n=1,
            out_dir=tmp_path,
            progress=False,
        )
    assert summary.failed == 1
    (row,) = read_results(tmp_path / "results.jsonl")
    assert row.error is not None and "bad request" in row.error
    assert row.score == 0.0
    assert row.calls == 3  # two chunks summarised (and charged) before the answer failed


def test_rlm_nosub_gets_no_subcall_functions(server: ScriptedServer, tmp_path: Path) -> None:
    summary = bench(
        server,
        tmp_path,
        tasks=["oolong"],
        methods=[RLMMethod(name="rlm-nosub", max_depth=0)],
        n=1,
        max_iterations=3,
    )
    assert summary.ran == 1  # type: ignore[attr-defined]
    (row,) = read_results(tmp_path / "results.jsonl")
    assert row.method == "rlm-nosub"
    assert row.score == 0.0  # llm_batch does not exist without sub-calls
    system = server.requests[0]["messages"][0]["content"]
    assert "no sub-model functions" in system


def test_another_model_in_the_same_directory_is_refused(
    server: ScriptedServer, tmp_path: Path
) -> None:
    from recursa.errors import ConfigError

    bench(server, tmp_path, tasks=["oolong"], methods=["base"], n=1)
    with pytest.raises(ConfigError, match="holds results for model"):
        bench(server, tmp_path, tasks=["oolong"], methods=["base"], n=1, model="openai/gpt-5")


@requires("matplotlib")
def test_citations_are_scored_for_sniah_and_browsecomp(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """The scripted RLM cites sniah's needle, and the one browsecomp-lite document the
    question names (the first hop's); the baselines cite nothing."""
    bench(server, tmp_path, tasks=[SNIAHTask(essay_fallback=True), "browsecomp-lite"],
          methods=["rlm", "base"], lengths=["4k"], n=3)  # fmt: skip
    rows = {(r.task, r.method, r.index): r for r in read_results(tmp_path / "results.jsonl")}
    items = get_task("browsecomp-lite").generate(3, 4_000, seed=0)
    for index, item in enumerate(items):
        sniah = rows[("sniah", "rlm", index)]
        assert (sniah.score, sniah.citation_precision, sniah.citation_recall) == (1.0, 1.0, 1.0)
        assert rows[("sniah", "base", index)].citation_recall == 0.0
        assert rows[("sniah", "base", index)].citation_precision is None
        evidence = item.meta["gold_spans"]
        subjects = {hop[1] for hop in item.meta["hops"]}
        assert {
            item.context[i].split("\n")[0][len("Title: ") :] for i, _, _ in evidence
        } == subjects
        assert all((start, end) == (0, len(item.context[i])) for i, start, end in evidence)
        cited = rows[("browsecomp-lite", "rlm", index)]
        assert cited.error is None and cited.score == 0.0  # it stops after the first hop
        assert cited.citation_precision == 1.0
        assert cited.citation_recall == pytest.approx(1 / len(evidence))
        assert rows[("browsecomp-lite", "base", index)].citation_recall == 0.0
    table = write_report(tmp_path).table.read_text()
    assert "cite P % | cite R % |" in table
    assert re.search(r"\| sniah \| rlm \|.* \| 100\.0 \| 100\.0 \|$", table, re.M)


@requires("bm25s", "matplotlib")
def test_full_prompt_traces_export_the_best_runs(server: ScriptedServer, tmp_path: Path) -> None:
    """``trace_prompts="full"`` bench traces become a rejection-sampled dataset: only
    runs scored at or above ``--min-score`` are exported, each with its whole prompts."""
    from tests.export.test_chat_jsonl import export, read_jsonl

    out = tmp_path / "results"
    bench(server, out, tasks=["oolong"], methods=["rlm"], trace_prompts="full")
    rows = read_results(out / "results.jsonl")
    assert rows and all(r.trace for r in rows)
    dataset = tmp_path / "sft.jsonl"
    code, _, stderr = export(out, "--format", "chat-jsonl", "--min-score", "1", "-o", dataset)
    assert code == 0, stderr
    examples = read_jsonl(dataset)
    best = {r.index for r in rows if r.score is not None and r.score >= 1}
    assert {e["metadata"]["score"] for e in examples} <= {r.score for r in rows if r.index in best}
    system = examples[0]["messages"][0]
    assert system["role"] == "system" and "context" in system["content"]
    assert len(system["content"]) > 200  # whole, not cut at the trace's default 200 chars
