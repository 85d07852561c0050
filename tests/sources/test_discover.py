"""discover on real folders built in tmp_path: walking, hidden names, .gitignore,
include/exclude, globs, symlinks (loops, outside files, duplicates), binary files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from recursa.errors import ContextError
from recursa.sources import Discovery, Skipped, discover


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def names(found: Discovery) -> list[str]:
    return [f.name for f in found.found]


def run(
    inputs: Sequence[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Discovery:
    return discover(inputs, include=include, exclude=exclude)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tree(
        tmp_path / "project",
        {
            "README.md": "# readme",
            "b.txt": "b",
            "src/main.py": "print(1)",
            "src/util/helpers.py": "x = 1",
            "src/util/notes.md": "notes",
            "docs/guide.md": "guide",
            "docs/deep/er/api.md": "api",
            ".env": "SECRET=1",
            ".git/config": "[core]",
            "src/.cache/blob.txt": "cached",
        },
    )


def test_a_folder_is_walked_recursively_in_name_order(project: Path) -> None:
    found = run([project])
    assert names(found) == [
        "README.md",
        "b.txt",
        "docs/deep/er/api.md",
        "docs/guide.md",
        "src/main.py",
        "src/util/helpers.py",
        "src/util/notes.md",
    ]
    assert found.skipped == []
    first = found.found[0]
    assert first.path == project / "README.md" and first.path.is_absolute()
    assert first.size == len("# readme")


def test_hidden_files_and_folders_inside_a_folder_are_left_out(project: Path) -> None:
    listed = names(run([project]))
    assert not any(part.startswith(".") for name in listed for part in name.split("/"))


def test_a_hidden_file_named_on_its_own_is_read(project: Path) -> None:
    assert names(run([str(project / ".env")])) == [f"{project}/.env"]


def test_gitignore_rules_apply_below_their_folder_and_nest(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "repo",
        {
            ".gitignore": "*.log\nbuild/\n/top-only.txt\n",
            "app.log": "x",
            "keep.txt": "k",
            "top-only.txt": "t",
            "build/out.txt": "o",
            "sub/top-only.txt": "anchored pattern: not ignored here",
            "sub/.gitignore": "!important.log\nlocal.txt\n",
            "sub/important.log": "re-included by the deeper file",
            "sub/other.log": "still ignored",
            "sub/local.txt": "ignored only in sub",
            "sub/inner/local.txt": "ignored below sub too",
            "local.txt": "not ignored at the top",
            "build.txt": "build/ matches folders only",
        },
    )
    assert names(run([root])) == [
        "build.txt",
        "keep.txt",
        "local.txt",
        "sub/important.log",
        "sub/top-only.txt",
    ]


def test_an_ignored_folder_cannot_be_re_included_from_inside(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "repo",
        {".gitignore": "vendor/\n", "vendor/.gitignore": "!*\n", "vendor/lib.py": "x", "a.py": "a"},
    )
    assert names(run([root])) == ["a.py"]


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (["*.md"], [], ["README.md", "docs/deep/er/api.md", "docs/guide.md", "src/util/notes.md"]),
        (["docs/**/*.md"], [], ["docs/deep/er/api.md", "docs/guide.md"]),
        (["docs/*.md"], [], ["docs/guide.md"]),
        (["src/**"], ["*.md"], ["src/main.py", "src/util/helpers.py"]),
        ([], ["src", "*.txt"], ["README.md", "docs/deep/er/api.md", "docs/guide.md"]),
        (
            [],
            ["**/deep/**"],
            [
                "README.md",
                "b.txt",
                "docs/guide.md",
                "src/main.py",
                "src/util/helpers.py",
                "src/util/notes.md",
            ],
        ),
        (["?.txt", "[Rr]EADME.*"], [], ["README.md", "b.txt"]),
    ],
)
def test_include_and_exclude_match_the_relative_name(
    project: Path, include: list[str], exclude: list[str], expected: list[str]
) -> None:
    assert names(run([project], include=include, exclude=exclude)) == expected


def test_an_excluded_folder_is_not_walked(project: Path) -> None:
    util = project / "src" / "util"
    (util / "loop").symlink_to(util, target_is_directory=True)  # walked, it would be skipped
    assert Skipped("src/util/loop/", "symlink loop") in run([project]).skipped
    found = run([project], exclude=["util"])
    assert "src/main.py" in names(found) and found.skipped == []


def test_a_file_named_on_its_own_ignores_include_and_exclude(project: Path) -> None:
    found = run([str(project / "b.txt")], exclude=["*.txt"])
    assert names(found) == [f"{project}/b.txt"]


def test_several_inputs_keep_their_order_and_folders_their_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(tmp_path, {"a/README.md": "a", "b/README.md": "b", "z.txt": "z"})
    monkeypatch.chdir(tmp_path)
    assert names(run(["z.txt", "b/", "./a"])) == ["z.txt", "b/README.md", "a/README.md"]
    assert names(run(["a"])) == ["README.md"]


def test_globs_match_files_and_walk_matched_folders(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    assert names(run(["**/*.md"])) == [
        "README.md",
        "docs/deep/er/api.md",
        "docs/guide.md",
        "src/util/notes.md",
    ]
    assert names(run(["src/*"])) == ["src/main.py", "src/util/helpers.py", "src/util/notes.md"]
    assert names(run(["[bR]*"])) == ["README.md", "b.txt"]
    assert names(run(["**/*.py"], exclude=["util"])) == ["src/main.py"]
    # A folder a glob matched is filtered like the files it matched: by the name as matched.
    assert names(run(["src/*"], include=["src/**/*.py"])) == ["src/main.py", "src/util/helpers.py"]
    assert names(run(["src/*"], exclude=["src/util"])) == ["src/main.py"]


def test_a_glob_that_matches_nothing_is_an_error(project: Path) -> None:
    with pytest.raises(ContextError, match=r"\*\*/\*\.rst: no file matches this pattern$"):
        run([f"{project}/**/*.rst"])


def test_a_path_that_looks_like_a_glob_but_exists_is_a_path(tmp_path: Path) -> None:
    tree(tmp_path, {"odd[1].txt": "literal", "odd1.txt": "the glob would pick me"})
    assert names(run([str(tmp_path / "odd[1].txt")])) == [f"{tmp_path}/odd[1].txt"]


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match=r"/nope\.txt: no such file or directory$"):
        run([tmp_path / "nope.txt"])


def test_a_folder_with_nothing_left_is_an_error(project: Path) -> None:
    with pytest.raises(ContextError, match=r"project: no files left to read"):
        run([project], include=["*.rst"])
    empty = project / "empty"
    empty.mkdir()
    (empty / ".hidden").write_text("x")
    with pytest.raises(ContextError, match=r"empty: no files left to read"):
        run([project / "b.txt", empty])


def test_no_inputs_is_an_error() -> None:
    with pytest.raises(ContextError, match="no files or folders to read"):
        run([])


def test_a_symlink_loop_is_skipped_and_the_rest_found(tmp_path: Path) -> None:
    root = tree(tmp_path / "loop", {"a/file.txt": "f", "top.txt": "t"})
    (root / "a" / "back").symlink_to(root, target_is_directory=True)
    (root / "self").symlink_to(root / "self")  # a link to itself: the OS says ELOOP
    found = run([root])
    assert names(found) == ["a/file.txt", "top.txt"]
    assert found.skipped == [Skipped("a/back/", "symlink loop"), Skipped("self", "symlink loop")]


def test_a_symlink_to_a_file_outside_is_followed(tmp_path: Path) -> None:
    outside = tree(tmp_path / "outside", {"shared.txt": "shared text"})
    root = tree(tmp_path / "root", {"own.txt": "own"})
    (root / "link.txt").symlink_to(outside / "shared.txt")
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    (root / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    found = run([root])
    assert names(found) == ["link.txt", "own.txt"]  # linked-dir/shared.txt is link.txt again
    link = found.found[0]
    assert link.path == root / "link.txt" and link.size == len("shared text")
    assert found.skipped == [Skipped("dangling.txt", "broken symbolic link")]


def test_the_same_file_reached_twice_is_listed_once(tmp_path: Path) -> None:
    root = tree(tmp_path / "root", {"a.txt": "a", "sub/b.txt": "b"})
    (root / "sub-again").symlink_to(root / "sub", target_is_directory=True)
    found = run([root / "a.txt", root, root / "sub", str(root / "*.txt")])
    assert names(found) == [f"{root}/a.txt", f"{root}/sub/b.txt"]
    assert found.skipped == []


def test_binary_and_special_files_are_skipped_with_a_reason(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "mixed",
        {
            "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "text.txt": "fine",
            "doc.pdf": b"%PDF-1.4\x00",
        },
    )
    os.mkfifo(root / "pipe")
    found = run([root])
    assert names(found) == ["doc.pdf", "text.txt"]  # documents are converted, not sniffed
    assert found.skipped == [
        Skipped("logo.png", "binary (NUL byte)"),
        Skipped("pipe", "not a regular file"),
    ]
    named = run([root / "text.txt", root / "pipe"])  # never opened: reading it would block
    assert named.skipped == [Skipped(f"{root}/pipe", "not a regular file")]


def test_nothing_readable_at_all_is_an_error(tmp_path: Path) -> None:
    path = tree(tmp_path, {"blob.bin": b"\x00\x01\x02"}) / "blob.bin"
    with pytest.raises(
        ContextError, match=r"^nothing to read: 1 file\(s\) skipped \(.*blob.bin: binary"
    ):
        run([path])


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens every folder")
def test_a_folder_we_may_not_open_is_skipped(project: Path) -> None:
    locked = project / "src" / "util"
    locked.chmod(0)
    try:
        found = run([project])
    finally:
        locked.chmod(0o755)
    assert Skipped("src/util/", "permission denied") in found.skipped
    assert "src/main.py" in names(found)
