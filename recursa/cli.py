"""The ``recursa`` command line: run, and the tools around a run.

Exit codes: 0 answered, 1 the run failed, 2 bad usage or input, 3 stopped without a
valid answer (budget, iterations, cell errors, an answer invalid for ``--schema``),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP).
Results go to stdout; progress, warnings and errors to stderr.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import __version__
from .cli_context import context_options, read_context
from .cli_options import (
    EXIT_FAILED,
    EXIT_STOPPED,
    EXIT_USAGE,
    exit_codes,
    fail,
    rlm_options,
    settings_from_options,
    stop_signals_interrupt,
    stopped_by_signal,
)
from .config_cli import COMMAND_ARGS, trace_changes
from .errors import ConfigError, RecursaError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .budget import Budget
    from .recording import Recording
    from .result import Citation
    from .rlm import RLM
    from .tools import Tool


def _recorded_query(trace: Path) -> str | None:
    from .trace import read_events

    events, _ = read_events(trace)
    start = next((e for e in events if e["type"] == "run_start"), None)
    return str(start["query"]) if start and start.get("query") else None


#: The recorded Settings fields a replay takes unless one of these flags is given. The
#: sandbox is not among them (it is this machine's); the trace's prompt mode is the
#: command's own --trace-prompts.
_REPLAYED: dict[str, tuple[str, ...]] = {
    "max_depth": ("max_depth",),
    "max_iterations": ("max_iterations",),
    "cell_timeout": ("cell_timeout",),
    "max_output_chars": (),
    "compact_after_chars": (),
    "max_concurrency": ("concurrency",),
    "request_timeout": ("request_timeout",),
    "max_errors": ("max_errors",),
    "require_citations": ("require_citations",),
    "model_settings": ("temperature", "top_p", "seed", "max_tokens", "reasoning_effort"),
    "sub_model_settings": ("sub_temperature", "sub_max_tokens", "sub_reasoning_effort"),
}


def _replay_settings(trace: Path, options: dict[str, Any]) -> tuple[Recording, dict[str, Any]]:
    """The recording, and the Settings changes for its models plus what the recorded run
    was configured with (depth, iterations, budget, timeouts, output limits, sampling)
    where no flag on the command line set it."""
    from .cli_options import budget_from_options
    from .recording import Recording

    recording = Recording.load(trace)
    root, sub = recording.models()
    changes: dict[str, Any] = {"model": root, "sub_model": sub}
    recorded = recording.settings
    # a value from the config file or a RECURSA_* variable yields to the recorded one
    for field, flags in _REPLAYED.items():
        if field in recorded.fields and not _on_command_line(*flags):
            changes[field] = recorded.fields[field]
    if recorded.fields:  # the trace has its run_start: the budget it ran under, or none
        flagged = {name: value for name, value in options.items() if _on_command_line(name)}
        changes["budget"] = _with_flagged_limits(recorded.budget, budget_from_options(flagged))
    return recording, changes


def _with_flagged_limits(recorded: Budget | None, flagged: Budget | None) -> Budget | None:
    """The recorded budget, each limit given as a ``--budget-*`` flag replacing its own."""
    if recorded is None or flagged is None:
        return flagged or recorded
    given = {
        limit: value for limit, value in dataclasses.asdict(flagged).items() if value is not None
    }
    return dataclasses.replace(recorded, **given)


def _on_command_line(*names: str) -> bool:
    """Whether any of these options was given as a flag (not by the config or env)."""
    from click.core import ParameterSource

    given = click.get_current_context().get_parameter_source
    return any(given(name) is ParameterSource.COMMANDLINE for name in names)


def _load_schema(path: str) -> dict[str, Any]:
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON Schema ({exc})") from None
    if not isinstance(schema, dict):
        raise ConfigError(f"{path}: a JSON Schema must be an object")
    return schema


class _Commands(click.Group):
    """The ``recursa`` group: commands that live in modules of their own are imported
    only when one of them runs or shows its help, so ``recursa --help`` and the
    commands of this module do not pay for Ray, the mcp SDK, the cache or the bench.
    The listing shows their one-line summaries from :data:`LAZY_COMMANDS`
    (``tests/test_readme_cli.py`` checks they equal the commands' own)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            import importlib

            module, attr, _ = LAZY_COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module, __package__), attr))
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[COMMAND_ARGS] = list(rest)  # for apply_config: a --help among them
        return name, command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, self.list_commands(ctx)))
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS and name not in self.commands:
                stand_in = click.Command(name, help=LAZY_COMMANDS[name][2])  # cut as click cuts
                rows.append((name, stand_in.get_short_help_str(limit)))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


