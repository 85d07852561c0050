"""The README's flag table of ``recursa run`` is the CLI's: every flag the command takes
is documented there, and every flag documented there exists."""

from __future__ import annotations

import re
from pathlib import Path

import click

from recursa.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
# "--budget-usd/-tokens" documents --budget-usd and --budget-tokens
_FLAGS = re.compile(r"--[a-z][a-z0-9-]*(?:/-{1,2}[a-z][a-z0-9-]*)*")


def documented_flags() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Command line") :]
    section = section[: section.index("\n## ", 5)]
    flags: set[str] = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        for token in _FLAGS.findall(row.split("|")[1]):
            first, *others = token.split("/")
            flags.add(first)
            for other in others:
                flags.add(other if other.startswith("--") else first.rsplit("-", 1)[0] + other)
    return flags


def command_flags(command: click.Command) -> set[str]:
    return {
        opt
        for param in command.params
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--") and opt != "--help"
    }


def test_every_run_flag_is_in_the_readme_and_every_readme_flag_exists() -> None:
    command = main.commands["run"]
    documented, actual = documented_flags(), command_flags(command)
    assert actual - documented == set(), "flags of `recursa run` missing from the README"
    assert documented - actual == set(), "README flags `recursa run` does not take"


def _leaves(group: click.Group, prefix: str = "") -> list[tuple[str, str]]:
    """Every command that runs something, with its help and its group's (a group's
    examples may serve its subcommands)."""
    found: list[tuple[str, str]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += [(n, h + (command.help or "")) for n, h in _leaves(command, f"{name} ")]
        else:
            found.append((prefix + name, command.help or ""))
    return found


def test_every_command_shows_examples_in_its_help() -> None:
    assert [name for name, text in _leaves(main) if "Examples:" not in text] == []


def test_the_listing_of_lazy_commands_says_what_each_command_says_of_itself() -> None:
    """``recursa --help`` lists the commands of other modules without importing them:
    each summary kept in ``LAZY_COMMANDS`` must equal the command's own docstring line."""
    import importlib

    from recursa.cli import LAZY_COMMANDS

    for name, (module, attr, summary) in LAZY_COMMANDS.items():
        command = getattr(importlib.import_module(module, "recursa"), attr)
        assert command.name == name
        assert command.get_short_help_str(1_000) == summary, name


def test_help_and_a_usage_error_import_no_engine_and_no_subcommand_module() -> None:
    """What ``recursa --help`` and a bad ``recursa run`` load: the CLI, click and the
    options, not the engine, the sandboxes' registry, Ray, the mcp SDK or the cache."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from recursa.cli import main\n"
        "for args in (['--help'], ['run', '--no-such-flag']):\n"
        "    CliRunner().invoke(main, args)\n"
        "heavy = [m for m in ('recursa.engine', 'recursa.rlm', 'recursa.models.cache',\n"
        "    'recursa.batch', 'recursa.bench.runner', 'recursa.mcp_server', 'ray', 'mcp',\n"
        "    'asyncio', 'importlib.metadata') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
