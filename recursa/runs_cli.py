"""``recursa runs``: the past runs in the runs directory, and one of them in full.

The list reads two lines per trace (:mod:`recursa.runs`); ``show`` loads one trace
whole (:func:`recursa.trace.load`) to print its answer, citations, usage and the tree
of its nodes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli_options import exit_codes
from .config_cli import configured_runs_dir
from .errors import ConfigError
from .runs import INCOMPLETE, RunSummary, find_run, list_runs, summarize

if TYPE_CHECKING:
    from .trace import TraceNode

#: Characters of the query and of the answer a listed run shows.
_QUERY_CHARS = 40
_ANSWER_CHARS = 30
#: Characters of a node's query and answer in the tree of ``runs show``.
_NODE_CHARS = 60


def cut(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (``…`` where it was cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _when(started: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else "?"


def _cost(cost: float | None) -> str:
    return "-" if cost is None else f"${cost:.4f}"


def summary_line(run: RunSummary) -> str:
    """One listed run: time, id, status, cost, model, query, start of the answer, path."""
    answer = "" if run.answer is None else f' -> "{cut(run.answer, _ANSWER_CHARS)}"'
    return (
        f"{_when(run.started)}  {run.run_id:<12}  {run.status:<19}  {_cost(run.cost_usd):>8}  "
        f'{run.model}  "{cut(run.query, _QUERY_CHARS)}"{answer}  {run.path}'
    )


@click.group("runs", invoke_without_command=True)
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Runs to list."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@click.pass_context
def runs_group(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List past runs, newest first: time, id, status, cost, model, query, answer, trace.

    Runs are the traces `recursa run` and `recursa chat` write into the runs directory
    (`recursa config show` says where). A run still going, or killed, is listed as
    running?/incomplete.

    \b
    Examples:
      recursa runs
      recursa runs --limit 5 --json
      recursa runs show 3f2a
    """
    if ctx.invoked_subcommand is not None:
        return
    with exit_codes():
        directory = configured_runs_dir()
    runs = list_runs(directory, limit) if directory.is_dir() else []
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in runs], ensure_ascii=False))
        return
    if not runs:
        click.echo(f"no runs yet in {directory}", err=True)
    for run in runs:
        click.echo(summary_line(run))


@runs_group.command("show")
@click.argument("run")
def show_command(run: str) -> None:
    """Print one run: query, answer, citations, usage, how it stopped, its nodes.

    RUN is a run id, a unique prefix of one, or a trace file.
    """
    from .trace import load

    with exit_codes():
        path = find_run(run, configured_runs_dir())
    summary = summarize(path)
    trace = load(path)
    end: dict[str, Any] = trace.run_end or {}
    click.echo(f"run:      {summary.run_id}  {summary.status}")
    click.echo(f"trace:    {path}")
    click.echo(f"started:  {_when(summary.started)}" + _duration(end))
    click.echo(f"model:    {summary.model}" + _sub_model(trace.run_start or {}, summary.model))
    click.echo(f"query:    {summary.query}")
    if summary.status == INCOMPLETE:
        click.echo("answer:   (none: the run is still going, or it was stopped)")
    else:
        click.echo(f"answer:   {summary.answer}")
    for n, citation in enumerate(end.get("citations") or (), 1):
        click.echo(_citation_line(n, citation))
    if end:
        click.echo(f"usage:    {_usage(end)}")
    if summary.error:
        click.echo(f"error:    {summary.error}")
    if trace.root is not None:
        click.echo("nodes:")
        for node in trace.root.walk():
            click.echo("  " * (node.depth + 1) + _node_line(node))
    for warning in trace.warnings:
        click.echo(f"recursa: {path}: {warning}", err=True)


def _duration(end: dict[str, Any]) -> str:
    seconds = end.get("duration_s")
    return f"  ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""


def _sub_model(start: dict[str, Any], model: str) -> str:
    sub = start.get("sub_model")
    return f"  (sub-calls: {sub})" if sub and sub != model else ""


def _usage(end: dict[str, Any]) -> str:
    usage = end.get("usage") or {}
    tokens_in, tokens_out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return (
        f"{usage.get('calls', 0)} calls, {tokens_in:,} input + {tokens_out:,} output tokens, "
        f"{_cost(end.get('cost_usd'))}, {end.get('iterations', 0)} iterations, "
        f"depth {end.get('depth_reached', 0)}"
    )


def _citation_line(n: int, citation: dict[str, Any]) -> str:
    quote = cut(str(citation.get("quote", "")), 200)
    mark = "" if citation.get("verified") else f"  [unverified: {citation.get('reason')}]"
    return f'[{n}] {citation.get("source", "context")}: "{quote}"{mark}'


def _node_line(node: TraceNode) -> str:
    """``n0 model: "query" -> "answer" (2 iterations, 3 calls, answered)``."""
    start, end = node.start or {}, node.end or {}
    calls = sum(1 for e in node.events if e.get("type") == "model_call")
    if node.end is None:
        outcome = INCOMPLETE
    else:
        outcome = f"stopped:{end['stopped']}" if end.get("stopped") else "answered"
    query = cut(str(start.get("query", "")), _NODE_CHARS)
    answer = f' -> "{cut(str(end.get("answer", "")), _NODE_CHARS)}"' if node.end else ""
    return (
        f'{node.node_id} {start.get("model", "?")}: "{query}"{answer} '
        f"({end.get('iterations', 0)} iterations, {calls} calls, {outcome})"
    )


def resolve_view_target(ref: str | None) -> Path:
    """What ``recursa view`` opens: the latest run without ``ref``; else a file or
    folder at ``ref``, or the run with that id (prefix)."""
    from .runs import latest_run

    directory = configured_runs_dir()
    if ref is None:
        latest = latest_run(directory)
        if latest is None:
            raise ConfigError(f"no runs yet in {directory}: give a trace file or folder")
        return latest
    given = Path(ref).expanduser()
    return given if given.exists() else find_run(ref, directory)
