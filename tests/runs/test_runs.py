"""The log of runs: `recursa run` writes into the runs directory by default, `recursa
runs` lists the runs newest first from two lines of each trace, `runs show` prints one,
and a partial or broken trace is listed as incomplete, never a crash."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from recursa import RLM
from recursa.errors import ConfigError, RecursaError
from recursa.runs import INCOMPLETE, find_run, latest_run, list_runs, summarize
from recursa.runs_cli import resolve_view_target
from recursa.testing import Received, ScriptedServer, is_root_turn
from tests.helpers import run_cli


def reply(request: Received) -> str:
    messages = request["messages"]
    if not is_root_turn(messages):
        return "a sub-answer"
    if "spin" in messages[-1]["content"] or "spin" in str(messages):
        return "```repl\nprint('still looking')\n```"
    return "```repl\nnote = llm_query('look at ' + context[:5])\nFINAL('found: ' + note)\n```"


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "runs"
    monkeypatch.setenv("RECURSA_RUNS_DIR", str(directory))
    return directory


@pytest.fixture
def context_file(tmp_path: Path) -> Path:
    path = tmp_path / "context.txt"
    path.write_text("alpha beta gamma", encoding="utf-8")
    return path


def traced_run(server: ScriptedServer, query: str, **options: object) -> Path:
    rlm = RLM("openai/s", base_url=server.url, sandbox="inprocess", trace=True, **options)  # type: ignore[arg-type]
    result = rlm.completion(query, "alpha beta gamma")
    assert result.trace is not None
    return Path(result.trace)


def test_two_real_runs_are_listed_newest_first_and_one_is_shown(
    clean_env: dict[str, str], tmp_path: Path, context_file: Path
) -> None:
    env = {**clean_env, "RECURSA_RUNS_DIR": str(tmp_path / "runs")}
    with ScriptedServer(reply) as server:
        model = ["-m", "openai/gpt-5-mini", "--base-url", server.url, "--sandbox", "inprocess"]
        for query in ("first question", "second question"):
            proc = run_cli(["run", query, "-c", str(context_file), *model], env)
            assert proc.returncode == 0, proc.stderr
            assert f"trace written to {tmp_path / 'runs'}" in proc.stderr
            time.sleep(0.01)  # distinct modification times
    listed = run_cli(["runs", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["query"] for r in runs] == ["second question", "first question"]
    assert {r["status"] for r in runs} == {"answered"}
    assert runs[0]["answer"] == "found: a sub-answer" and runs[0]["model"] == "openai/gpt-5-mini"
    assert runs[0]["cost_usd"] > 0 and Path(runs[0]["trace"]).parent == tmp_path / "runs"

    text = run_cli(["runs", "--limit", "1"], env).stdout.splitlines()
    assert len(text) == 1 and runs[0]["run_id"] in text[0] and "answered" in text[0]
    assert '"second question" -> "found: a sub-answer"' in text[0]

    shown = run_cli(["runs", "show", runs[1]["run_id"][:6]], env)
    assert shown.returncode == 0, shown.stderr
    assert "query:    first question" in shown.stdout
    assert "answer:   found: a sub-answer" in shown.stdout
    assert "usage:    2 calls" in shown.stdout
    assert '  n0 openai/gpt-5-mini: "first question" -> "found: a sub-answer"' in shown.stdout

    missing = run_cli(["runs", "show", "nosuchid"], env)
    assert missing.returncode == 2
    assert missing.stderr.startswith("recursa: error: no run 'nosuchid'")


def test_no_trace_writes_nothing_and_trace_path_writes_exactly_there(
    clean_env: dict[str, str], tmp_path: Path, context_file: Path
) -> None:
    env = {**clean_env, "RECURSA_RUNS_DIR": str(tmp_path / "runs")}
    with ScriptedServer(reply) as server:
        model = ["-m", "openai/s", "--base-url", server.url, "--sandbox", "inprocess"]
        off = run_cli(["run", "q", "-c", str(context_file), *model, "--no-trace"], env)
        exact = tmp_path / "here.jsonl"
        there = run_cli(["run", "q", "-c", str(context_file), *model, "--trace", str(exact)], env)
    assert off.returncode == there.returncode == 0, off.stderr + there.stderr
    assert not (tmp_path / "runs").exists()
    assert exact.is_file() and "trace written" not in off.stderr


def test_stopped_and_failed_runs_have_their_status(runs_dir: Path) -> None:
    with ScriptedServer(reply) as server:
        traced_run(server, "spin forever", max_iterations=1)
    with ScriptedServer(lambda r: "```repl\nFINAL('x')\n```") as server:
        failing = RLM("openai/s", base_url=server.url, sandbox="inprocess", trace=True,
                      max_iterations=1, request_timeout=1)  # fmt: skip
        server.close()  # the provider is gone: the run fails
        with pytest.raises(RecursaError):
            failing.completion("unreachable", "ctx")
    statuses = {r.query: r.status for r in list_runs(runs_dir)}
    assert statuses["spin forever"] == "stopped:iterations"
    assert statuses["unreachable"] == "failed"


def test_partial_and_broken_traces_are_incomplete_never_a_crash(runs_dir: Path) -> None:
    with ScriptedServer(reply) as server:
        complete = traced_run(server, "whole run")
    lines = complete.read_bytes().splitlines(keepends=True)
    (runs_dir / "20990101-000000-aaaa11112222.jsonl").write_bytes(b"".join(lines[:-1]))
    (runs_dir / "20990101-000001-bbbb11112222.jsonl").write_bytes(
        b"".join(lines[:-1]) + lines[-1][:30]  # killed while writing the last line
    )
    (runs_dir / "empty.jsonl").write_bytes(b"")
    (runs_dir / "garbage.jsonl").write_bytes(b"\xff\xfe not json\n\n")
    runs = {r.path.name: r for r in list_runs(runs_dir)}
    assert runs[complete.name].status == "answered"
    for name in ("20990101-000000-aaaa11112222.jsonl", "20990101-000001-bbbb11112222.jsonl"):
        assert runs[name].status == INCOMPLETE and runs[name].query == "whole run"
        assert runs[name].answer is None
    assert runs["empty.jsonl"].status == runs["garbage.jsonl"].status == INCOMPLETE
    assert runs["empty.jsonl"].run_id == "empty"


def test_a_last_line_longer_than_one_read_block_is_read_whole(runs_dir: Path) -> None:
    long_answer = "word " * 40_000  # 200 KB: several blocks back from the end
    with ScriptedServer(lambda r: f"```repl\nFINAL('{long_answer}')\n```") as server:
        path = traced_run(server, "long answer")
    summary = summarize(path)
    assert (summary.status, summary.answer) == ("answered", long_answer)


def test_ids_prefixes_and_paths_resolve_and_ambiguity_is_refused(runs_dir: Path) -> None:
    runs_dir.mkdir()
    for name in ("20260101-000000-abc111.jsonl", "20260101-000001-abc222.jsonl"):
        (runs_dir / name).write_text("", encoding="utf-8")
    assert find_run("abc1", runs_dir).name == "20260101-000000-abc111.jsonl"
    outside = runs_dir.parent / "mine.jsonl"
    outside.write_text("", encoding="utf-8")
    assert find_run(str(outside), runs_dir) == outside
    with pytest.raises(ConfigError, match="matches 2 runs"):
        find_run("abc", runs_dir)
    with pytest.raises(ConfigError, match="no run 'zzz'"):
        find_run("zzz", runs_dir)
    assert latest_run(runs_dir) == resolve_view_target(None)
    assert resolve_view_target("abc2").name == "20260101-000001-abc222.jsonl"


def test_view_without_runs_is_one_line_exit_2(clean_env: dict[str, str], tmp_path: Path) -> None:
    env = {**clean_env, "RECURSA_RUNS_DIR": str(tmp_path / "none")}
    proc = run_cli(["view", "--no-browser"], env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"recursa: error: no runs yet in {tmp_path / 'none'}: " + (
        "give a trace file or folder"
    )


@pytest.mark.slow
def test_listing_a_thousand_runs_reads_only_their_ends(runs_dir: Path) -> None:
    with ScriptedServer(reply) as server:
        one = traced_run(server, "a run")
    for n in range(1000):
        shutil.copy(one, runs_dir / f"20260101-{n:06d}-{n:012x}.jsonl")
    started = time.perf_counter()
    runs = list_runs(runs_dir)
    elapsed = time.perf_counter() - started
    assert len(runs) == 1001 and {r.status for r in runs} == {"answered"}
    assert elapsed < 2.0, f"listing 1,001 runs took {elapsed:.2f} s"


def test_chat_writes_each_answer_into_the_runs_directory(
    clean_env: dict[str, str], tmp_path: Path, context_file: Path
) -> None:
    env = {**clean_env, "RECURSA_RUNS_DIR": str(tmp_path / "runs")}
    with ScriptedServer(reply) as server:
        proc = run_cli(
            ["chat", "-c", str(context_file), "-m", "openai/s", "--base-url", server.url,
             "--sandbox", "inprocess"],
            env,
            stdin="a question\n/trace\n",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    answer, trace = proc.stdout.splitlines()
    assert answer == "found: a sub-answer"
    assert Path(trace).parent == tmp_path / "runs" and Path(trace).is_file()
    assert [r.query for r in list_runs(tmp_path / "runs")] == ["a question"]
