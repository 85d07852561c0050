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
relative to it, and the deepest file with a matching rule decides. A folder inside a
git work tree also gets the rules git would apply to it from above: the repository's
``.git/info/exclude`` and the .gitignore of every folder from the top (the nearest
folder holding ``.git``, a directory or, in a worktree, a file) down to it. The user's
global excludes file is not read: what recursa leaves out should not depend on whose
machine it runs on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where rules are built: a single file never loads it
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
    import pathspec

    lines = [p for p in patterns if p.strip()]
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


@dataclass(frozen=True)
class GitIgnores:
    """The ignore rules in force in one folder: ``(rule file's folder, rules)``, weakest
    first, each folder relative to the base (the git top, else the folder walked), and
    ``below``, the folder walked relative to the base."""

    rules: tuple[tuple[str, pathspec.GitIgnoreSpec], ...] = ()
    below: str = ""

    @classmethod
    def above(cls, root: Path) -> GitIgnores:
        """The rules git applies to ``root`` from above: ``.git/info/exclude`` and the
        .gitignore files of the folders from the top of its work tree down to (not
        including) ``root``. None outside a work tree, and none for a folder those
        rules ignore: given on its own, it is read with its own rules only."""
        root = root.resolve()
        found = _git_top(root)
        if found is None:
            return cls()
        top, exclude = found
        below = root.relative_to(top).as_posix() if root != top else ""
        rules = [("", spec)] if exclude and (spec := _read_spec(exclude)) else []
        parts = below.split("/") if below else []
        for depth in range(len(parts)):
            base = "/".join(parts[:depth])
            if spec := _read_spec(top / base / ".gitignore"):
                rules.append((base, spec))
        ignores = cls(tuple(rules), below)
        return cls() if below and ignores.ignores("", is_dir=True) else ignores

    def entering(self, folder: Path, relative: str) -> GitIgnores:
        """The rules inside ``folder`` (at ``relative`` below the folder walked): these
        plus its own .gitignore, if it has a readable one."""
        spec = _read_spec(folder / ".gitignore")
        if spec is None:
            return self
        return GitIgnores((*self.rules, (_joined(self.below, relative), spec)), self.below)

    def ignores(self, relative: str, *, is_dir: bool) -> bool:
        """Whether ``relative`` (below the folder walked) is ignored: the last rule file
        with a matching rule decides."""
        path = _joined(self.below, relative)
        decided: bool | None = None
        for base, spec in self.rules:
            inside = path[len(base) + 1 :] if base else path
            result = spec.check_file(inside + "/" if is_dir else inside).include
            if result is not None:
                decided = result
        return bool(decided)


def _read_spec(path: Path) -> pathspec.GitIgnoreSpec | None:
    """The rules of an ignore file; None when it is missing, unreadable or has none."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines(lines.splitlines())
    return spec if spec.patterns else None


def _git_top(folder: Path) -> tuple[Path, Path | None] | None:
    """The top of the git work tree ``folder`` is in (the nearest folder holding
    ``.git``) and its ``info/exclude`` file (None when a ``.git`` file names no
    repository), or None outside a work tree."""
    for top in (folder, *folder.parents):
        dot_git = top / ".git"
        if dot_git.is_dir():
            return top, dot_git / "info" / "exclude"
        if dot_git.is_file():
            return top, _linked_exclude(dot_git)
    return None


def _linked_exclude(dot_git: Path) -> Path | None:
    """The ``info/exclude`` of a worktree or submodule, whose ``.git`` file says
    ``gitdir: <path>``; a worktree's shared files are in the folder its ``commondir``
    names."""
    try:
        first = dot_git.read_text(encoding="utf-8", errors="replace").partition("\n")[0]
    except OSError:
        return None
    if not first.startswith("gitdir:"):
        return None
    git_dir = dot_git.parent / first.removeprefix("gitdir:").strip()
    try:
        common = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        common = ""
    return (git_dir / common if common else git_dir) / "info" / "exclude"


def _joined(base: str, relative: str) -> str:
    return f"{base}/{relative}" if base and relative else base or relative
