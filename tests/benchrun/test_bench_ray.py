"""The Ray executor on a small local Ray instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursa.bench.runner import read_results, run_bench
from recursa.bench.tasks import SNIAHTask
from recursa.testing import ScriptedServer
from tests.benchrun.script import reply

ray = pytest.importorskip("ray")


@pytest.fixture
def local_ray() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_executor_runs_items_as_ray_tasks(local_ray: Any, tmp_path: Path) -> None:
    with ScriptedServer(reply) as server:
        summary = run_bench(
            [SNIAHTask(essay_fallback=True)],
            ["base", "rlm"],
            "openai/gpt-5-mini",
            base_url=server.url,
            lengths=["2k"],
            n=2,
            out_dir=tmp_path,
            executor="ray",
            concurrency=2,
            sandbox="inprocess",
            progress=False,
        )
        assert (summary.ran, summary.failed) == (4, 0)
        rows = read_results(tmp_path / "results.jsonl")
        assert sorted((r.index, r.method) for r in rows) == [
            (0, "base"), (0, "rlm"), (1, "base"), (1, "rlm"),
        ]  # fmt: skip
        assert all(r.score == 1.0 for r in rows)
        assert len(server.requests) == 2 + 2 * 3

        # Resuming works the same way: nothing left, no Ray task, no request.
        again = run_bench(
            [SNIAHTask(essay_fallback=True)],
            ["base", "rlm"],
            "openai/gpt-5-mini",
            base_url=server.url,
            lengths=["2k"],
            n=2,
            out_dir=tmp_path,
            executor="ray",
            progress=False,
        )
        assert (again.ran, again.skipped) == (0, 4)
        assert len(server.requests) == 8
