"""``recursa batch`` end to end against a real local OpenAI-compatible server.

The scripted root answers ``FINAL(context.strip())``, so each job's answer is its own
file's text: a job that read another job's context would show it. A query holding
``FAIL`` is refused by the server (while ``failing`` holds), and ``BIG`` makes the server
report 100,000 prompt tokens for the call.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from recursa.batch import read_job_rows
from recursa.cli import main
from recursa.testing import HTTPFailure, Received, Reply, ScriptedServer, is_root_turn, node_query
from tests.helpers import run_cli

MODEL = "openai/gpt-5-mini"  # priced, so costs are known; served by the scripted server
FINAL = "```repl\nFINAL(context.strip())\n```"
#: a root turn that never answers (the job then runs until its budget or iterations end)
LOOP = "```repl\nprint(len(context))\n```"


class Script:
    """The server's replies, switchable between runs."""

    def __init__(self) -> None:
        self.failing = True

    def __call__(self, request: Received) -> str | Reply:
        messages = request["messages"]
        if not is_root_turn(messages):
            return "sub"
        query = node_query(messages)
        if "FAIL" in query and self.failing:
            raise HTTPFailure(400, "scripted refusal")
        if "LOOP" in query:
            return LOOP
        if "BIG" in query:
            return Reply(FINAL, {"prompt_tokens": 100_000})
        return FINAL


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[ScriptedServer]:
    with ScriptedServer(script) as srv:
        yield srv