#: name -> (module, attribute, the one-line summary ``recursa --help`` shows)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "batch": (".batch_cli", "batch",
              "Run one RLM per line of JOBS.jsonl and write OUT/results.jsonl."),
    "bench": (".bench.cli", "bench", "Benchmark methods on TASKS (sniah, oolong, oolong-pairs, "
              "browsecomp-lite, codeqa-lite)."),
    "cache": (".cache_cli", "cache", "Inspect or clear the response cache."),
    "config": (".config_cli", "config_group",
               "Where the configuration file is, and what is in effect."),
    "mcp": (".mcp_server", "mcp_command",
            "Serve the RLM over the Model Context Protocol: a tool `ask` for coding agents."),
    "models": (".models_cli", "models_command",
               "List providers, priced models, local models and aliases."),
    "runs": (".runs_cli", "runs_group", "List past runs, newest first: time, id, status, cost, "
             "model, query, answer, trace."),
}  # fmt: skip


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recursa")
@click.pass_context
def main(ctx: click.Context) -> None:
    """recursa: Recursive Language Models.

    An RLM answers a question about a text far longer than any model's context
    window. The text is loaded as `context` in a sandboxed Python REPL; a root
    model writes code to search and split it and calls sub-models on pieces.
    Defaults come from `recursa config path` and RECURSA_* variables.
    """
    from .config_cli import apply_config

    apply_config(ctx)


def build_rlm(
    options: dict[str, Any],
    *,
    tools: dict[str, Tool] | None = None,
    sub_call_tools: dict[str, Tool] | None = None,
    **changes: Any,
) -> RLM:
    """An RLM from the shared run options, ``changes`` (command-specific Settings
    fields: ``trace``, a replay's models) applied on top."""
    from .rlm import RLM

    settings = settings_from_options(options, **changes)
    return RLM.from_settings(settings, tools=tools, sub_call_tools=sub_call_tools)


