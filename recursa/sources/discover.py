"""From what the user typed (files, folders, globs) to the list of files to read.

Folders are walked recursively, following symbolic links; hidden names (starting
with ``.``), what git's ignore rules exclude (the .gitignore files in the tree and, in
a git work tree, those above it up to the top and ``.git/info/exclude``) and what
``--include`` / ``--exclude`` leave out are not listed at all (see
:mod:`recursa.sources.filters`).
What is found but cannot be read as text (a binary file, a symlink loop, a folder we
may not open) is listed as :class:`Skipped` with the reason, so the user sees it.

Order is deterministic: inputs in the order given, and within a folder or a glob
the files sorted by name. A file reached twice (a symlink to a file already found,
the same folder given twice) is listed once, under the first name in that order.
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from ..errors import ContextError
from .filters import GitIgnores, NameFilter
from .kinds import kind_of
from .text import reason_of, sniff

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Found:
    """A file to read."""

    name: str  # relative POSIX path shown to the model
    path: Path  # absolute path on disk
    size: int  # bytes on disk


@dataclass(frozen=True)
class Skipped:
    """A file (or folder) that was found but will not be read, and why."""

    name: str
    reason: str  # one short line, e.g. "binary (NUL byte)"


@dataclass(frozen=True)
class Discovery:
    found: list[Found]
    skipped: list[Skipped]


def discover(
    inputs: Sequence[str | Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    sniff_content: bool = True,
) -> Discovery:
    """The files to read for ``inputs``: files, folders (recursive) and glob patterns
    (a ``str`` holding ``*``, ``?`` or ``[`` that is not itself an existing path;
    ``**`` crosses folders).

    Names: for a plain file or a glob match, the path as given or matched; for a file
    in a folder, its path relative to that folder, prefixed with the folder as given
    when there are several inputs (so two folders' ``README.md`` stay apart).
    ``include``/``exclude`` filter the files of folders and globs, never a file named
    on its own. Raises :class:`ContextError` for a path that does not exist, a glob
    that matches nothing, a folder with no file left after filtering, and when
    nothing at all is left to read.

    ``sniff_content=False`` skips reading the first 8 KiB of each file to leave out
    binaries: for a caller that reads every byte anyway and skips what is not text
    (a pack does), it saves one open and read per file.
    """
    if not inputs:
        raise ContextError("no files or folders to read")
    walk = _Discovering(
        NameFilter.of(include, exclude), prefixed=len(inputs) > 1, sniff_content=sniff_content
    )
    for item in inputs:
        walk.add(item)
    if not walk.found:
        why = "; ".join(f"{s.name}: {s.reason}" for s in walk.skipped[:3])
        raise ContextError(f"nothing to read: {len(walk.skipped):,} file(s) skipped ({why})")
    return Discovery(walk.found, walk.skipped)


@dataclass
class _Candidate:
    name: str
    path: str
    stat: os.stat_result


@dataclass
class _Discovering:
    """The state of one :func:`discover` call: what is found so far, and what was seen."""

    filter: NameFilter
    prefixed: bool
    sniff_content: bool = True
    found: list[Found] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    _files: set[tuple[int, int]] = field(default_factory=set)
    _walked: set[tuple[int, int]] = field(default_factory=set)

    def add(self, item: str | Path) -> None:
        """Find the files of one input; what it skips is listed in name order."""
        start = len(self.skipped)
        self._add(item)
        self.skipped[start:] = sorted(self.skipped[start:], key=lambda s: s.name)

    def _add(self, item: str | Path) -> None:
        text = os.fspath(item)
        if isinstance(item, str) and _GLOB_CHARS & set(text) and not os.path.lexists(text):
            self._add_glob(text)
            return
        if not os.path.lexists(text):
            raise ContextError(f"{text}: no such file or directory")
        name = PurePath(text).as_posix()
        try:
            st = os.stat(text)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise ContextError(f"{text}: broken symbolic link") from None
            self.skipped.append(Skipped(name, _stat_reason(exc)))
            return
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in self._walked:
                return  # given twice, or inside a folder given before: its files are listed
            prefix = name if self.prefixed and name != "." else ""
            skipped_before = len(self.skipped)
            candidates = list(self._walk(text, st, prefix=prefix, filtered_as=""))
            if not candidates and len(self.skipped) == skipped_before:
                raise ContextError(
                    f"{text}: no files left to read (hidden files, .gitignore rules and "
                    "--include/--exclude leave them all out)"
                )
            self._take(candidates)
        else:
            self._take([_Candidate(name, text, st)])

    def _add_glob(self, pattern: str) -> None:
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise ContextError(f"{pattern}: no file matches this pattern")
        candidates: list[_Candidate] = []
        for match in matches:
            name = PurePath(match).as_posix()
            try:
                st = os.stat(match)
            except OSError as exc:
                self.skipped.append(Skipped(name, _stat_reason(exc)))
                continue
            if stat.S_ISDIR(st.st_mode):
                candidates.extend(self._walk(match, st, prefix=name, filtered_as=name))
            elif self.filter.keeps(name):
                candidates.append(_Candidate(name, match, st))
        self._take(candidates)

    def _walk(
        self, root: str, root_stat: os.stat_result, *, prefix: str, filtered_as: str
    ) -> Iterator[_Candidate]:
        """The files below ``root`` that no rule leaves out, depth first in name order,
        named ``prefix/relative path``. Ignore rules see the path relative to their
        own file's folder, include/exclude see it below ``filtered_as`` (the folder
        given: none; a folder a glob matched: the match, as for the files it matched).
        Folders already walked are not walked again; a folder that is its own ancestor
        (through a symlink) is a loop, skipped."""
        key = (root_stat.st_dev, root_stat.st_ino)
        if key in self._walked:
            return
        self._walked.add(key)
        # (folder on disk, its path relative to root, rules in force there, ancestors)
        top_rules = GitIgnores.above(Path(root)).entering(Path(root), "")
        stack = [(root, "", top_rules, frozenset({key}))]
        while stack:
            folder, relative, ignores, ancestors = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                self.skipped.append(Skipped(_joined(prefix, relative) + "/", _stat_reason(exc)))
                continue
            inside: list[tuple[str, str, GitIgnores, frozenset[tuple[int, int]]]] = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = f"{relative}/{entry.name}" if relative else entry.name
                try:
                    st = os.stat(entry.path)
                except OSError as exc:
                    self.skipped.append(Skipped(_joined(prefix, rel), _stat_reason(exc)))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if ignores.ignores(rel, is_dir=True) or self.filter.prunes(
                        _joined(filtered_as, rel)
                    ):
                        continue
                    key = (st.st_dev, st.st_ino)
                    if key in ancestors:
                        self.skipped.append(Skipped(_joined(prefix, rel) + "/", "symlink loop"))
                    elif key not in self._walked:
                        self._walked.add(key)
                        inner = ignores.entering(Path(entry.path), rel)
                        inside.append((entry.path, rel, inner, ancestors | {key}))
                elif ignores.ignores(rel, is_dir=False) or not self.filter.keeps(
                    _joined(filtered_as, rel)
                ):
                    continue
                elif stat.S_ISREG(st.st_mode):
                    yield _Candidate(_joined(prefix, rel), entry.path, st)
                else:
                    self.skipped.append(Skipped(_joined(prefix, rel), "not a regular file"))
            stack.extend(reversed(inside))  # the first folder by name is walked next

    def _take(self, candidates: list[_Candidate]) -> None:
        """Add ``candidates`` in name order: each file once, text that is plainly
        binary skipped."""
        for candidate in sorted(candidates, key=lambda c: c.name):
            st = candidate.stat
            if not stat.S_ISREG(st.st_mode):
                self.skipped.append(Skipped(candidate.name, "not a regular file"))
                continue
            key = (st.st_dev, st.st_ino)
            if key in self._files:
                continue
            path = Path(os.path.abspath(candidate.path))
            if self.sniff_content and kind_of(path) != "document" and (reason := sniff(path)):
                self.skipped.append(Skipped(candidate.name, reason))
                continue
            self._files.add(key)
            self.found.append(Found(candidate.name, path, st.st_size))


def _joined(prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}" if prefix and relative else prefix or relative


def _stat_reason(exc: OSError) -> str:
    """Why a directory entry cannot be looked at: a listed name that stat cannot find
    is a symbolic link to nothing."""
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(exc, FileNotFoundError):
        return "broken symbolic link"
    return reason_of(exc)
