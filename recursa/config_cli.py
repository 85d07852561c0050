"""``recursa config``, and the configuration as the commands' defaults.

Each run option that :data:`~recursa.config.KEYS` names reads ``RECURSA_<KEY>`` (click's
``envvar``, set by :func:`~recursa.cli_options.rlm_options`) and takes its default from
the config file (click's ``default_map``, set by :func:`apply_config` before a
configured command parses its arguments), so click's own order gives the precedence:
flag, environment, file, built-in default. Values from the file are checked with the
option's own type and range when it is loaded, so a bad one is reported at its line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .cli_options import RUN_OPTIONS, default_model, exit_codes
from .config import KEYS, ConfigFile, config_path, env_name, load_config, platform_runs_dir
from .errors import ConfigError

#: The commands the configuration applies to (a command not yet registered is skipped).
CONFIGURED_COMMANDS = frozenset({"run", "chat", "serve", "mcp", "batch", "bench", "runs", "view"})
_META_KEY = "recursa.config"
#: ``ctx.meta`` key: the arguments after the subcommand's name (set by the ``recursa`` group).
COMMAND_ARGS = "recursa.command_args"


def apply_config(ctx: click.Context) -> None:
    """For a configured subcommand of the ``recursa`` group ``ctx``: load and check the
    file (exit 2 with one line if it is bad, unless the command line asks for help)
    and make its values the defaults."""
    group = ctx.command
    if ctx.invoked_subcommand not in CONFIGURED_COMMANDS or not isinstance(group, click.Group):
        return
    with exit_codes():
        try:
            config = checked_config()
        except ConfigError as error:
            _show_help_if_asked(group, ctx, error)
            raise
    ctx.meta[_META_KEY] = config
    defaults = {
        name: defaults_for(command, config)
        for name, command in group.commands.items()
        if name in CONFIGURED_COMMANDS
    }
    # recursa mcp writes a trace per call by default: into the runs directory
    defaults.setdefault("mcp", {})["trace_dir"] = config.runs_dir()
    ctx.default_map = defaults


def _show_help_if_asked(group: click.Group, ctx: click.Context, error: ConfigError) -> None:
    """A broken config file must not hide the help: parse the subcommand's arguments as
    click is about to (without the file's defaults), so that a ``--help`` among them
    shows the help and exits 0, after one warning line with ``error``. Returns when no
    help is asked for (the command then fails with ``error``)."""
    args = ctx.meta.get(COMMAND_ARGS)
    name = ctx.invoked_subcommand
    command = group.get_command(ctx, name) if name is not None else None
    if args is None or command is None:
        return
    parent, rest = ctx, list(args)
    try:
        while True:
            sub = command.make_context(name, rest, parent=parent)
            # a group's subcommand and its args (click 8.1 names it without the underscore)
            protected = getattr(sub, "_protected_args", None)
            if protected is None:
                protected = sub.protected_args
            rest = [*protected, *sub.args]
            if not isinstance(command, click.Group) or not rest:
                return
            name, found, rest = command.resolve_command(sub, rest)
            if found is None:
                return
            parent, command = sub, found
    except click.exceptions.Exit:  # --help (or -h) was parsed: the help is out
        click.echo(f"recursa: warning: {error}", err=True)
        raise
    except click.ClickException:  # a usage error: the config file's error comes first
        return


def defaults_for(command: click.Command, config: ConfigFile) -> dict[str, Any]:
    """The file's values for ``command``'s configurable options (a group: per
    subcommand). An option is configurable when it reads ``RECURSA_<ITS NAME>``, so a
    command's own option of the same name (bench's ``--concurrency``) is left alone."""
    if isinstance(command, click.Group):
        return {name: defaults_for(sub, config) for name, sub in command.commands.items()}
    return {
        param.name: config.values[param.name]
        for param in command.params
        if param.name in config.values and is_configurable(param)
    }


def is_configurable(param: click.Parameter) -> bool:
    """Whether ``param`` is a run option the configuration sets."""
    return (
        isinstance(param, click.Option)
        and param.name in KEYS
        and param.envvar == env_name(param.name)
    )


def checked_config(path: Path | None = None) -> ConfigFile:
    """:func:`~recursa.config.load_config`, each run option's value also checked by the
    option itself (``max_depth = -1`` is refused as ``--max-depth -1`` would be)."""
    config = load_config(path)
    probe = click.Context(click.Command("recursa"))
    for key, value in config.values.items():
        if key not in RUN_OPTIONS:
            continue
        option = _option(key)
        try:
            converted = option.type_cast_value(probe, value)
            if option.callback is not None:
                option.callback(probe, option, converted)
        except click.BadParameter as exc:
            raise config.error(key, exc.message) from None
    return config


def _option(name: str) -> click.Option:
    """The click option a run option makes."""
    command = RUN_OPTIONS[name]()(lambda: None)
    option: click.Option = command.__click_params__[0]  # type: ignore[attr-defined]
    return option


def loaded_config() -> ConfigFile:
    """The configuration this invocation loaded (loaded and checked now if none was:
    a command invoked without the ``recursa`` group, as tests may)."""
    ctx = click.get_current_context(silent=True)
    config = ctx.meta.get(_META_KEY) if ctx is not None else None
    return config if isinstance(config, ConfigFile) else checked_config()


def configured_runs_dir() -> Path:
    """Where this invocation writes and finds runs (see :meth:`ConfigFile.runs_dir`)."""
    return loaded_config().runs_dir()


def trace_changes(trace: str | None, no_trace: bool) -> dict[str, Any]:
    """The :class:`~recursa.settings.Settings` changes of ``--trace [FILE]`` and
    ``--no-trace``: FILE exactly; no FILE (or no flag) a new file in the runs directory;
    ``--no-trace`` none."""
    if no_trace:
        if trace is not None:
            raise ConfigError("--trace and --no-trace contradict each other: give one")
        return {"trace": None}
    if trace:
        return {"trace": Path(trace)}
    return {"trace": True, "runs_dir": configured_runs_dir()}


@dataclass(frozen=True)
class Effective:
    """One key's value in effect, and where it comes from: ``env``, ``file``, ``default``."""

    key: str
    value: Any
    source: str

    def to_dict(self) -> dict[str, Any]:
        value = str(self.value) if isinstance(self.value, Path) else self.value
        return {"value": value, "source": self.source, "env": env_name(self.key)}