@main.command()
@click.argument("query", required=False)
@context_options(
    "The long input: a text file, a folder, a glob, or - for standard input (the default "
    "when input is piped); repeat for several. PDF/DOCX need recursa[docs]."
)
@rlm_options()
@click.option(
    "--trace",
    "trace",
    default=None,
    metavar="FILE",
    is_flag=False,
    flag_value="",
    help="Write the trajectory as JSONL to FILE (default: a new file in the runs "
    "directory, see `recursa runs`).",
)
@click.option("--no-trace", is_flag=True, help="Write no trace.")
@click.option(
    "--trace-prompts",
    type=click.Choice(["cut", "full"]),
    default="cut",
    show_default=True,
    help="full: keep every prompt whole in the trace (for `recursa trace export "
    "--format chat-jsonl`); cut: prompts cut short, a small trace.",
)
@click.option(
    "--resume",
    "resume",
    default=None,
    metavar="TRACE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Continue the stopped run recorded in TRACE: its calls are replayed at no cost "
    "(rebuilding the REPL), then the run goes on live. QUERY defaults to the recorded one.",
)
@click.option(
    "--replay",
    "replay",
    default=None,
    metavar="TRACE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Re-run the run recorded in TRACE offline: models answer from the trace (its "
    "models and settings unless given as flags); exit 1 if the run diverges.",
)
@click.option(
    "--tools",
    "tools_target",
    default=None,
    metavar="MODULE:ATTR",
    help="A dict of host functions to expose in the REPL (they run in this process).",
)
@click.option(
    "--sub-call-tools",
    "sub_call_tools_target",
    default=None,
    metavar="MODULE:ATTR",
    help="A dict of host functions that sub-calls may be granted with "
    "llm_query(prompt, tools=[name]); never callable in the REPL itself.",
)
@click.option(
    "--schema",
    "schema_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="A JSON Schema file the final answer must validate against.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Live progress on stderr (default: on, off with --json).",
)
def run(
    query: str | None,
    context_args: tuple[str, ...],
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    encoding: str | None,
    trace: str | None,
    no_trace: bool,
    trace_prompts: str,
    resume: Path | None,
    replay: Path | None,
    tools_target: str | None,
    sub_call_tools_target: str | None,
    schema_file: str | None,
    as_json: bool,
    progress: bool | None,
    **options: Any,
) -> None:
    """Answer QUERY over the text in --context.

    Exit 0 when the run answered, 3 when it stopped without a valid answer (a budget or
    the iterations ran out, cells kept failing, the answer did not fit --schema), 1 when
    it failed, 2 for bad usage. With --json, stdout holds exactly one JSON object on
    every path: on a failure `answer` is null and `error` says why.

    \b
    Examples:
      recursa run "Who is the murderer?" -c novel.txt
      recursa run "List every date" -c log.txt -m openai/gpt-5-mini --budget-usd 0.50
      recursa run "Which contract has a penalty clause?" -c contracts/ --include "*.pdf"
      cat notes.txt | recursa run "Summarise" --json --temperature 0
    """
    from .progress import progress_sinks
    from .resume_hint import TraceWatch, resume_hint
    from .tools import load_tools

    report = _json_failure if as_json else None
    recorded_run = resume or replay
    if query is None and recorded_run is not None:
        with exit_codes(report=report):
            query = _recorded_query(recorded_run)
    if query is None or not query.strip():
        fail("the query is empty" if query is not None else "missing QUERY", EXIT_USAGE, report)
    show_progress = progress if progress is not None else not as_json
    recording = None
    with exit_codes(report=report):
        context = read_context(context_args, include=include, exclude=exclude, encoding=encoding)
        changes: dict[str, Any] = {}
        if replay is not None:
            if _on_command_line("model", "sub_model", "base_url"):
                fail(
                    "--replay takes the models from the trace: drop --model/--sub-model/--base-url",
                    EXIT_USAGE,
                    report,
                )
            recording, changes = _replay_settings(replay, options)
        schema = _load_schema(schema_file) if schema_file else None
        sub_call_tools = None
        if sub_call_tools_target:
            sub_call_tools = load_tools(sub_call_tools_target, flag="--sub-call-tools")
        rlm = build_rlm(
            options,
            tools=load_tools(tools_target) if tools_target else None,
            sub_call_tools=sub_call_tools,
            trace_prompts=trace_prompts,
            **trace_changes(trace, no_trace),
            **changes,
        )
        watch = TraceWatch()
        try:
            with progress_sinks(show_progress) as sinks:
                result = rlm.completion(
                    query, context, output_type=schema, sinks=[*sinks, watch], resume=resume
                )
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: say how to go on
            piped = not context_args or "-" in context_args  # read_context read stdin
            hint = resume_hint(watch, sys.argv, piped=piped)
            if hint:
                click.echo(hint, err=True)
            raise
        if recording is not None:
            recording.verify()
    code = EXIT_STOPPED if result.stopped else 0
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "exit_code": code}, ensure_ascii=False))
    else:
        click.echo(result.answer)
        for line in _citation_lines(result.citations):
            click.echo(line)
        if result.stopped:
            why = f": {result.error}" if result.error else ""
            click.echo(f"recursa: stopped without an answer ({result.stopped}){why}", err=True)
    if result.trace:
        click.echo(f"recursa: trace written to {result.trace}", err=True)
    if code:
        sys.exit(code)


