"""The context options of ``recursa run`` and ``recursa chat``: files, folders, globs, stdin.

``-c`` repeats; a folder or a glob (quote it, or let the shell expand it) becomes a
mapping of names to texts in the REPL. Files that cannot be read are left out with one
line each on stderr for the first :data:`LISTED_SKIPS`, then one line per reason for
the rest (a ``__pycache__`` of thousands must not bury the answer; the result and the
trace list every one); nothing readable, a missing path or a glob that matches nothing is
a :class:`~recursa.errors.ContextError` (exit 2 before any model call).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import ContextError

if TYPE_CHECKING:
    from .context import Context
    from .sources import Skipped

F = TypeVar("F", bound=Callable[..., Any])

MISSING = "missing --context: give a file, a folder, a glob, or - for standard input"
#: skipped files named one per line on stderr; the rest are counted by reason
LISTED_SKIPS = 20


def context_options(help_text: str) -> Callable[[F], F]:
    """``-c/--context`` (repeatable), ``--include``, ``--exclude`` and ``--encoding``."""

    def decorate(command: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--context", "-c", "context_args", multiple=True,
                    metavar="PATH|GLOB|-", help=help_text,
                ),
                click.option(
                    "--include", multiple=True, metavar="GLOB",
                    help="In folders, read only files whose path matches GLOB (repeatable).",
                ),
                click.option(
                    "--exclude", multiple=True, metavar="GLOB",
                    help="In folders, leave out files whose path matches GLOB (repeatable).",
                ),
                click.option(
                    "--encoding", default=None, metavar="CODEC",
                    help="Decode text files with CODEC (e.g. latin-1) instead of UTF-8.",
                ),
            ]
        ):  # fmt: skip
            command = option(command)
        return command

    return decorate


def read_context(
    paths: Sequence[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    encoding: str | None = None,
    stdin: bool = True,
) -> Context:
    """The context the options name; standard input for ``-`` or, with ``stdin``, when no
    ``-c`` is given and input is piped. Skipped files are reported on stderr."""
    from .context import Context, text_from_bytes

    if "-" in paths or (stdin and not paths and not sys.stdin.isatty()):
        if len(paths) > 1:
            raise ContextError("- (standard input) cannot be combined with other paths")
        data = sys.stdin.buffer.read()
        if not paths and not data:
            raise ContextError(MISSING)
        return Context(text_from_bytes(data, "standard input"))
    if not paths:
        raise ContextError(MISSING)
    context = Context.from_paths(paths, include=include, exclude=exclude, encoding=encoding)
    for line in skipped_lines(context.skipped):
        click.echo(line, err=True)
    if context.skipped:
        count, read = len(context.skipped), len(context.info.keys)
        noun = "file" if count == 1 else "files"
        click.echo(f"recursa: {count:,} {noun} skipped, {read:,} read", err=True)
    return context


def skipped_lines(skipped: Sequence[Skipped], listed: int = LISTED_SKIPS) -> list[str]:
    """The stderr lines for ``skipped``: one per file for the first ``listed``, then one
    per reason for the rest, the most common first."""
    lines = [f"recursa: skipped {s.name}: {s.reason}" for s in skipped[:listed]]
    rest = Counter(s.reason for s in skipped[listed:])
    lines += [f"recursa: ... and {n:,} more skipped: {why}" for why, n in rest.most_common()]
    return lines