def effective(config: ConfigFile) -> list[Effective]:
    """Every key, from the environment, else the file, else its built-in default."""
    found = []
    for key in KEYS:
        if env := os.environ.get(env_name(key)):
            found.append(Effective(key, env, "env"))
        elif key in config.values:
            found.append(Effective(key, config.values[key], "file"))
        else:
            found.append(Effective(key, _builtin_default(key), "default"))
    return found


def _builtin_default(key: str) -> Any:
    if key == "runs_dir":
        return platform_runs_dir()
    if key == "model":
        return default_model()
    return RUN_OPTIONS[key].attrs.get("default")


@click.group("config")
def config_group() -> None:
    """Where the configuration file is, and what is in effect.

    The file is TOML, keys as the run flags (budget_usd = 0.5, runs_dir = "~/runs");
    a flag wins over RECURSA_<KEY> in the environment, which wins over the file.
    RECURSA_CONFIG names another file. API keys stay in the environment.

    \b
    Examples:
      recursa config path
      recursa config show --json
    """


@config_group.command("path")
def path_command() -> None:
    """Print where the configuration file is read from (it may not exist yet)."""
    click.echo(str(config_path()))


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show_command(as_json: bool) -> None:
    """Print every setting in effect and where it comes from (env, file, default)."""
    with exit_codes():
        config = checked_config()
    entries = effective(config)
    if as_json:
        shown = {
            "path": str(config.path),
            "exists": config.exists,
            "settings": {e.key: e.to_dict() for e in entries},
        }
        click.echo(json.dumps(shown, ensure_ascii=False))
        return
    click.echo(f"# {config.path}" + ("" if config.exists else " (no file)"))
    shown_values = ["-" if e.value is None else str(e.value) for e in entries]
    width, value_width = max(len(key) for key in KEYS), max(map(len, shown_values))
    for e, value in zip(entries, shown_values, strict=True):
        origin = env_name(e.key) if e.source == "env" else e.source
        click.echo(f"{e.key:<{width}}  {value:<{value_width}}  {origin}")
