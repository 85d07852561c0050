"""The configuration file and the runs directory: where they live, what the file may say.

The command line's defaults come from, highest first: a flag, a ``RECURSA_<KEY>``
environment variable, the TOML file at :func:`config_path`, the built-in default.
This module finds, parses and checks the file (each error names the file, the line and
the key); :mod:`recursa.config_cli` turns its values into the commands' defaults.
The Python API never reads the file, so a script behaves the same on every machine;
only ``trace=True`` honours ``$RECURSA_RUNS_DIR`` (see :func:`default_runs_dir`).

API keys are refused here: they belong in the environment, never in a file that may be
copied or shared.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Overrides where the configuration file is.
CONFIG_ENV = "RECURSA_CONFIG"
#: Overrides where traces go by default (the config file's ``runs_dir`` too).
RUNS_DIR_ENV = "RECURSA_RUNS_DIR"

_NUMBER = (int, float)
#: Every key the file may set, with the TOML types it accepts. A key is also the name of
#: the run option it sets (``budget_usd`` is ``--budget-usd``) and, upper-cased after
#: ``RECURSA_``, its environment variable; ``runs_dir`` and ``cache`` are paths.
KEYS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "sub_model": (str,),
    "base_url": (str,),
    "max_depth": (int,),
    "max_iterations": (int,),
    "budget_usd": _NUMBER,
    "budget_tokens": (int,),
    "budget_calls": (int,),
    "budget_seconds": _NUMBER,
    "sandbox": (str,),
    "concurrency": (int,),
    "cell_timeout": _NUMBER,
    "request_timeout": _NUMBER,
    "max_children": (int,),
    "max_errors": (int,),
    "temperature": _NUMBER,
    "sub_temperature": _NUMBER,
    "top_p": _NUMBER,
    "seed": (int,),
    "max_tokens": (int,),
    "sub_max_tokens": (int,),
    "reasoning_effort": (str,),
    "sub_reasoning_effort": (str,),
    "cache": (str,),
    "runs_dir": (str,),
}
#: Keys that are paths: ``~`` is expanded, a relative path is taken from the file's folder.
PATH_KEYS = frozenset({"cache", "runs_dir"})
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number"}
_SECRET = re.compile(r"(?:^|_)(?:api_?key|key|secret|password|token)$", re.IGNORECASE)
_KEY_LINE = re.compile(r"""^\s*(?:\[+\s*)?(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))""")
_TOML_POSITION = re.compile(r"\(at (?:line (\d+), column \d+|end of document)\)")


def env_name(key: str) -> str:
    """The environment variable of a key: ``budget_usd`` -> ``RECURSA_BUDGET_USD``."""
    return f"RECURSA_{key.upper()}"


def config_path() -> Path:
    """``$RECURSA_CONFIG``, else ``config.toml`` in the user config directory."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env).expanduser()
    from platformdirs import user_config_path

    return user_config_path("recursa") / "config.toml"


def platform_runs_dir() -> Path:
    """``runs/`` in the user data directory (``~/.local/share/recursa/runs`` on Linux)."""
    from platformdirs import user_data_path

    return user_data_path("recursa") / "runs"


def default_runs_dir() -> Path:
    """Where ``trace=True`` writes: ``$RECURSA_RUNS_DIR``, else :func:`platform_runs_dir`."""
    if env := os.environ.get(RUNS_DIR_ENV):
        return Path(env).expanduser()
    return platform_runs_dir()


@dataclass(frozen=True)
class ConfigFile:
    """A checked configuration file: its values by key and the line each is on.
    ``exists`` is false when there is no file (then there are no values)."""

    path: Path
    exists: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def error(self, key: str, message: str) -> ConfigError:
        """A one-line error at ``key``'s line: ``FILE:LINE: KEY: MESSAGE``."""
        line = self.lines.get(key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {key}: {message}")

    def runs_dir(self) -> Path:
        """Where the command line writes traces: ``$RECURSA_RUNS_DIR``, else the file's
        ``runs_dir``, else :func:`platform_runs_dir`."""
        if os.environ.get(RUNS_DIR_ENV) or "runs_dir" not in self.values:
            return default_runs_dir()
        return Path(self.values["runs_dir"])


def load_config(path: Path | None = None) -> ConfigFile:
    """The file at ``path`` (default: :func:`config_path`), parsed and checked; no file
    is an empty configuration. Raises :class:`ConfigError` naming the file and line."""
    import tomllib  # only the commands that read the file pay for the parser

    path = path or config_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ConfigFile(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
        table = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        line = found and (found.group(1) or len(text.splitlines()))  # or: at the end
        where = f"{path}:{line}" if line else str(path)
        message = _TOML_POSITION.sub("", message).strip()
        raise ConfigError(f"{where}: not valid TOML: {message}") from None
    located = ConfigFile(path, True, lines=_key_lines(text))
    values = {key: _checked(located, key, value) for key, value in table.items()}
    return dataclasses.replace(located, values=values)


def _checked(config: ConfigFile, key: str, value: Any) -> Any:
    if _SECRET.search(key):
        raise config.error(
            key,
            "API keys are never read from the config file; set them in the environment "
            "(OPENAI_API_KEY, ANTHROPIC_API_KEY, ...)",
        )
    kinds = KEYS.get(key)
    if kinds is None:
        raise config.error(key, f"unknown key (known: {', '.join(KEYS)})")
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = _TYPE_NAMES[kinds[-1]]
        raise config.error(key, f"must be {wanted}, got {_toml_kind(value)}")
    if key in PATH_KEYS:
        if not str(value).strip():
            raise config.error(key, "must be a path, got an empty string")
        return config.path.parent / Path(str(value)).expanduser()
    return value


def _toml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value!r}"


def _key_lines(text: str) -> dict[str, int]:
    """The line each top-level key (or table header) is first on."""
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        found = _KEY_LINE.match(line)
        if found and not line.lstrip().startswith("#"):
            key = next(g for g in found.groups() if g is not None).strip()
            lines.setdefault(key, number)
    return lines