#: The keys of ``recursa run --json``'s object (a Result's, plus ``exit_code``).
_RESULT_KEYS = ("answer", "usage", "cost_usd", "iterations", "depth_reached", "stopped",
                "trace", "isolation", "duration_s", "run_id", "error", "citations",
                "skipped")  # fmt: skip
#: The most characters of a quote printed under the answer (``--json`` has it whole).
_QUOTE_CHARS = 200


def _citation_lines(citations: Sequence[Citation]) -> list[str]:
    """``[1] source: "quote"`` per citation (``p.N`` where a page is known), unverified
    ones marked with the reason; a blank line before them."""
    lines = [""] if citations else []
    for n, c in enumerate(citations, 1):
        quote = " ".join(c.quote.split())
        if len(quote) > _QUOTE_CHARS:
            quote = quote[: _QUOTE_CHARS - 1] + "…"
        where = c.source + (f" p.{c.page}" if c.page is not None else "")
        mark = "" if c.verified else f"  [unverified: {c.reason}]"
        lines.append(f'[{n}] {where}: "{quote}"{mark}')
    return lines


def _json_failure(message: str, code: int) -> None:
    """``--json`` on a path without a result: the same keys, ``answer`` null."""
    failure: dict[str, Any] = dict.fromkeys(_RESULT_KEYS)
    failure.update(
        stopped="interrupted" if code > 128 else "error",  # 128 + N: stopped by signal N
        error=message,
        citations=[],
        skipped=[],
        exit_code=code,
    )
    click.echo(json.dumps(failure, ensure_ascii=False))


@main.command()
@context_options("The long input the conversation is about: a file, a folder or a glob.")
@rlm_options()
@click.option(
    "--trace",
    "trace",
    default=None,
    metavar="FILE",
    is_flag=False,
    flag_value="",
    help="Write each answer's trajectory to FILE (default: new files in the runs "
    "directory, see `recursa runs`).",
)
@click.option("--no-trace", is_flag=True, help="Write no trace.")
def chat(
    context_args: tuple[str, ...],
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    encoding: str | None,
    trace: str | None,
    no_trace: bool,
    **options: Any,
) -> None:
    """Ask question after question over one context; REPL variables are kept.

    Type a question and press Enter (Esc-Enter for a new line in it). Ctrl-C cancels
    the question being answered (the session goes on); Ctrl-D or /exit ends it.
    /help lists the commands: /vars (the REPL's variables), /cost (the session's
    totals), /trace, /exit.

    \b
    Examples:
      recursa chat -c contract.txt -m openai/gpt-5-mini
      recursa chat -c logs.txt --base-url http://localhost:8000/v1 -m Qwen/Qwen3-8B
    """
    if "-" in context_args:
        fail("chat reads questions from standard input: give --context a file", EXIT_USAGE)
    with exit_codes():
        context = read_context(
            context_args, include=include, exclude=exclude, encoding=encoding, stdin=False
        )
        rlm = build_rlm(options, **trace_changes(trace, no_trace))
        session = rlm.session(context)
    interactive = sys.stdin.isatty()
    received: list[int] = []  # SIGTERM / SIGHUP end the session
    try:
        with stop_signals_interrupt(received):
            read = _line_reader(interactive and sys.stdout.isatty())
            _chat_loop(session, read, interactive, received)
    except KeyboardInterrupt:
        if not received:
            click.echo("", err=True)  # after the ^C the terminal shows
    finally:
        session.close()
        if session.results:
            click.echo(f"recursa: session: {_totals(session)}", err=True)
    stopped_by_signal(received)


CHAT_HELP = """commands:
  /vars    the REPL's variables, their types and sizes
  /cost    what the session has used so far
  /trace   where the last answer's trace is
  /help    this list
  /exit    end the session (Ctrl-D too)
Ctrl-C cancels the question being answered; the session and its variables stay."""


