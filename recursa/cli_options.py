"""What the command line shares: the run options, the one error-to-exit mapping.

Layer 4 (a CLI surface, like :mod:`recursa.cli` and :mod:`recursa.bench.cli`): it
imports click and the library; nothing below the CLI imports it. ``recursa run``,
``chat`` and ``serve`` take every option of :data:`RUN_OPTIONS`; ``recursa bench``
takes a subset of the same option objects (with its own help where the meaning
narrows), so a flag is declared, checked and turned into
:class:`~recursa.settings.Settings` in one place.

Exit codes: 0 answered, 1 the run failed, 2 bad usage or input, 3 stopped without
a valid answer (a budget, the iterations or repeated cell errors ran out, or the final
answer did not validate), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung
up (SIGHUP).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .budget import Budget
from .config import KEYS as CONFIG_KEYS
from .config import env_name
from .errors import ConfigError, RecursaError
from .sampling import REASONING_EFFORTS, Sampling

if TYPE_CHECKING:
    from .settings import Settings

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])
#: Told ``(message, exit code)`` just before a command fails (``--json`` prints it).
FailureReport = Callable[[str, int], None]


def fail(message: str, code: int, report: FailureReport | None = None) -> NoReturn:
    """One line ``recursa: error: MESSAGE`` on stderr (``report`` told first), then exit
    with ``code``."""
    if report is not None:
        report(message, code)
    click.echo(f"recursa: error: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def exit_codes(
    *,
    interrupted: str = "interrupted",
    usage: tuple[type[Exception], ...] = (),
    os_error: str | None = None,
    report: FailureReport | None = None,
) -> Iterator[None]:
    """Turn what the block raises into the CLI's one-line error and exit code.

    :class:`~recursa.errors.ConfigError` (and the ``usage`` exception types) exit 2,
    any other :class:`~recursa.errors.RecursaError` 1, Ctrl-C 130 with ``interrupted``;
    SIGTERM and SIGHUP stop the block as Ctrl-C does and exit 143 and 129.
    With ``os_error`` an :class:`OSError` exits 1 as ``"{os_error}: {strerror}"`` (a
    port that cannot be bound); otherwise it propagates. ``report`` is told each failure
    before the command exits.
    """
    usage_errors: tuple[type[Exception], ...] = (ConfigError, *usage)
    received: list[int] = []
    try:
        with stop_signals_interrupt(received):
            yield
    except usage_errors as exc:
        fail(str(exc), EXIT_USAGE, report)
    except RecursaError as exc:
        fail(str(exc), EXIT_FAILED, report)
    except OSError as exc:
        if os_error is None:
            raise
        fail(f"{os_error}: {exc.strerror or exc}", EXIT_FAILED, report)
    except KeyboardInterrupt:
        stopped_by_signal(received, interrupted, report)
        fail(interrupted, EXIT_INTERRUPTED, report)


def stopped_by_signal(
    received: list[int], message: str = "interrupted", report: FailureReport | None = None
) -> None:
    """After a SIGTERM or SIGHUP (in ``received``): one line, exit 128 + N, as a shell
    reports a death by signal N."""
    if received:
        fail(f"{message} ({_signal_name(received[0])})", 128 + received[0], report)


#: Signals that stop a command the way Ctrl-C does (cleanup, run_end, one line), with
#: exit status 128 + N: SIGTERM 143, SIGHUP 129.
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


@contextlib.contextmanager
def stop_signals_interrupt(received: list[int]) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP do what SIGINT does.

    Inside ``asyncio.run`` SIGINT cancels the main task, so every ``finally`` runs
    (sandboxes close, context files go, the trace gets its ``run_end``) before
    ``KeyboardInterrupt`` comes out; outside it SIGINT raises ``KeyboardInterrupt``.
    The handler calls whatever handles SIGINT at that moment, so it does the same.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not stop:
            handler(signal.SIGINT, frame)  # asyncio's: cancel the main task (a 2nd: raise)
        else:  # SIGINT ignored or left to the OS: stop as its default handler would
            signal.default_int_handler(signal.SIGINT, frame)

    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            with contextlib.suppress(OSError, ValueError):
                previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(signum, handler)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def default_model() -> str:
    """``$RECURSA_MODEL``, else a hosted model whose key is set, else the embedded one."""
    if env := os.environ.get("RECURSA_MODEL"):
        return env
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return "openai/gpt-5-mini"
    return "local/qwen2.5-coder-0.5b"


def path_or_default(value: str | None) -> Path | bool | None:
    """``--trace``/``--cache`` given with no value mean "the default location"."""
    if value is None:
        return None
    return True if value == "" else Path(value)


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be positive, got {value}")
    return value


def _prices(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, tuple[float, float]]:
    prices: dict[str, tuple[float, float]] = {}
    for item in value or ():
        spec, sep, pair = item.rpartition("=")
        numbers = pair.split(",")
        try:
            if not sep or not spec or len(numbers) != 2:
                raise ValueError
            given = (float(numbers[0]), float(numbers[1]))
        except ValueError:
            raise click.BadParameter(
                f"{item!r}: expected MODEL=IN,OUT (USD per million tokens), "
                "e.g. openai/my-model=0.25,2.0"
            ) from None
        if not all(0 <= p < float("inf") for p in given):
            raise click.BadParameter(f"{item!r}: prices must be non-negative numbers")
        prices[spec] = given
    return prices


class SandboxChoice(click.Choice):  # type: ignore[type-arg]
    """The registered sandboxes (``recursa.sandboxes`` entry points), looked up when a
    value is checked or the help is shown, not when the CLI is imported: the scan of
    installed packages costs about 50 ms that ``recursa --help`` need not pay."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from .repl import sandbox_names

        return tuple(sandbox_names())

    @choices.setter
    def choices(self, value: object) -> None:
        """``click.Choice.__init__`` sets it; the names come from the registry instead."""