def write_jobs(folder: Path, jobs: list[dict[str, Any]]) -> Path:
    """A JOBS.jsonl with a context file per job (``doc-<id>.txt`` holding ``text of <id>``)
    unless the job names its own."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for job in jobs:
        if "context" not in job:
            (folder / f"doc-{job['id']}.txt").write_text(f"text of {job['id']}\n")
            job = {**job, "context": f"doc-{job['id']}.txt"}
        lines.append(json.dumps(job))
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def batch(server: ScriptedServer, jobs: Path, out: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["batch", str(jobs), "--out", str(out), "-m", MODEL, "--base-url", server.url,
         "--sandbox", "inprocess", "--no-progress", *args],
    )  # fmt: skip


def requests_for(server: ScriptedServer, word: str) -> int:
    return sum(1 for r in server.requests if word in node_query(r["messages"]))


def models_asked(server: ScriptedServer, word: str) -> set[str]:
    return {r["model"] for r in server.requests if word in node_query(r["messages"])}


def test_a_batch_runs_every_job_on_its_own_context_in_a_real_process(
    server: ScriptedServer, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    jobs = write_jobs(tmp_path / "in", [{"id": f"j{i}", "query": f"job {i}?"} for i in range(3)])
    out = tmp_path / "out"
    done = run_cli(
        ["batch", str(jobs), "--out", str(out), "-m", MODEL, "--base-url", server.url,
         "--sandbox", "inprocess", "--concurrency", "2"],
        clean_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 answered, 0 stopped, 0 failed, 0 skipped, 0 already done" in done.stderr
    assert "recursa: batch 3/3" in done.stderr  # plain progress lines: stderr is a pipe
    rows = {row.id: row for row in read_job_rows(out / "results.jsonl")}
    assert sorted(rows) == ["j0", "j1", "j2"]
    for ident, row in rows.items():
        assert (row.status, row.answer, row.error) == ("answered", f"text of {ident}", None)
        assert row.query == f"job {ident[1]}?"
        assert row.usage["calls"] == 1 and row.usage["input_tokens"] > 0
        assert row.cost_usd is not None and row.cost_usd > 0
        assert row.duration_s > 0
        assert row.trace == str((out / "traces" / f"{ident}.jsonl").resolve())
        assert Path(row.trace).read_text().count('"run_end"') == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["answered"], summary["failed"], summary["skipped"]) == (3, 0, 0)
    assert summary["calls"] == 3 and summary["input_tokens"] > 0
    assert summary["cost_usd"] == pytest.approx(sum(r.cost_usd or 0 for r in rows.values()))


def test_a_failed_job_is_recorded_the_others_finish_and_a_rerun_resumes(
    server: ScriptedServer, script: Script, tmp_path: Path
) -> None:
    jobs = write_jobs(
        tmp_path,
        [{"id": "ok1", "query": "first"}, {"id": "bad", "query": "FAIL me"},
         {"id": "ok2", "query": "second"}],
    )  # fmt: skip
    out = tmp_path / "out"
    first = batch(server, jobs, out)
    assert first.exit_code == 1, first.output
    rows = {row.id: row for row in read_job_rows(out / "results.jsonl")}
    assert rows["bad"].status == "failed" and "scripted refusal" in (rows["bad"].error or "")
    assert [rows[i].status for i in ("ok1", "ok2")] == ["answered", "answered"]
    seen = len(server.requests)

    # A rerun does no job again, not even the failed one: no request reaches the model.
    again = batch(server, jobs, out)
    assert again.exit_code == 0, again.output
    assert "0 answered, 0 stopped, 0 failed, 0 skipped, 3 already done" in again.stderr
    assert len(server.requests) == seen

    # --retry-failed runs only the failed job, now that the server answers it.
    script.failing = False
    retried = batch(server, jobs, out, "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert "1 answered, 0 stopped, 0 failed, 0 skipped, 2 already done" in retried.stderr
    assert requests_for(server, "FAIL") == 2 and len(server.requests) == seen + 1
    rows = {row.id: row for row in read_job_rows(out / "results.jsonl")}
    assert {i: r.status for i, r in rows.items()} == dict.fromkeys(
        ("ok1", "bad", "ok2"), "answered"
    )
    assert rows["bad"].answer == "text of bad"
    assert len((out / "results.jsonl").read_text().splitlines()) == 4  # appended, never rewritten


def test_a_rerun_with_other_common_settings_is_refused(
    server: ScriptedServer, tmp_path: Path
) -> None:
    jobs = write_jobs(tmp_path, [{"id": "a", "query": "q"}])
    out = tmp_path / "out"
    assert batch(server, jobs, out).exit_code == 0
    before = (out / "results.jsonl").read_text()
    other = batch(server, jobs, out, "--max-depth", "2")
    assert other.exit_code == 2
    assert other.stderr.strip().splitlines() == [
        f"recursa: error: {out} holds results for max_depth 1, not 2; give another --out directory"
    ]
    assert (out / "results.jsonl").read_text() == before


def test_per_job_options_are_applied(server: ScriptedServer, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    jobs = write_jobs(
        tmp_path,
        [
            {"id": "nano", "query": "on nano", "model": "openai/gpt-5-nano"},
            {"id": "capped", "query": "LOOP capped", "budget": {"calls": 2}},
            {"id": "short", "query": "LOOP short", "max_iterations": 1},
            {"id": "typed", "query": "typed", "context": "n.txt", "output_schema": schema},
        ],
    )
    (tmp_path / "n.txt").write_text('{"n": 7}')
    out = tmp_path / "out"
    result = batch(server, jobs, out)
    assert result.exit_code == 3, result.output  # two jobs stopped without an answer
    rows = {row.id: row for row in read_job_rows(out / "results.jsonl")}
    assert models_asked(server, "on nano") == {"gpt-5-nano"}
    assert models_asked(server, "typed") == {"gpt-5-mini"}
    assert rows["nano"].status == "answered"
    assert (rows["capped"].status, rows["capped"].stopped) == ("stopped", "budget")
    assert rows["capped"].usage["calls"] == 2
    assert (rows["short"].status, rows["short"].stopped) == ("stopped", "iterations")
    assert rows["typed"].output == {"n": 7}


def test_the_total_budget_stops_later_jobs(server: ScriptedServer, tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path, [{"id": f"b{i}", "query": f"BIG {i}"} for i in range(4)])
    out = tmp_path / "out"
    # One job reports 100,000 prompt tokens: two fit in 150,000 (the second one's cap is
    # what the first left), then the total is spent.
    result = batch(server, jobs, out, "--budget-tokens", "150000", "--concurrency", "1")
    assert result.exit_code == 3, result.output
    rows = [row for row in read_job_rows(out / "results.jsonl")]
    assert [(r.id, r.status) for r in rows] == [
        ("b0", "answered"), ("b1", "answered"), ("b2", "skipped"), ("b3", "skipped"),
    ]  # fmt: skip
    assert rows[2].error == "not started: the batch's total tokens budget is spent"
    assert rows[2].usage["calls"] == 0 and rows[2].trace is None
    assert requests_for(server, "BIG 2") == requests_for(server, "BIG 3") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["answered"], summary["skipped"]) == (2, 2)

    # Skipped jobs are not done: a rerun with a fresh total runs them.
    more = batch(server, jobs, out, "--budget-tokens", "1000000")
    assert more.exit_code == 0, more.output
    assert "2 answered, 0 stopped, 0 failed, 0 skipped, 2 already done" in more.stderr


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (['{"id": "a", "query": "q", "context": "doc.txt"}', '{"id": "b", '],
         "jobs.jsonl:2: not valid JSON"),
        (['{"id": "a", "context": "doc.txt"}'], "jobs.jsonl:1: missing 'query'"),
        (['{"id": "a", "query": "q", "context": "doc.txt", "temprature": 1}'],
         "jobs.jsonl:1: unknown key 'temprature'"),
        (['{"id": "a", "query": "q", "context": "doc.txt"}', "",
          '{"id": "a", "query": "r", "context": "doc.txt"}'],
         "jobs.jsonl:3: id 'a' is already used on line 1"),
        (['{"id": "a", "query": "q", "context": ["doc.txt", "gone.txt"]}'],
         "jobs.jsonl:1: context gone.txt: no such file or directory"),
        (['{"id": "a", "query": "q", "context": "doc.txt", "budget": {"usd": -1}}'],
         "jobs.jsonl:1: Budget.usd must be positive"),
        (['{"id": "a/b", "query": "q", "context": "doc.txt"}'], "jobs.jsonl:1: id 'a/b' must"),
        (['{"id": "a", "query": "q", "context": "doc.txt", "max_depth": -1}'],
         "jobs.jsonl:1: max_depth must be >= 0"),
        (['{"id": "a", "query": "q", "context": "doc.txt", "model": "anthropic/claude-x"}'],
         "jobs.jsonl:1: no API key for anthropic/claude-x"),
        ([], "jobs.jsonl: no jobs"),
    ],
)  # fmt: skip
def test_a_bad_jobs_file_is_one_line_exit_2_and_writes_nothing(
    server: ScriptedServer, tmp_path: Path, lines: list[str], error: str
) -> None:
    (tmp_path / "doc.txt").write_text("text")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = batch(server, jobs, out)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and error in result.stderr, result.stderr
    assert not out.exists()
    assert server.requests == []


def test_a_job_whose_first_call_does_not_fit_what_is_left_is_skipped(
    server: ScriptedServer, tmp_path: Path
) -> None:
    jobs = write_jobs(tmp_path, [{"id": f"b{i}", "query": f"BIG {i}"} for i in range(3)])
    out = tmp_path / "out"
    # After the first job, about 300 tokens are left: less than any job's first prompt.
    result = batch(server, jobs, out, "--budget-tokens", "100300", "--concurrency", "1")
    assert result.exit_code == 3, result.output
    rows = read_job_rows(out / "results.jsonl")
    assert [(r.id, r.status) for r in rows] == [
        ("b0", "answered"), ("b1", "skipped"), ("b2", "skipped"),
    ]  # fmt: skip
    assert rows[1].error == "not started: what is left of the batch's total budget is too little"
    assert requests_for(server, "BIG 1") == requests_for(server, "BIG 2") == 0


def test_a_usd_budget_over_an_unpriced_model_is_refused_before_anything_runs(
    server: ScriptedServer, tmp_path: Path
) -> None:
    jobs = write_jobs(
        tmp_path,
        [{"id": "a", "query": "q"}, {"id": "b", "query": "q", "model": "openai/my-finetune"}],
    )
    result = batch(server, jobs, tmp_path / "out", "--budget-usd", "1")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"recursa: error: {jobs}:2: openai/my-finetune has no known price, so a USD "
        "budget cannot meter it: give one with --price openai/my-finetune=IN,OUT (USD per "
        "million tokens)\n"
    )
    priced = batch(server, jobs, tmp_path / "out", "--budget-usd", "1",
                   "--price", "openai/my-finetune=1,2")  # fmt: skip
    assert priced.exit_code == 0, priced.output


@pytest.mark.parametrize("command", ["batch", "bench"])
def test_the_ray_executor_without_ray_names_the_extra(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    jobs = write_jobs(tmp_path, [{"id": "a", "query": "q"}])
    args = [str(jobs)] if command == "batch" else ["sniah", "--lengths", "1k", "--n", "1"]
    result = CliRunner().invoke(
        main,
        [command, *args, "--out", str(tmp_path / "out"), "-m", MODEL, "--base-url", server.url,
         "--executor", "ray"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "recursa: error: the ray executor needs the ray package: pip install 'recursa[ray]'\n"
    )
    assert not (tmp_path / "out").exists()
