"""``recursa batch``: one RLM run per line of a JOBS.jsonl file (see :mod:`recursa.batch`).

Registered on the main command group in :mod:`recursa.cli`. Exit codes: 0 every job
answered, 1 some job failed, 2 bad usage or a bad jobs file (nothing written),
3 some job stopped without finishing or was skipped for the total budget, 130
interrupted (a rerun resumes).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .cli_options import (
    EXIT_FAILED,
    EXIT_STOPPED,
    RUN_OPTIONS,
    budget_from_options,
    exit_codes,
    job_options,
    rlm_options,
    settings_from_options,
)


@click.command()
@click.argument("jobs_file", metavar="JOBS.jsonl", type=click.Path(path_type=Path))
@job_options(
    out_help="Directory for results.jsonl, traces/ and summary.json. A rerun resumes.",
    concurrency_help="Jobs running at once.",
)
@click.option("--retry-failed", is_flag=True, help="Run again the jobs that failed.")
@click.option("--progress/--no-progress", default=True, help="Progress on stderr.")
@rlm_options(
    "model",
    "sub_model",
    "base_url",
    "max_depth",
    "max_iterations",
    "budget_usd",
    "budget_tokens",
    "sandbox",
    "cell_timeout",
    "request_timeout",
    "max_children",
    "prices",
    "allowed_models",
    "temperature",
    "sub_temperature",
    "top_p",
    "seed",
    "max_tokens",
    "sub_max_tokens",
    "reasoning_effort",
    "sub_reasoning_effort",
    "max_errors",
    "require_citations",
    "system_prompt",
    "cache",
    budget_usd={
        "help": "Total USD for the whole batch; jobs not started once it is spent are skipped."
    },
    budget_tokens={"help": "Total tokens (input + output) for the whole batch."},
)
def batch(
    jobs_file: Path,
    out_dir: Path,
    concurrency: int,
    executor: str,
    ray_address: str | None,
    retry_failed: bool,
    progress: bool,
    **options: Any,
) -> None:
    """Run one RLM per line of JOBS.jsonl and write OUT/results.jsonl.

    Each line: {"id": "a1", "query": "...", "context": "doc.txt" or ["a.txt", "b.txt"]}
    with optional "model", "sub_model", "max_depth", "max_iterations", "budget"
    ({"usd": 0.1, "tokens": 50000, "seconds": 60, "calls": 20}) and "output_schema"
    (a JSON Schema). Paths are relative to the file's folder. The whole file is
    checked before anything runs. The run options apply to every job; a line's own
    options win. A rerun skips the jobs already done.

    \b
    Examples:
      recursa batch jobs.jsonl --out batch-out -m openai/gpt-5-mini --concurrency 8
      recursa batch jobs.jsonl --out batch-out --budget-usd 5 --retry-failed
      recursa batch jobs.jsonl --out batch-out --executor ray --ray-address auto
    """
    from .batch import BatchConfig, load_jobs, run_batch

    with exit_codes(usage=(ValueError,)):
        # --concurrency counts jobs here; sub-calls keep the run's default per model
        run_options = {**options, "concurrency": RUN_OPTIONS["concurrency"].attrs["default"]}
        config = BatchConfig(
            jobs=tuple(load_jobs(jobs_file)),
            settings=settings_from_options(run_options, budget=None),
            out_dir=out_dir,
            concurrency=concurrency,
            executor="ray" if executor == "ray" else "local",
            ray_address=ray_address,
            total=budget_from_options(options),
            retry_failed=retry_failed,
        )
    with exit_codes(interrupted="interrupted; run the same command again to resume"):
        summary = run_batch(config, progress=progress)
    cost = "n/a" if summary.cost_usd is None else f"${summary.cost_usd:,.4f}"
    click.echo(
        f"recursa: batch: {summary.answered} answered, {summary.stopped} stopped, "
        f"{summary.failed} failed, {summary.skipped} skipped, {summary.already_done} already "
        f"done; cost {cost}, tokens {summary.input_tokens:,} in / "
        f"{summary.output_tokens:,} out, {summary.seconds:.1f}s",
        err=True,
    )
    click.echo(f"recursa: wrote {summary.results}", err=True)
    if summary.failed:
        sys.exit(EXIT_FAILED)
    if summary.stopped or summary.skipped:
        sys.exit(EXIT_STOPPED)
