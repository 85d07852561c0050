"""``recursa batch --executor ray`` on a real, small local Ray."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursa.batch import BatchConfig, load_jobs, read_job_rows, run_batch
from recursa.settings import Settings
from recursa.testing import ScriptedServer, http_router
from tests.helpers import requires

pytestmark = requires("ray")


@pytest.fixture
def local_ray() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=1, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_jobs_run_as_ray_tasks_that_read_their_own_contexts(local_ray: Any, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text(f"text of {name}")
    (tmp_path / "jobs.jsonl").write_text(
        "".join(f'{{"id": "{n}", "query": "q {n}", "context": "{n}.txt"}}\n' for n in "abc")
    )
    with ScriptedServer(http_router(["```repl\nFINAL(context)\n```"])) as server:
        config = BatchConfig(
            jobs=tuple(load_jobs(tmp_path / "jobs.jsonl")),
            settings=Settings(model="openai/gpt-5-mini", base_url=server.url, sandbox="inprocess"),
            out_dir=tmp_path / "out",
            concurrency=2,
            executor="ray",
        )
        summary = run_batch(config, progress=False)
        assert (summary.answered, summary.failed) == (3, 0)
        rows = {row.id: row for row in read_job_rows(tmp_path / "out" / "results.jsonl")}
        assert {i: r.answer for i, r in rows.items()} == {n: f"text of {n}" for n in "abc"}
        assert all(Path(r.trace or "").exists() for r in rows.values())
        assert len(server.requests) == 3
        # Ray stays up (this test started it): a rerun has nothing to do and asks nothing.
        again = run_batch(config, progress=False)
        assert (again.already_done, again.answered) == (3, 0)
        assert len(server.requests) == 3