@dataclass(frozen=True)
class RunOption:
    """One shared option: its click declarations and attributes. Calling it makes the
    click decorator, with ``overrides`` (e.g. another ``help``) for one command."""

    decls: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, **overrides: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = click.option(*self.decls, **{**self.attrs, **overrides})
        return decorator


#: The run options, by the name of the parameter the command receives.
RUN_OPTIONS: dict[str, RunOption] = {
    "model": RunOption(
        ("--model", "-m"),
        {
            "default": None,
            "metavar": "M",
            "help": "Root model as provider/name (default: the config file's, "
            "openai/gpt-5-mini when OPENAI_API_KEY is set, else the embedded local model).",
        },
    ),
    "sub_model": RunOption(
        ("--sub-model",),
        {
            "default": None,
            "metavar": "M",
            "help": "Model for llm_query sub-calls (default: the root model).",
        },
    ),
    "base_url": RunOption(
        ("--base-url",),
        {
            "default": None,
            "metavar": "URL",
            "help": "An OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp); "
            "any model name then goes to it. Default: $OPENAI_BASE_URL.",
        },
    ),
    "max_depth": RunOption(
        ("--max-depth",),
        {
            "default": 1,
            "show_default": True,
            "type": click.IntRange(min=0),
            "help": "0: no sub-calls; 1: llm_query; 2+: rlm_query starts child RLMs.",
        },
    ),
    "max_iterations": RunOption(
        ("--max-iterations",),
        {
            "default": 30,
            "show_default": True,
            "type": click.IntRange(min=1),
            "help": "Root-model turns per node before it must answer.",
        },
    ),
    "budget_usd": RunOption(
        ("--budget-usd",),
        {
            "type": float,
            "default": None,
            "callback": _positive,
            "help": "Stop the whole tree once this much is spent.",
        },
    ),
    "budget_tokens": RunOption(
        ("--budget-tokens",),
        {
            "type": int,
            "default": None,
            "callback": _positive,
            "help": "Stop once this many tokens (input + output) are used.",
        },
    ),
    "budget_calls": RunOption(
        ("--budget-calls",),
        {
            "type": int,
            "default": None,
            "callback": _positive,
            "help": "Stop once this many model calls have started.",
        },
    ),
    "budget_seconds": RunOption(
        ("--budget-seconds",),
        {
            "type": float,
            "default": None,
            "callback": _positive,
            "help": "Stop after this much wall time.",
        },
    ),
    "cell_timeout": RunOption(
        ("--cell-timeout",),
        {
            "default": 120.0,
            "show_default": True,
            "type": float,
            "callback": _positive,
            "help": "Seconds a code cell may run before it is interrupted.",
        },
    ),
    "sandbox": RunOption(
        ("--sandbox",),
        {
            "default": "subprocess",
            "show_default": True,
            "type": SandboxChoice(),
            "help": "Where model code runs. inprocess is NOT a security boundary.",
        },
    ),
    "concurrency": RunOption(
        ("--concurrency",),
        {
            "default": 32,
            "show_default": True,
            "type": click.IntRange(min=1),
            "help": "Sub-calls in flight per model.",
        },
    ),
    "request_timeout": RunOption(
        ("--request-timeout",),
        {
            "default": 300.0,
            "show_default": True,
            "type": float,
            "callback": _positive,
            "help": "Seconds one model request may take before it is retried (never past "
            "--budget-seconds).",
        },
    ),
    "max_children": RunOption(
        ("--max-children",),
        {
            "default": None,
            "type": click.IntRange(min=1),
            "help": "Child RLMs (rlm_query/rlm_batch sandboxes) running at once per depth "
            "(default: one per core, at least 2).",
        },
    ),
    "prices": RunOption(
        ("--price", "prices"),
        {
            "multiple": True,
            "metavar": "MODEL=IN,OUT",
            "callback": _prices,
            "help": "USD per million input and output tokens for MODEL (repeatable); "
            "wins over the built-in prices. Under --budget-usd a model with no price is "
            "refused.",
        },
    ),
    "allowed_models": RunOption(
        ("--allow-model", "allowed_models"),
        {
            "multiple": True,
            "metavar": "SPEC",
            "help": "Also let model code call this provider/name in llm_query(model=...) "
            "(repeatable; the root and sub models always are).",
        },
    ),
    "temperature": RunOption(
        ("--temperature",),
        {
            "type": click.FloatRange(0, 2),
            "default": None,
            "help": "Sampling temperature of the root model (default: the provider's).",
        },
    ),
    "sub_temperature": RunOption(
        ("--sub-temperature",),
        {
            "type": click.FloatRange(0, 2),
            "default": None,
            "help": "Temperature of sub-calls and child RLMs (default: --temperature).",
        },
    ),
    "top_p": RunOption(
        ("--top-p",),
        {
            "type": click.FloatRange(0, 1, min_open=True),
            "default": None,
            "help": "Nucleus sampling for every model (default: the provider's).",
        },
    ),
    "seed": RunOption(
        ("--seed",),
        {
            "type": int,
            "default": None,
            "help": "Sampling seed for every model, where the provider supports one.",
        },
    ),
    "max_tokens": RunOption(
        ("--max-tokens",),
        {
            "type": click.IntRange(min=1),
            "default": None,
            "help": "Most output tokens of one root-model reply (a budget may cap it lower).",
        },
    ),
    "sub_max_tokens": RunOption(
        ("--sub-max-tokens",),
        {
            "type": click.IntRange(min=1),
            "default": None,
            "help": "Most output tokens of one sub-call reply (default: --max-tokens).",
        },
    ),
    "reasoning_effort": RunOption(
        ("--reasoning-effort",),
        {
            "type": click.Choice(REASONING_EFFORTS),
            "default": None,
            "help": "Reasoning effort of the root model (models that reason; others refuse).",
        },
    ),
    "sub_reasoning_effort": RunOption(
        ("--sub-reasoning-effort",),
        {
            "type": click.Choice(REASONING_EFFORTS),
            "default": None,
            "help": "Reasoning effort of sub-calls (default: --reasoning-effort).",
        },
    ),
    "max_errors": RunOption(
        ("--max-errors",),
        {
            "type": click.IntRange(min=1),
            "default": None,
            "help": "Stop a node after this many consecutive failed cells (default: never).",
        },
    ),
    "require_citations": RunOption(
        ("--require-citations",),
        {
            "is_flag": True,
            "default": False,
            "help": "Send an answer without a verified citation into the context back to the "
            "model; still none after a few tries: stop (exit 3, stopped: unverified).",
        },
    ),
    "system_prompt": RunOption(
        ("--system-prompt",),
        {
            "type": click.Path(exists=True, dir_okay=False, path_type=Path),
            "default": None,
            "metavar": "FILE",
            "help": "Use FILE's text as the system prompt. Placeholders: "
            "{context_description}, {repl_functions}, {tools}, {max_depth} ({{ }} for braces).",
        },
    ),
    "cache": RunOption(
        ("--cache", "cache"),
        {
            "default": None,
            "metavar": "PATH",
            "is_flag": False,
            "flag_value": "",
            "help": "Answer repeated model requests from a SQLite cache, at no cost (no PATH: "
            "$RECURSA_CACHE_DIR/responses.sqlite or ~/.cache/recursa/responses.sqlite).",
        },
    ),
}