def _line_reader(terminal: bool) -> Callable[[], str]:
    """How the next line is read: on a terminal (input and output), prompt_toolkit
    (history kept across sessions, arrow keys, Esc-Enter for a new line); otherwise
    plain standard input."""
    if not terminal:
        return lambda: input("")
    from platformdirs import user_state_path
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _new_line(event: Any) -> None:  # Enter sends the question; Esc-Enter breaks a line
        event.current_buffer.insert_text("\n")

    state = user_state_path("recursa", ensure_exists=True)
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(state / "chat_history")), key_bindings=keys
    )
    return lambda: prompt.prompt("you> ")


def _chat_loop(
    session: Any, read: Callable[[], str], interactive: bool, received: list[int]
) -> None:
    """Questions (and /commands) until EOF or /exit."""
    from .progress import progress_sinks

    while True:
        try:
            line = read()
        except EOFError:
            return
        except KeyboardInterrupt:  # at the prompt: a fresh line, as a shell does
            if received:
                raise
            continue
        question = line.strip()
        if not question:
            continue
        if question.startswith("/"):
            if _chat_command(session, question) == "exit":
                return
            continue
        try:
            with progress_sinks(interactive) as sinks:
                result = session.completion(question, sinks=sinks)
        except KeyboardInterrupt:
            if received:  # SIGTERM / SIGHUP: the session ends
                raise
            click.echo("recursa: cancelled; ask again or /exit", err=True)
            continue
        except RecursaError as exc:
            click.echo(f"recursa: error: {exc}", err=True)
            continue
        click.echo(f"recursa> {result.answer}" if interactive else result.answer)


def _chat_command(session: Any, command: str) -> str | None:
    """Answer a /command locally (never sent to the model); ``"exit"`` ends the chat."""
    name = command.split()[0].lower()
    if name in ("/exit", "/quit"):
        return "exit"
    if name == "/help":
        click.echo(CHAT_HELP)
    elif name == "/vars":
        shown = session.variables()
        click.echo("\n".join(f"{k}: {v}" for k, v in shown.items()) or "(no variables yet)")
    elif name == "/cost":
        click.echo(_totals(session))
    elif name == "/trace":
        last = session.results[-1].trace if session.results else None
        click.echo(str(last) if last else "(no trace: the chat was started with --no-trace)")
    else:
        click.echo(f"unknown command {name}; /help lists them", err=True)
    return None


def _totals(session: Any) -> str:
    """The session's questions, calls, tokens and cost so far."""
    results = session.results
    calls = sum(r.usage.calls for r in results)
    tokens = sum(r.usage.input_tokens + r.usage.output_tokens for r in results)
    costs = [r.cost_usd for r in results]
    cost = "unpriced" if any(c is None for c in costs) else f"${sum(costs):.4f}"
    return f"{len(results)} answers, {calls} calls, {tokens:,} tokens, {cost}"


@main.command()
@click.argument("trace", required=False)
@click.option(
    "--port",
    default=0,
    type=click.IntRange(0, 65535),
    help="Port on 127.0.0.1 (default: a free one).",
)
@click.option("--no-browser", is_flag=True, help="Print the address; do not open a browser.")
def view(trace: str | None, port: int, no_browser: bool) -> None:
    """Open the trajectory viewer on TRACE (a .jsonl file, a directory of them, or a
    run id or id prefix from `recursa runs`).

    Without TRACE it opens the latest run in the runs directory. The page is served on
    127.0.0.1 only; Ctrl-C stops it.

    \b
    Examples:
      recursa view
      recursa view 3f2a
      recursa view run.jsonl
      recursa view bench-out/traces --port 8800 --no-browser
    """
    from .runs_cli import resolve_view_target
    from .viewer import serve

    with exit_codes():
        path = resolve_view_target(trace)
    with exit_codes(os_error=f"cannot serve on port {port}"):
        serve(path, port=port, open_browser=not no_browser)


@main.group(name="trace")
def trace_group() -> None:
    """Work with recorded traces."""


