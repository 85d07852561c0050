"""``recursa bench``: run benchmark tasks with several methods, then write the report.

Registered on the main command group in :mod:`recursa.cli`. Exit codes as for
``recursa run``: 0 done, 1 the bench failed, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..cli_options import (
    EXIT_USAGE,
    budget_from_options,
    exit_codes,
    fail,
    job_options,
    rlm_options,
)
from .tokens import parse_length


def _names(values: tuple[str, ...] | str) -> list[str]:
    """``("sniah,oolong", "codeqa-lite")`` -> ``["sniah", "oolong", "codeqa-lite"]``."""
    parts = [values] if isinstance(values, str) else list(values)
    return [name.strip() for part in parts for name in part.split(",") if name.strip()]


@click.command()
@click.argument("tasks", nargs=-1, metavar="TASK[,TASK...]")
@rlm_options(
    "model",
    "sub_model",
    "base_url",
    model={"help": "Root model as provider/name."},
    sub_model={
        "help": "Model for sub-calls (rlm) and for summarising (summary). Default: the root model."
    },
    base_url={"help": "An OpenAI-compatible server; any model name then goes to it."},
)
@click.option(
    "--lengths",
    default="8k,32k,128k",
    show_default=True,
    metavar="L[,L...]",
    help="Context lengths in tokens: 8k, 128k, 1m, 8ki (8,192), 32000.",
)
@click.option(
    "--n", "n", default=20, show_default=True, type=click.IntRange(min=1), help="Items per length."
)
@click.option(
    "--methods",
    default="base,rlm",
    show_default=True,
    metavar="M[,M...]",
    help="Methods to compare: base, rlm, rlm-nosub, summary, codeact-bm25.",
)
@job_options(
    out_help="Directory for results.jsonl, traces/, table.md and the plots. A rerun resumes.",
    concurrency_help="Runs in flight at once.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Item generation seed.")
@rlm_options(
    "sandbox",
    "max_iterations",
    "budget_usd",
    sandbox={"help": "Where RLM code runs. inprocess is NOT a security boundary."},
    max_iterations={"help": "RLM root turns per item."},
    budget_usd={"help": "Stop a run (one item, one method) once it has spent this much."},
)
@click.option(
    "--context-window",
    default=None,
    metavar="TOKENS",
    help="The window base, summary and codeact-bm25 cut and chunk to "
    "(default: the model's, else 128k), e.g. 272k for GPT-5.",
)
@click.option(
    "--trace-prompts",
    type=click.Choice(["cut", "full"]),
    default="cut",
    show_default=True,
    help="full: traces keep every prompt whole, so `recursa trace export OUT/ --format "
    "chat-jsonl --min-score 1` can turn the best runs into training data.",
)
@click.option("--retry-failed", is_flag=True, help="Run again the rows that failed.")
@click.option(
    "--report-only", is_flag=True, help="Only write table.md and the plots from results.jsonl."
)
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
def bench(
    tasks: tuple[str, ...],
    lengths: str,
    n: int,
    methods: str,
    out_dir: Path,
    concurrency: int,
    executor: str,
    ray_address: str | None,
    seed: int,
    context_window: str | None,
    trace_prompts: str,
    retry_failed: bool,
    report_only: bool,
    progress: bool,
    **options: Any,
) -> None:
    """Benchmark methods on TASKS (sniah, oolong, oolong-pairs, browsecomp-lite, codeqa-lite).

    Writes OUT/results.jsonl (one line per item and method, resumable), OUT/traces/,
    OUT/config.json, and OUT/table.md, results.csv, score_vs_length.png and
    cost_vs_length.png. Open OUT/ in `recursa view` to browse the runs.
    The run options (--model ... --budget-usd) are those of recursa run; each method
    sets its own depth.

    \b
    Examples:
      recursa bench sniah --lengths 8k,128k --n 5 --out bench-out
      recursa bench oolong,sniah --methods base,rlm -m openai/gpt-5-mini --budget-usd 0.2
      recursa bench sniah --out bench-out --report-only
    """
    from .methods import get_method
    from .provenance import haystack_note
    from .report import write_report
    from .runner import RESULTS_FILE, BenchConfig, execute
    from .tasks import get_task

    if not report_only:
        if not _names(tasks):
            fail("give at least one task (e.g. sniah,oolong)", EXIT_USAGE)
        with exit_codes(usage=(ValueError,)):
            config = BenchConfig(
                tasks=tuple(get_task(name) for name in _names(tasks)),
                methods=tuple(get_method(name) for name in _names(methods)),
                model=options["model"] or fail("--model is required", EXIT_USAGE),
                sub_model=options["sub_model"],
                base_url=options["base_url"],
                lengths=tuple(parse_length(v) for v in _names(lengths)),
                n=n,
                out_dir=out_dir,
                concurrency=concurrency,
                executor="ray" if executor == "ray" else "local",
                ray_address=ray_address,
                seed=seed,
                sandbox=options["sandbox"],
                max_iterations=options["max_iterations"],
                budget=budget_from_options(options),
                retry_failed=retry_failed,
                context_window=parse_length(context_window) if context_window else None,
                trace_prompts=trace_prompts,
            )
        if note := haystack_note(config.tasks):
            click.echo(f"recursa: {note}", err=True)
        with exit_codes(interrupted="interrupted; run the same command again to resume"):
            summary = execute(config, progress=progress)
        cost = "n/a" if summary.cost_usd is None else f"${summary.cost_usd:,.4f}"
        click.echo(
            f"recursa: ran {summary.ran} (failed {summary.failed}), skipped {summary.skipped} "
            f"already done, cost {cost}, {summary.seconds:.1f}s",
            err=True,
        )
    elif not (out_dir / RESULTS_FILE).is_file():
        fail(f"{out_dir} has no {RESULTS_FILE}: nothing to report", EXIT_USAGE)
    with exit_codes():
        files = write_report(out_dir)
    click.echo(files.table.read_text(encoding="utf-8"))
    written = ", ".join(str(p) for p in (files.table, files.csv, files.score_plot, files.cost_plot))
    click.echo(f"recursa: wrote {written}", err=True)