_BUDGET_OPTIONS = {"usd": "budget_usd", "tokens": "budget_tokens", "seconds": "budget_seconds",
                   "calls": "budget_calls"}  # fmt: skip


def job_options(*, out_help: str, concurrency_help: str) -> Callable[[F], F]:
    """``--out``, ``--concurrency``, ``--executor`` and ``--ray-address``: the options of
    the commands that run many jobs, resumably, here or on Ray (bench, batch)."""
    options = [
        click.option(
            "--out",
            "out_dir",
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help=out_help,
        ),
        click.option(
            "--concurrency",
            default=4,
            show_default=True,
            type=click.IntRange(min=1),
            help=concurrency_help,
        ),
        click.option(
            "--executor",
            default="local",
            show_default=True,
            type=click.Choice(["local", "ray"]),
            help="local: one process; ray: Ray tasks (local Ray, or --ray-address).",
        ),
        click.option("--ray-address", default=None, metavar="A", help="An existing Ray cluster."),
    ]

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def rlm_options(*names: str, **overrides: Mapping[str, Any]) -> Callable[[F], F]:
    """Add the shared run options to a command: all of :data:`RUN_OPTIONS`, or the
    ``names`` given (in that order). ``overrides`` maps an option's name to the click
    attributes that differ for this command (``sub_model={"help": ...}``). The command
    receives each option as the keyword argument named as its key."""
    chosen = names or tuple(RUN_OPTIONS)
    unknown = sorted((set(chosen) | set(overrides)) - set(RUN_OPTIONS))
    if unknown or set(overrides) - set(chosen):
        raise TypeError(f"not a run option of this command: {', '.join(unknown or overrides)}")
    options = [
        RUN_OPTIONS[name](**{**_configured(name), **overrides.get(name, {})}) for name in chosen
    ]

    def decorate(command: F) -> F:
        # a flag the command declares itself (serve's --allow-model) stays its own
        declared = {opt for p in getattr(command, "__click_params__", ()) for opt in p.opts}
        for option in reversed(options):
            probe = option(lambda: None)
            if declared & set(probe.__click_params__[0].opts):
                continue
            command = option(command)
        return command

    return decorate