@trace_group.command(name="export")
@click.argument("traces", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--otlp",
    "endpoint",
    default=None,
    metavar="ENDPOINT",
    help="Send one trace to an OTLP/HTTP collector, e.g. http://localhost:4318 "
    "(needs recursa[otel]).",
)
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["chat-jsonl"]),
    default=None,
    help="Write training data: one chat example per model request (needs traces "
    "recorded with --trace-prompts full).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where --format writes (required with it).",
)
@click.option(
    "--per",
    type=click.Choice(["request", "root-turn"]),
    default="request",
    show_default=True,
    help="request: every model request (sub-calls too); root-turn: only RLM node turns.",
)
@click.option("--only-answered", is_flag=True, help="Only runs that ended with an answer.")
@click.option(
    "--min-score",
    type=float,
    default=None,
    help="For bench directories: only runs scored at least this (rejection sampling).",
)
@click.option(
    "--content",
    is_flag=True,
    help="With --otlp: also export prompts, answers and code (off by default: they may "
    "be private).",
)
def trace_export(
    traces: tuple[Path, ...],
    endpoint: str | None,
    export_format: str | None,
    output: Path | None,
    per: str,
    only_answered: bool,
    min_score: float | None,
    content: bool,
) -> None:
    """Export traces: to OpenTelemetry (--otlp: one span per node, model call and cell),
    or as training data (--format chat-jsonl). TRACES are trace files; with
    --format they may also be bench directories (results.jsonl and traces/).

    \b
    Examples:
      recursa trace export run.jsonl --otlp http://localhost:4318
      recursa trace export run.jsonl --otlp http://collector:4318 --content
      recursa trace export runs/*.jsonl --format chat-jsonl -o train.jsonl --only-answered
      recursa trace export bench-out --format chat-jsonl -o sft.jsonl --min-score 1
    """
    if (endpoint is None) == (export_format is None):
        fail("give exactly one of --otlp ENDPOINT or --format chat-jsonl", EXIT_USAGE)
    if endpoint is not None:
        if len(traces) != 1 or traces[0].is_dir():
            fail("--otlp exports one trace file", EXIT_USAGE)
        from .otel import export_trace

        with exit_codes():
            summary = export_trace(traces[0], endpoint, include_content=content)
        click.echo(f"exported {summary.spans} spans (trace id {summary.trace_id})")
        return
    if output is None:
        fail("--format chat-jsonl needs -o OUT.jsonl", EXIT_USAGE)
    from .trace_export import export_chat_jsonl

    with exit_codes():
        written = export_chat_jsonl(
            list(traces), output, per=per, only_answered=only_answered, min_score=min_score,
        )  # fmt: skip
    click.echo(
        f"wrote {written.examples} examples from {written.runs} runs to {output}"
        + (f" ({written.skipped} runs left out)" if written.skipped else "")
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free one).",
)
@rlm_options()
@click.option(
    "--trace-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one JSONL trace per run here.",
)
@click.option(
    "--api-key",
    envvar="RECURSA_SERVE_API_KEY",
    default=None,
    metavar="KEY",
    help="Require 'Authorization: Bearer KEY' ($RECURSA_SERVE_API_KEY).",
)
@click.option(
    "--max-concurrent-runs",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="RLM runs at once.",
)
@click.option(
    "--max-queued",
    default=16,
    show_default=True,
    type=click.IntRange(min=0),
    help="Requests that may wait for a run slot; beyond them: 429.",
)
@click.option(
    "--allow-model",
    "allowed",
    multiple=True,
    metavar="SPEC",
    help="Also serve this provider/name as a request's model (repeatable).",
)
@click.option(
    "--allow-any-model",
    is_flag=True,
    help="Let requests name any provider/name as their root model.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="Allow browser pages from this origin (repeatable; '*' for any). Default: no CORS.",
)
@click.option(
    "--max-body-mb",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest request body, in MiB; beyond it: 413.",
)
@click.option(
    "--body-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request's body may take to arrive; beyond them: 408.",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a connection may take to send a request's head; then it is closed.",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections served at once; beyond them: 503.",
)
def serve(
    host: str,
    port: int,
    trace_dir: Path | None,
    api_key: str | None,
    max_concurrent_runs: int,
    max_queued: int,
    allowed: tuple[str, ...],
    allow_any_model: bool,
    cors_origins: tuple[str, ...],
    max_body_mb: int,
    body_timeout: float,
    header_timeout: float,
    max_connections: int,
    **options: Any,
) -> None:
    """Serve the RLM behind an OpenAI-compatible API (/v1/chat/completions).

    The model is called "recursa"; the budget, --max-depth and --max-iterations are
    per run, and a request's `rlm` field may only lower them. Needs the serve extra:
    pip install 'recursa[serve]'.

    \b
    Examples:
      recursa serve -m openai/gpt-5-mini --budget-usd 0.50 --api-key "$KEY"
      recursa serve --base-url http://localhost:8000/v1 -m Qwen/Qwen3-8B --port 8080
    """
    with exit_codes(os_error=f"cannot listen on {host}:{port}"):
        try:
            from .serve import make_app
            from .serve import serve as run_server
        except ModuleNotFoundError as exc:
            if "recursa[serve]" not in str(exc):
                raise
            raise ConfigError(str(exc)) from None
        app = make_app(
            build_rlm(options),
            trace_dir=trace_dir,
            api_key=api_key,
            max_concurrent_runs=max_concurrent_runs,
            max_queued=max_queued,
            allow_models=True if allow_any_model else set(allowed),
            max_body_bytes=max_body_mb * 1024 * 1024,
            body_timeout_seconds=body_timeout,
            cors_origins=cors_origins,
        )
        limits = {"header_timeout_seconds": header_timeout, "max_connections": max_connections}
        # an OSError: the port is taken, or the address is not ours
        run_server(app, host, port, limits=limits)


