"""``recursa mcp``: the RLM as a Model Context Protocol server, for coding agents and
desktop assistants.

One tool, ``ask(query, paths=None, text=None, model=None, max_depth=None,
budget_usd=None)``: an RLM answers ``query`` over the files named (or the text given),
however much larger than the client's own window they are, and returns the answer,
what it cost, why it stopped, and the trace to open with ``recursa view``.

The run options are the shared ones of ``recursa run`` (:mod:`recursa.cli_options`),
fixed when the server starts; a call's arguments may only tighten them: ``max_depth``
and ``budget_usd`` are capped at the server's, and ``model`` must be one the server
runs (its root model, its sub-model, an ``--allow-model``). Files are read only under
the roots given at start (``--root``, repeatable; default the current directory): a
path that leaves them, through ``..`` or a symbolic link, is refused with a tool error.

Layer 4 (a surface). The ``mcp`` SDK is the ``recursa[mcp]`` extra and is imported
only when the server starts, so ``recursa --help`` never loads it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import click

from .cli_options import EXIT_USAGE, exit_codes, fail, rlm_options, settings_from_options
from .errors import ConfigError, RecursaError

if TYPE_CHECKING:
    from .context import ContextInput
    from .settings import Settings

INSTALL_HINT = "pip install 'recursa[mcp]'"

#: Most files one ``ask`` reads from the directories it is given.
MAX_FILES = 10_000


class AskResult(TypedDict):
    """What ``ask`` returns (the tool's structured output)."""

    answer: str
    cost_usd: float | None
    stopped: str | None
    error: str | None
    trace: str | None
    calls: int
    model: str
    max_depth: int
    budget_usd: float | None
    files: int


class PathRefused(ValueError):
    """A path the roots do not allow, or that cannot be read as a context."""


@dataclass(frozen=True)
class Roots:
    """The directories a client may read under, resolved (symbolic links followed) once."""

    dirs: tuple[Path, ...]

    @classmethod
    def of(cls, dirs: Sequence[str | Path]) -> Roots:
        resolved: list[Path] = []
        for given in dirs or (Path.cwd(),):
            path = Path(given).expanduser()
            if not path.is_dir():
                raise ConfigError(f"--root {given}: not a directory")
            resolved.append(path.resolve(strict=True))
        return cls(tuple(dict.fromkeys(resolved)))

    def contains(self, real: Path) -> bool:
        return any(real == d or real.is_relative_to(d) for d in self.dirs)

    def resolve(self, given: str) -> Path:
        """The real path of ``given`` (relative: to the first root), if inside a root."""
        if not given or "\x00" in given:
            raise PathRefused(f"{given!r}: not a path")
        path = Path(given).expanduser()
        if not path.is_absolute():
            path = self.dirs[0] / path
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            raise PathRefused(f"{given}: no such file or directory") from None
        except (OSError, RuntimeError) as exc:  # a symlink loop, a permission
            raise PathRefused(f"{given}: {getattr(exc, 'strerror', None) or exc}") from None
        if not self.contains(real):
            raise PathRefused(f"{given}: outside the allowed roots ({self.describe()})")
        return real

    def files(self, given: Sequence[str]) -> list[Path]:
        """The regular files ``given`` names, directories walked (links that leave the
        roots, and hidden directories, skipped), in order and without repeats."""
        found: dict[Path, None] = {}
        for item in given:
            real = self.resolve(item)
            if real.is_file():
                found[real] = None
            elif real.is_dir():
                for path in self._walk(real):
                    found[path] = None
            else:
                raise PathRefused(f"{item}: not a regular file or directory")
            if len(found) > MAX_FILES:
                raise PathRefused(f"more than {MAX_FILES:,} files: name fewer or smaller folders")
        return list(found)

    def _walk(self, top: Path) -> list[Path]:
        out: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                try:
                    real = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    continue
                if self.contains(real) and real.is_file():
                    out.append(real)
        return out

    def describe(self) -> str:
        return ", ".join(str(d) for d in self.dirs)

    def display(self, path: Path) -> str:
        """``path`` as the model sees it: relative to its root."""
        for d in self.dirs:
            if path.is_relative_to(d):
                return str(path.relative_to(d))
        return str(path)


def context_for(
    roots: Roots, paths: Sequence[str] | None, text: str | None
) -> tuple[ContextInput, int]:
    """The context ``ask`` runs over, and how many files it holds: one file stays on disk
    (a ``Path``, read in place); several become a ``files`` context under their names
    relative to their root (packed once, read lazily in the sandbox; files that are not
    text are skipped when they came from a directory, refused when named)."""
    from .context import Context
    from .errors import ContextError

    if paths and text is not None:
        raise PathRefused("give paths or text, not both")
    if not paths:
        if text is None or not text.strip():
            raise PathRefused("give paths (files or folders under the roots) or text")
        return text, 0
    named = {roots.resolve(p) for p in paths}
    files = roots.files(paths)
    if not files:
        raise PathRefused("no readable files under the paths given")
    if len(files) == 1 and files[0] in named:
        return files[0], 1
    by_name = {roots.display(path): path for path in files}
    try:
        context = Context.from_named_files(by_name)
    except ContextError as exc:
        raise PathRefused(str(exc)) from None
    refused = [s for s in context.skipped if by_name.get(s.name) in named]
    if refused:
        context.cleanup()
        raise PathRefused(f"{refused[0].name}: {refused[0].reason}")
    return context, len(context.info.keys)


def tightened(
    settings: Settings, *, model: str | None, max_depth: int | None, budget_usd: float | None
) -> Settings:
    """The server's settings with a call's arguments applied: each may only tighten."""
    from .budget import Budget

    changes: dict[str, Any] = {}
    if model is not None:
        allowed = [m for m in (settings.model, settings.sub_model) if isinstance(m, str)]
        allowed += list(settings.allowed_models)
        if model not in allowed:
            raise ConfigError(f"model {model!r} is not served here; choose one of {allowed}")
        changes["model"] = model
    if max_depth is not None:
        if max_depth < 0:
            raise ConfigError(f"max_depth must be >= 0, got {max_depth}")
        changes["max_depth"] = min(max_depth, settings.max_depth)
    if budget_usd is not None:
        if not budget_usd > 0:
            raise ConfigError(f"budget_usd must be positive, got {budget_usd}")
        budget = settings.budget or Budget()
        usd = budget_usd if budget.usd is None else min(budget_usd, budget.usd)
        changes["budget"] = Budget(
            usd=usd, tokens=budget.tokens, seconds=budget.seconds, calls=budget.calls
        )
    return settings.replace(**changes) if changes else settings


class Asker:
    """What the ``ask`` tool does, apart from the protocol (testable without the SDK)."""

    def __init__(self, settings: Settings, roots: Roots, trace_dir: Path | None) -> None:
        self.settings = settings
        self.roots = roots
        self.trace_dir = trace_dir

    def trace_settings(self) -> dict[str, Any]:
        """Each call's own trace in the trace directory, named as every run's is
        (:meth:`Settings.trace_path`: the time and the run's id), or none."""
        if self.trace_dir is None:
            return {"trace": None}
        return {"trace": True, "runs_dir": self.trace_dir}

    async def ask(
        self,
        query: str,
        paths: list[str] | None = None,
        text: str | None = None,
        model: str | None = None,
        max_depth: int | None = None,
        budget_usd: float | None = None,
    ) -> AskResult:
        """Raises :class:`ValueError` (a :class:`PathRefused`) or a ``RecursaError`` for
        a call the server refuses or a run that fails; the tool turns them into errors."""
        from .context import Context
        from .rlm import RLM

        if not query or not query.strip():
            raise ConfigError("the query is empty")
        settings = tightened(self.settings, model=model, max_depth=max_depth,
                             budget_usd=budget_usd).replace(**self.trace_settings())  # fmt: skip
        # packing many files is disk work: off the event loop, which serves other calls
        context, files = await asyncio.to_thread(context_for, self.roots, paths, text)
        try:
            result = await RLM.from_settings(settings).acompletion(query, context)
        finally:
            if isinstance(context, Context):
                context.cleanup()  # the packed copy of the files
        budget = settings.budget
        return AskResult(
            answer=result.answer,
            cost_usd=result.cost_usd,
            stopped=result.stopped,
            error=result.error,
            trace=str(result.trace.resolve()) if result.trace else None,
            calls=result.usage.calls,
            model=str(settings.model),
            max_depth=settings.max_depth,
            budget_usd=budget.usd if budget else None,
            files=files,
        )


ASK_DESCRIPTION = """Answer a question over files or text far larger than your context window.

A Recursive Language Model loads the files (or the text) as a variable in a sandboxed
Python REPL, and writes code that searches and splits it and asks sub-models about the
pieces; only the answer comes back. Give `paths` (files or folders under the server's
allowed roots; relative paths are relative to the first root) or `text`, not both.
`model`, `max_depth` and `budget_usd` may only tighten the server's own settings.
Returns the answer, its cost in USD (null: unpriced), `stopped` (null when it answered;
else why it stopped early), and the trace file (open it with `recursa view PATH`)."""


def build_server(asker: Asker) -> Any:
    """The MCP server (an ``mcp`` ``MCPServer``) with the ``ask`` tool."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(
        name="recursa",
        instructions="Ask questions over large files with the `ask` tool.",
        log_level="WARNING",
    )

    async def ask(
        query: str,
        paths: list[str] | None = None,
        text: str | None = None,
        model: str | None = None,
        max_depth: int | None = None,
        budget_usd: float | None = None,
    ) -> AskResult:
        try:
            return await asker.ask(query, paths, text, model, max_depth, budget_usd)
        except (ValueError, RecursaError) as exc:
            raise ToolError(str(exc)) from None

    server.add_tool(ask, name="ask", description=ASK_DESCRIPTION)
    return server


@click.command(name="mcp")
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="A directory clients may read files under (repeatable; default: the current one).",
)
@click.option(
    "--port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Serve streamable HTTP on this port (at /mcp) instead of stdio.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind with --port."
)
@rlm_options()
@click.option(
    "--trace-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one JSONL trace per call here (default: the runs directory).",
)
@click.option("--no-trace", is_flag=True, help="Write no traces.")
def mcp_command(
    roots: tuple[Path, ...],
    port: int | None,
    host: str,
    trace_dir: Path | None,
    no_trace: bool,
    **options: Any,
) -> None:
    """Serve the RLM over the Model Context Protocol: a tool `ask` for coding agents.

    Stdio by default (the client starts `recursa mcp`); streamable HTTP with --port.
    Clients read files only under the --root directories; the run options are fixed
    here, and a call may only lower max_depth and budget_usd.

    \b
    Examples:
      recursa mcp --root . -m openai/gpt-5-mini --budget-usd 1
      recursa mcp --root ~/src --root ~/notes --port 8765
    """
    try:
        import mcp.server.mcpserver  # noqa: F401  (the extra: checked before anything starts)
    except ImportError:
        fail(f"the MCP server needs the mcp package: {INSTALL_HINT}", EXIT_USAGE)
    from .settings import DEFAULT_TRACE_DIR

    with exit_codes(os_error=f"cannot listen on {host}:{port}"):
        settings = settings_from_options(options)
        trace = None if no_trace else (trace_dir or DEFAULT_TRACE_DIR).resolve()
        server = build_server(Asker(settings, Roots.of(roots), trace))
        if port is None:
            server.run("stdio")
        else:
            click.echo(f"recursa mcp: streamable HTTP on http://{host}:{port}/mcp", err=True)
            server.run("streamable-http", host=host, port=port)