def _configured(name: str) -> dict[str, Any]:
    """A configurable option reads ``RECURSA_<NAME>`` (and the config file: see
    :mod:`recursa.config_cli`); ``envvar=None`` in a command's overrides opts out."""
    return {"envvar": env_name(name), "show_envvar": True} if name in CONFIG_KEYS else {}


def budget_from_options(options: Mapping[str, Any]) -> Budget | None:
    """The budget the ``--budget-*`` options ask for (those the command has), or ``None``."""
    budget = Budget(**{limit: options.get(name) for limit, name in _BUDGET_OPTIONS.items()})
    return None if budget == Budget() else budget


def settings_from_options(options: Mapping[str, Any], **changes: Any) -> Settings:
    """The run :class:`~recursa.settings.Settings` the shared options ask for.

    ``options`` are the values of :data:`RUN_OPTIONS` as the command received them;
    ``changes`` (what the command sets itself: ``trace``, a replay's models) win.
    """
    from .settings import Settings

    fields: dict[str, Any] = {
        "model": options["model"] or default_model(),
        "sub_model": options["sub_model"],
        "base_url": options["base_url"],
        "max_depth": options["max_depth"],
        "max_iterations": options["max_iterations"],
        "budget": budget_from_options(options),
        "sandbox": options["sandbox"],
        "cell_timeout": options["cell_timeout"],
        "max_concurrency": options["concurrency"],
        "cache": path_or_default(options["cache"]),
        "request_timeout": options.get("request_timeout") or 300.0,
        "prices": options.get("prices") or {},
        "allowed_models": tuple(options.get("allowed_models") or ()),
    }
    if options.get("max_children") is not None:
        fields["max_child_sandboxes"] = options["max_children"]
    root, sub = sampling_from_options(options)
    fields["model_settings"] = root
    if sub != root:
        fields["sub_model_settings"] = sub
    if options.get("max_errors") is not None:
        fields["max_errors"] = options["max_errors"]
    if options.get("require_citations"):
        fields["require_citations"] = True
    if options.get("system_prompt") is not None:
        fields["system_prompt"] = read_text_option(options["system_prompt"], "--system-prompt")
    return Settings(**{**fields, **changes})


def sampling_from_options(options: Mapping[str, Any]) -> tuple[Sampling, Sampling]:
    """How the root model and the sub-calls sample, from the sampling flags: each
    ``--sub-*`` flag defaults to its root flag; ``--top-p`` and ``--seed`` are shared."""
    shared = {"top_p": options.get("top_p"), "seed": options.get("seed")}
    root = Sampling(
        temperature=options.get("temperature"), max_tokens=options.get("max_tokens"),
        reasoning_effort=options.get("reasoning_effort"), **shared,
    )  # fmt: skip
    sub = root.replace(
        **{
            field: value
            for field, value in (
                ("temperature", options.get("sub_temperature")),
                ("max_tokens", options.get("sub_max_tokens")),
                ("reasoning_effort", options.get("sub_reasoning_effort")),
            )
            if value is not None
        }
    )
    return root, sub


def read_text_option(path: Path, flag: str) -> str:
    """A text file a flag names, or a usage error saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
