"""The configuration file: where it is, what it may say, the errors (file, line, key),
and the precedence flag > RECURSA_* variable > file > built-in default, through the
real CLI against a real local server."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from recursa.cli import main
from recursa.cli_options import RUN_OPTIONS
from recursa.config import KEYS, config_path, default_runs_dir, load_config
from recursa.config_cli import apply_config, checked_config, defaults_for, is_configurable
from recursa.errors import ConfigError
from recursa.settings import Settings
from recursa.testing import Received, ScriptedServer
from tests.helpers import run_cli


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("RECURSA_CONFIG", str(path))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        checked_config(path)
    return str(caught.value)


def test_recursa_config_names_the_file_and_no_file_is_an_empty_config(
    config_file: Path,
) -> None:
    assert config_path() == config_file
    loaded = load_config()
    assert (loaded.exists, loaded.values) == (False, {})


def test_values_are_read_and_paths_are_taken_from_the_files_folder(config_file: Path) -> None:
    write(
        config_file,
        '# defaults\nmodel = "openai/m"\nbudget_usd = 1\ntemperature = 0.5\n'
        'runs_dir = "runs"\ncache = "/abs/responses.sqlite"\n',
    )
    loaded = checked_config()
    assert loaded.values["model"] == "openai/m"
    assert loaded.values["budget_usd"] == 1
    assert loaded.values["runs_dir"] == config_file.parent / "runs"
    assert loaded.values["cache"] == Path("/abs/responses.sqlite")
    assert loaded.lines["temperature"] == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('model = "a/b"\nmodl = "x"\n', ":2: modl: unknown key"),
        ("\nmax_depth = true\n", ":2: max_depth: must be an integer, got true"),
        ('max_depth = "2"\n', ":1: max_depth: must be an integer, got str '2'"),
        ("[budget]\nusd = 1\n", ":1: budget: unknown key"),
        ('model = "a/b"\n\nmax_depth = -1\n', ":3: max_depth: -1 is not in the range x>=0"),
        ("budget_usd = 0\n", ":1: budget_usd: must be positive, got 0"),
        ('sandbox = "nowhere"\n', ":1: sandbox: 'nowhere' is not one of"),
        ('runs_dir = ""\n', ":1: runs_dir: must be a path"),
        ('model = "a/b"\nmax_iterations = \n', ":2: not valid TOML: Invalid value"),
        ('model = "a/b"\nmodel = "c/d"\n', ":2: not valid TOML: Cannot overwrite a value"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_the_line_and_the_key(
    config_file: Path, text: str, expected: str
) -> None:
    message = error_of(write(config_file, text))
    assert message.startswith(str(config_file) + expected), message
    assert "\n" not in message


@pytest.mark.parametrize("key", ["api_key", "openai_api_key", "OPENAI_API_KEY", "token", "secret"])
def test_api_keys_are_refused_with_a_pointer_to_the_environment(
    config_file: Path, key: str
) -> None:
    message = error_of(write(config_file, f'model = "a/b"\n{key} = "sk-123"\n'))
    assert f":2: {key}: API keys are never read from the config file" in message
    assert "environment" in message and "sk-123" not in message


def test_not_utf8_is_refused(config_file: Path) -> None:
    config_file.write_bytes(b'model = "\xff"\n')
    assert error_of(config_file) == f"{config_file}: not UTF-8 text"


def test_every_key_is_a_run_option_or_the_runs_directory() -> None:
    assert set(KEYS) - set(RUN_OPTIONS) == {"runs_dir"}


def test_only_the_run_options_a_command_takes_from_rlm_options_are_configured(
    config_file: Path,
) -> None:
    write(config_file, 'model = "openai/m"\nconcurrency = 7\nseed = 3\n')
    config = checked_config()
    run_defaults = defaults_for(main.commands["run"], config)
    assert run_defaults == {"model": "openai/m", "concurrency": 7, "seed": 3}
    # bench's --concurrency (runs in flight) and --seed (items) are its own options
    bench = main.get_command(click.Context(main), "bench")  # imported when first asked for
    assert bench is not None and defaults_for(bench, config) == {"model": "openai/m"}
    # the offline demo ignores the configured model
    demo_model = next(p for p in main.commands["demo"].params if p.name == "model")
    assert not is_configurable(demo_model)


def test_the_python_api_never_reads_the_file(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(config_file, 'runs_dir = "elsewhere"\nmax_depth = 3\n')
    monkeypatch.setenv("RECURSA_RUNS_DIR", str(tmp_path / "env-runs"))
    settings = Settings(model="openai/m", trace=True)
    path = settings.trace_path("abc123")
    assert path is not None and path.parent == tmp_path / "env-runs" == default_runs_dir()
    assert settings.max_depth == 1
    monkeypatch.delenv("RECURSA_RUNS_DIR")
    unset = Settings(model="openai/m", trace=True).trace_path("abc123")
    assert unset is not None and unset.parent.name == "runs" and unset.is_absolute()


# -- through the real CLI ------------------------------------------------------------


def answer(request: Received) -> str:
    return "```repl\nFINAL('forty-two')\n```"


@pytest.fixture
def cli_env(clean_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **clean_env,
        "RECURSA_CONFIG": str(tmp_path / "config.toml"),
        "RECURSA_RUNS_DIR": str(tmp_path / "runs"),
    }


@pytest.fixture
def context_file(tmp_path: Path) -> Path:
    return write(tmp_path / "context.txt", "alpha beta gamma")


def test_precedence_is_flag_then_environment_then_file_then_default(
    cli_env: dict[str, str], tmp_path: Path, context_file: Path
) -> None:
    with ScriptedServer(answer) as server:
        write(
            tmp_path / "config.toml",
            f'model = "openai/from-file"\nbase_url = "{server.url}"\nsandbox = "inprocess"\n'
            "max_iterations = 4\n",
        )
        base = ["run", "q", "-c", str(context_file), "--json", "--no-trace"]
        from_file = run_cli(base, cli_env)
        from_env = run_cli(base, {**cli_env, "RECURSA_MODEL": "openai/from-env"})
        from_flag = run_cli(
            [*base, "-m", "openai/from-flag"], {**cli_env, "RECURSA_MODEL": "openai/from-env"}
        )
        models = [r["model"] for r in server.requests]
    for proc in (from_file, from_env, from_flag):
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["answer"] == "forty-two"
    assert models == ["from-file", "from-env", "from-flag"]

    shown = run_cli(["config", "show", "--json"], {**cli_env, "RECURSA_MAX_ITERATIONS": "9"})
    settings = json.loads(shown.stdout)["settings"]
    assert settings["model"] == {"value": "openai/from-file", "source": "file",
                                 "env": "RECURSA_MODEL"}  # fmt: skip
    assert settings["max_iterations"]["value"] == "9"
    assert settings["max_iterations"]["source"] == "env"
    assert settings["max_depth"] == {"value": 1, "source": "default", "env": "RECURSA_MAX_DEPTH"}
    assert settings["runs_dir"]["value"] == str(tmp_path / "runs")
    assert settings["runs_dir"]["source"] == "env"


def test_a_malformed_file_exits_2_with_one_line_and_config_path_still_works(
    cli_env: dict[str, str], tmp_path: Path, context_file: Path
) -> None:
    config = write(tmp_path / "config.toml", 'model = "openai/m"\nmax_depth = [1\n')
    proc = run_cli(["run", "q", "-c", str(context_file)], cli_env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"recursa: error: {config}:2: not valid TOML")
    assert run_cli(["config", "show"], cli_env).returncode == 2
    path = run_cli(["config", "path"], cli_env)
    assert (path.returncode, path.stdout.strip()) == (0, str(config))


def test_an_api_key_in_the_environment_is_never_written_to_the_trace(
    cli_env: dict[str, str], tmp_path: Path, context_file: Path
) -> None:
    secret = "sk-test-do-not-write-7f3a9c"
    with ScriptedServer(answer, api_key=secret) as server:  # the key is really used
        proc = run_cli(
            ["run", "q", "-c", str(context_file), "-m", "openai/s", "--base-url", server.url,
             "--sandbox", "inprocess", "--cache", str(tmp_path / "cache.sqlite")],
            {**cli_env, "OPENAI_API_KEY": secret},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    traces = list((tmp_path / "runs").glob("*.jsonl"))  # the default: the runs directory
    assert len(traces) == 1
    written = traces[0].read_text(encoding="utf-8")
    assert '"type": "run_end"' in written
    assert secret not in written + proc.stdout + proc.stderr
    cached = b"".join(p.read_bytes() for p in tmp_path.glob("cache.sqlite*"))
    assert b"forty-two" in cached and secret.encode() not in cached


def test_a_replay_takes_its_models_and_depth_from_the_trace_not_the_config(
    cli_env: dict[str, str], tmp_path: Path, context_file: Path
) -> None:
    trace = tmp_path / "recorded.jsonl"
    with ScriptedServer(answer) as server:
        recorded = run_cli(
            ["run", "q", "-c", str(context_file), "-m", "openai/s", "--base-url", server.url,
             "--sandbox", "inprocess", "--trace", str(trace)],
            cli_env,
        )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    write(
        tmp_path / "config.toml", 'model = "openai/other"\nmax_depth = 3\nsandbox = "inprocess"\n'
    )
    replayed = run_cli(["run", "--replay", str(trace), "-c", str(context_file), "--json"], cli_env)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["answer"] == "forty-two"
    flagged = run_cli(
        ["run", "--replay", str(trace), "-c", str(context_file), "-m", "a/b"], cli_env
    )
    assert flagged.returncode == 2 and "--replay takes the models from the trace" in flagged.stderr


def test_the_files_runs_dir_is_where_runs_go_unless_the_environment_names_one(
    cli_env: dict[str, str], tmp_path: Path, context_file: Path
) -> None:
    write(tmp_path / "config.toml", 'runs_dir = "from-file"\nsandbox = "inprocess"\n')
    env = {k: v for k, v in cli_env.items() if k != "RECURSA_RUNS_DIR"}
    with ScriptedServer(answer) as server:
        proc = run_cli(
            ["run", "q", "-c", str(context_file), "-m", "openai/s", "--base-url", server.url], env
        )
    assert proc.returncode == 0, proc.stderr
    assert [p.parent for p in tmp_path.glob("from-file/*.jsonl")] == [tmp_path / "from-file"]
    listed = json.loads(run_cli(["runs", "--json"], env).stdout)
    assert [Path(r["trace"]).parent for r in listed] == [tmp_path / "from-file"]
    shown = run_cli(["config", "show"], env).stdout.splitlines()
    assert shown[0] == f"# {tmp_path / 'config.toml'}"
    assert any(line.split() == ["runs_dir", str(tmp_path / "from-file"), "file"] for line in shown)
    assert run_cli(["runs", "--json"], cli_env).stdout.strip() == "[]"  # the env's directory


def test_only_configured_commands_load_the_file_and_mcp_traces_into_the_runs_dir(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(config_file, 'model = "openai/m"\nruns_dir = "mine"\n')
    monkeypatch.delenv("RECURSA_RUNS_DIR")
    ctx = click.Context(main, info_name="recursa")
    ctx.invoked_subcommand = "mcp"
    apply_config(ctx)
    assert ctx.default_map is not None
    assert ctx.default_map["mcp"]["trace_dir"] == config_file.parent / "mine"
    assert ctx.default_map["run"]["model"] == "openai/m"
    write(config_file, "broken = [")
    untouched = click.Context(main, info_name="recursa")
    untouched.invoked_subcommand = "models"  # commands that take no run options skip it
    apply_config(untouched)
    assert untouched.default_map is None
