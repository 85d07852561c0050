"""Which files of a folder to leave out: .gitignore rules, and the user's include/exclude.

Both use gitignore's pattern language (``pathspec.GitIgnoreSpec``: ``gitwildmatch``
patterns with git's own edge cases; the ``gitwildmatch`` factory name is deprecated
in pathspec 1.x), matched
against the path relative to the folder given, POSIX-style:

- a pattern without ``/`` matches a name at any depth (``*.md``, ``build``);
- a pattern with ``/`` is anchored at the folder (``docs/*.md``);
- ``*`` and ``?`` stay within one folder, ``**`` crosses folders (``docs/**/*.md``);
- ``[abc]`` is a character class; in a .gitignore, ``!pattern`` re-includes and a
  trailing ``/`` matches folders only.

Nested .gitignore files work as in git: a file's rules apply below its own folder,
relative to it, and the deepest file with a matching rule decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pathspec


@dataclass(frozen=True)
class NameFilter:
    """The user's ``--include`` (a file must match one, when any are given) and
    ``--exclude`` (a file must match none) globs."""

    include: pathspec.GitIgnoreSpec | None
    exclude: pathspec.GitIgnoreSpec | None

    @classmethod
    def of(cls, include: Sequence[str], exclude: Sequence[str]) -> NameFilter:
        return cls(_spec(include), _spec(exclude))

    def prunes(self, folder: str) -> bool:
        """Whether ``--exclude`` leaves out the whole folder (``node_modules``, say), so
        it need not be walked."""
        return self.exclude is not None and self.exclude.match_file(folder + "/")

    def keeps(self, relative: str) -> bool:
        if self.include is not None and not self.include.match_file(relative):
            return False
        return self.exclude is None or not self.exclude.match_file(relative)


def _spec(patterns: Sequence[str]) -> pathspec.GitIgnoreSpec | None:
    lines = [p for p in patterns if p.strip()]
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


@dataclass(frozen=True)
class GitIgnores:
    """The .gitignore rules in force in one folder: ``(folder relative to the root,
    rules)`` from the root down."""

    rules: tuple[tuple[str, pathspec.GitIgnoreSpec], ...] = ()

    def entering(self, folder: Path, relative: str) -> GitIgnores:
        """The rules inside ``folder`` (at ``relative`` below the root): these plus its
        own .gitignore, if it has a readable one."""
        try:
            lines = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return self
        spec = pathspec.GitIgnoreSpec.from_lines(lines.splitlines())
        return GitIgnores((*self.rules, (relative, spec))) if spec.patterns else self

    def ignores(self, relative: str, *, is_dir: bool) -> bool:
        decided: bool | None = None
        for base, spec in self.rules:
            inside = relative[len(base) + 1 :] if base else relative
            result = spec.check_file(inside + "/" if is_dir else inside).include
            if result is not None:
                decided = result
        return bool(decided)