@main.command()
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Which generated document and question."
)
@rlm_options(
    "model",
    model={
        "help": "Model to run (default: the embedded local/qwen2.5-coder-0.5b).",
        "envvar": None,  # the demo is offline: $RECURSA_MODEL does not send it to a provider
    },
)
@click.option(
    "--tokens",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(min=10_000),
    help="Length of the generated document, in tokens (4 characters each).",
)
@rlm_options("sandbox", sandbox={"envvar": None})
@click.option(
    "--trace",
    "trace",
    default=None,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the trajectory (default: a new file in the runs directory).",
)
def demo(seed: int, model: str | None, tokens: int, sandbox: str, trace: Path | None) -> None:
    """Answer a question over a generated million-token document, offline.

    Runs the RLM on the embedded model (no API key, no network): the model's own
    code and sub-calls must find the one sentence that answers the question.

    \b
    Examples:
      recursa demo
      recursa demo --seed 3 --tokens 200000 --trace demo.jsonl
    """
    from .demo import DEFAULT_MODEL, print_demo, run_demo
    from .progress import progress_sinks

    def say(line: str) -> None:
        click.echo(f"recursa demo: {line}", err=True)

    with exit_codes(), progress_sinks(True) as sinks:
        result = run_demo(
            seed=seed, model=model or DEFAULT_MODEL, tokens=tokens, trace=trace,
            sandbox=sandbox, progress=say, sinks=sinks,
        )  # fmt: skip
    print_demo(result)
    if not result.correct:
        sys.exit(EXIT_FAILED)


def entry() -> NoReturn:
    """The ``recursa`` command: the CLI, then an exit without tearing the interpreter down.

    Freeing every module and object of a process that has imported the provider SDKs
    takes 100-200 ms, a tenth of a short run, for nothing. Exit handlers still run
    (log flushing, cleanup of anything left open); only that teardown is skipped.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (recursa ... | head)
            stream.flush()
    os._exit(code)


def _exit_status(code: object) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    entry()
