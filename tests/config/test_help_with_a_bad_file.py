"""A broken configuration file never hides the help: ``--help`` on any command prints
it and exits 0 (one warning line names the file and line), while running a command
still fails with the file's one-line error, exit 2. Through the real CLI, as a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli

#: (the file's text, the error it gives, after ``FILE:``)
BAD_FILES = [
    ('model = "openai/m"\nmax_depth = [1\n', "2: not valid TOML"),
    ('model = "openai/m"\n\nmax_depth = -1\n', "3: max_depth: -1 is not in the range x>=0"),
]


@pytest.fixture(params=BAD_FILES, ids=["not-toml", "bad-value"])
def bad_config(
    request: pytest.FixtureRequest, tmp_path: Path, clean_env: dict[str, str]
) -> tuple[dict[str, str], str]:
    """The environment naming a broken config file, and the start of its error."""
    text, error = request.param
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return {**clean_env, "RECURSA_CONFIG": str(path)}, f"{path}:{error}"


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--help"],
        ["run", "a question", "-c", "notes.txt", "-h"],
        ["chat", "--help"],
        ["runs", "--help"],
        ["runs", "show", "--help"],  # a subcommand of a configured group
        ["bench", "--help"],
    ],
)
def test_help_prints_and_exits_0_with_one_warning_line(
    bad_config: tuple[dict[str, str], str], args: list[str]
) -> None:
    env, error = bad_config
    proc = run_cli(args, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: ") and "--help" in proc.stdout
    (warning,) = proc.stderr.splitlines()
    assert warning.startswith(f"recursa: warning: {error}")


def test_the_groups_own_help_and_config_path_need_no_file(
    bad_config: tuple[dict[str, str], str],
) -> None:
    env, _ = bad_config
    listing = run_cli(["--help"], env)
    assert (listing.returncode, listing.stderr) == (0, "")
    assert "Commands:" in listing.stdout
    path = run_cli(["config", "path"], env)
    assert (path.returncode, path.stdout.strip()) == (0, env["RECURSA_CONFIG"])


@pytest.mark.parametrize(
    "args",
    [
        ["run", "a question", "-c", "NOTES"],
        ["run", "a question", "-c", "-h"],  # -h is the value of -c here: no help asked for
        ["run", "--no-such-flag", "--help"],  # a usage error: the file's error comes first
        ["runs", "no-such-command", "--help"],
        ["runs"],
    ],
)
def test_a_command_that_runs_still_fails_with_the_files_one_line_error(
    bad_config: tuple[dict[str, str], str], args: list[str], tmp_path: Path
) -> None:
    env, error = bad_config
    notes = tmp_path / "notes.txt"
    notes.write_text("some notes", encoding="utf-8")
    proc = run_cli([str(notes) if arg == "NOTES" else arg for arg in args], env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"recursa: error: {error}")
