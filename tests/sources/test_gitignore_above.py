"""A folder inside a git work tree gets git's rules from above: every .gitignore from
the top down and ``.git/info/exclude``, each relative to its own folder; built with a
real ``git init`` where git is installed (else a bare ``.git`` folder, all that marks a
top) and, where it is, checked against ``git ls-files`` itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from recursa.context import Context
from recursa.sources import discover
from tests.sources.test_discover import names, tree

GIT = shutil.which("git")


def git_top(folder: Path, exclude: str = "") -> Path:
    """``folder`` made the top of a work tree, with ``exclude`` as its info/exclude."""
    folder.mkdir(parents=True, exist_ok=True)
    if GIT:
        subprocess.run([GIT, "init", "-q", str(folder)], check=True, env=_quiet_git_env())
    info = folder / ".git" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "exclude").write_text(exclude, encoding="utf-8")
    return folder


def _quiet_git_env() -> dict[str, str]:
    """git without the user's or the system's configuration (no global excludes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, HOME=os.devnull)
    return env


def test_rules_of_the_top_apply_to_a_subfolder_relative_to_the_top(tmp_path: Path) -> None:
    top = git_top(tmp_path / "repo")
    tree(
        top,
        {
            ".gitignore": "*.log\n__pycache__/\nbuild/\n/dist\n",
            "src/main.py": "print(1)",
            "src/app.log": "unanchored: ignored at any depth",
            "src/__pycache__/main.cpython-311.pyc": b"\x00\x01binary",
            "src/build/out.txt": "unanchored folder rule: ignored below too",
            "src/dist/keep.txt": "/dist is anchored at the top: not this one",
        },
    )
    assert names(discover([top / "src"])) == ["dist/keep.txt", "main.py"]


def test_each_ancestor_s_rules_are_relative_to_their_own_folder(tmp_path: Path) -> None:
    top = git_top(tmp_path / "repo")
    tree(
        top,
        {
            "a/.gitignore": "secret.txt\nb/only-here.txt\n",
            "a/b/.gitignore": "local.md\n",
            "a/b/secret.txt": "ignored by a/.gitignore",
            "a/b/only-here.txt": "anchored at a/: ignored",
            "a/b/c/only-here.txt": "a/b/only-here.txt names another file",
            "a/b/local.md": "ignored by the folder's own file",
            "a/b/read.md": "read",
        },
    )
    assert names(discover([top / "a" / "b"])) == ["c/only-here.txt", "read.md"]


def test_negation_works_across_levels_and_over_info_exclude(tmp_path: Path) -> None:
    top = git_top(tmp_path / "repo", exclude="*.tmp\n")
    tree(
        top,
        {
            ".gitignore": "*.log\n!wanted.tmp\n",
            "a/.gitignore": "!keep.log\n",
            "a/b/keep.log": "re-included one level down",
            "a/b/other.log": "ignored from the top",
            "a/b/scratch.tmp": "ignored by info/exclude",
            "a/b/wanted.tmp": "a .gitignore outranks info/exclude",
        },
    )
    assert names(discover([top / "a" / "b"])) == ["keep.log", "wanted.tmp"]


def test_a_nested_repository_stops_the_walk_up_at_itself(tmp_path: Path) -> None:
    outer = git_top(tmp_path / "outer", exclude="*.txt\n")
    tree(outer, {".gitignore": "*.log\n"})
    inner = git_top(outer / "vendor" / "inner")
    tree(inner, {".gitignore": "*.md\n", "src/a.log": "outer rules stop", "src/b.md": "ignored",
                 "src/c.txt": "outer info/exclude stops too"})  # fmt: skip
    assert names(discover([inner / "src"])) == ["a.log", "c.txt"]


def test_outside_a_work_tree_no_folder_above_is_read(tmp_path: Path) -> None:
    assert not any((p / ".git").exists() for p in (tmp_path, *tmp_path.parents))
    tree(tmp_path / "outer", {".gitignore": "*.log\n", "src/a.log": "kept", "src/b.txt": "b"})
    assert names(discover([tmp_path / "outer" / "src"])) == ["a.log", "b.txt"]


def test_a_folder_git_ignores_is_read_when_given_on_its_own(tmp_path: Path) -> None:
    top = git_top(tmp_path / "repo")
    tree(top, {".gitignore": "build/\n*.log\n", "build/out.txt": "o", "build/x.log": "x",
               "build/sub/deep.txt": "d"})  # fmt: skip
    # git's rules say only that the folder is ignored: the user asked for it, so none apply
    assert names(discover([top / "build"])) == ["out.txt", "sub/deep.txt", "x.log"]
    assert names(discover([top / "build" / "sub"])) == ["deep.txt"]


def test_a_worktree_top_is_a_git_file_and_shares_the_main_exclude(tmp_path: Path) -> None:
    main = git_top(tmp_path / "main", exclude="*.tmp\n")
    linked = main / ".git" / "worktrees" / "side"
    tree(linked, {"commondir": "../..\n"})
    side = tree(tmp_path / "side", {".gitignore": "*.log\n", "src/a.log": "x", "src/b.tmp": "y",
                                    "src/c.py": "z"})  # fmt: skip
    (side / ".git").write_text(f"gitdir: {linked}\n", encoding="utf-8")
    assert names(discover([side / "src"])) == ["c.py"]


def test_a_context_from_a_subfolder_leaves_out_what_the_top_ignores(tmp_path: Path) -> None:
    top = git_top(tmp_path / "repo")
    tree(top, {".gitignore": "*.log\n", "src/a.py": "x = 1", "src/b.log": "noise"})
    ctx = Context.from_paths(top / "src")
    assert ctx.info.keys == ("a.py",)


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_what_is_read_is_what_git_itself_does_not_ignore(tmp_path: Path) -> None:
    top = git_top(tmp_path / "repo", exclude="*.bak\n")
    tree(
        top,
        {
            ".gitignore": "*.log\n/dist\nbuild/\n!src/keep.log\n",
            "src/.gitignore": "local/\n!*.bak\n",
            "src/keep.log": "k",
            "src/drop.log": "d",
            "src/dist/a.txt": "a",
            "src/build/b.txt": "b",
            "src/local/c.txt": "c",
            "src/old.bak": "re-included by src/.gitignore",
            "src/pkg/mod.py": "m",
            "src/pkg/mod.log": "l",
            "src/pkg/build.py": "a file, not a build/ folder",
        },
    )
    listed = subprocess.run(
        [str(GIT), "-c", f"core.excludesFile={os.devnull}", "ls-files", "--others",
         "--exclude-standard"],
        cwd=top / "src", env=_quiet_git_env(), capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    by_git = sorted(n for n in listed if not any(p.startswith(".") for p in n.split("/")))
    assert names(discover([top / "src"])) == by_git
    assert "keep.log" in by_git and "old.bak" in by_git and "dist/a.txt" in by_git
