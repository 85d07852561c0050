"""``recursa view`` on a bench output directory: the grid's data and its traces."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recursa.viewer import TraceServer
from recursa.viewer.bench import is_bench_dir, read_bench
from tests.viewer.test_viewer_server import get_json

Start = Callable[[Path], tuple[TraceServer, str]]


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_a_bench_directory_serves_its_rows_and_traces(bench_dir: Path, serve_path: Start) -> None:
    assert is_bench_dir(bench_dir) and not is_bench_dir(bench_dir / "traces")
    _, url = serve_path(bench_dir)
    status, runs = get_json(url, "/api/runs")
    assert status == 200 and runs["bench"] is True
    traces = {p.name for p in (bench_dir / "traces").glob("*.jsonl")}
    assert {r["name"] for r in runs["runs"]} == traces  # the traces, not results.jsonl
    assert all(r["status"] != "unreadable" for r in runs["runs"])

    status, grid = get_json(url, "/api/bench")
    assert status == 200 and grid["skipped_lines"] == 0
    assert grid["config"]["model"] == "openai/gpt-5-mini"
    written = results(bench_dir)
    assert len(grid["rows"]) == len(written) == 9
    for row in grid["rows"]:
        source = next(
            w for w in written if (w["item"], w["method"]) == (row["item"], row["method"])
        )
        assert (row["score"], row["answer"], row["gold"]) == (
            source["score"], source["answer"], source["gold"],
        )  # fmt: skip
        if row["method"] == "base":
            assert row["trace"] is None
        else:
            assert row["trace"] == Path(source["trace"]).name and row["trace"] in traces
    stopped = {r["stopped"] for r in grid["rows"] if r["method"] == "rlm-nosub"}
    assert stopped == {"iterations"}

    name = next(r["trace"] for r in grid["rows"] if r["trace"])
    status, trace = get_json(url, f"/api/trace?run={name}")
    assert status == 200 and trace["warnings"] == [] and trace["events"][0]["type"] == "run_start"


def test_plain_trace_directory_has_no_grid(tmp_path: Path, serve_path: Start, traces: Any) -> None:
    traces.write_depth2(tmp_path / "one.jsonl")
    _, url = serve_path(tmp_path)
    assert get_json(url, "/api/runs")[1]["bench"] is False
    status, body = get_json(url, "/api/bench")
    assert status == 404 and "not a bench directory" in body["error"]


def test_newest_row_wins_and_cut_lines_are_counted(bench_dir: Path) -> None:
    first = results(bench_dir)[0]
    retried = {**first, "score": 0.0, "answer": "retried"}
    with (bench_dir / "results.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(retried) + '\n{"task": "sniah", "len')
    grid = read_bench(bench_dir, set())
    assert grid["skipped_lines"] == 1 and len(grid["rows"]) == 9
    row = next(
        r for r in grid["rows"] if (r["item"], r["method"]) == (first["item"], first["method"])
    )
    assert (row["answer"], row["score"], row["trace"]) == ("retried", 0.0, None)
