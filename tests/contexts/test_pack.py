"""A pack written from real files and read back by the runtime's ``Files`` mapping."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from recursa.pack import write_pack
from recursa.repl.runtime import Files
from recursa.sources import Found


def found(root: Path, *names: str) -> list[Found]:
    return [Found(n, root / n, (root / n).stat().st_size) for n in names]


@pytest.fixture(params=["linked", "copied"])
def link(request: pytest.FixtureRequest) -> bool:
    """Every reading test runs on both kinds of pack: every plain file linked where it
    lies (``link_from=0``; by default only files of 16 KiB or more are) and every one
    copied in (``link_from=None``)."""
    return bool(request.param == "linked")


def pack(tmp_path: Path, items: list[Found], link: bool = True) -> tuple[Files, list[str]]:
    out = tmp_path / "ctx.pack"
    with out.open("w+b") as fh:
        written = write_pack(items, fh, link_from=0 if link else None)
    assert bool(written.sources) == (link and any(p.source is not None for p in written.packed))
    with out.open("rb") as fh:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    files = Files(data, lambda number: written.sources[number].open())
    return files, [f"{s.name}: {s.reason}" for s in written.skipped]


def test_every_text_reads_back_by_name_in_order(folder: Path, tmp_path: Path, link: bool) -> None:
    files, skipped = pack(
        tmp_path, found(folder, "a/b.txt", "a/c.md", "z.log.gz", "notes.txt"), link
    )
    assert skipped == []
    assert list(files) == ["a/b.txt", "a/c.md", "z.log.gz", "notes.txt"]
    assert files["a/c.md"] == "# Heading\nnaïve café ✓\n"
    assert files["z.log.gz"] == "compressed line\n"  # decompressed on the way in
    assert files.size("a/c.md") == len("# Heading\nnaïve café ✓\n")
    plain = {
        n: (folder / n).read_text(encoding="utf-8") for n in ("a/b.txt", "a/c.md", "notes.txt")
    }
    assert dict(files) == {**plain, "z.log.gz": "compressed line\n"}
    assert files.pages("a/b.txt") is None
    with pytest.raises(KeyError):
        files["missing.txt"]


def test_an_unreadable_file_is_rolled_back_and_skipped(
    folder: Path, binary: Path, tmp_path: Path, link: bool
) -> None:
    files, skipped = pack(tmp_path, found(folder, "a/b.txt", "blob.bin", "notes.txt"), link)
    assert skipped == ["blob.bin: binary (NUL byte)"]
    assert list(files) == ["a/b.txt", "notes.txt"]
    assert files["notes.txt"] == "remember the milk\n" * 50  # not shifted by the binary


def test_repr_says_how_many_and_which_never_the_text(folder: Path, tmp_path: Path) -> None:
    for i in range(8):
        (folder / f"f{i}.txt").write_text(f"secret {i}")
    files, _ = pack(tmp_path, found(folder, *(f"f{i}.txt" for i in range(8))))
    text = repr(files)
    assert "8 files" in text and "'f0.txt'" in text and "(3 more)" in text
    assert "secret" not in text


def test_a_file_that_is_not_a_pack_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a recursa pack"):
        Files(b"just some text that is long enough")


def test_a_file_that_is_not_utf8_falls_back_to_decoding(tmp_path: Path, link: bool) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "latin.txt").write_bytes("café au lait".encode("latin-1"))
    (root / "wide.txt").write_bytes("wide é".encode("utf-16"))
    (root / "long.txt").write_text("é" * (1 << 20), encoding="utf-8")  # é across blocks
    items = found(root, "latin.txt", "wide.txt", "long.txt")
    files, skipped = pack(tmp_path, items, link)
    assert skipped == ["latin.txt: not valid UTF-8 at byte 3 (try --encoding)"]
    assert files["wide.txt"] == "wide é" and files.size("long.txt") == 1 << 20
    out = tmp_path / "latin.pack"
    with out.open("w+b") as fh:
        write_pack(items[:1], fh, encoding="latin-1")
    with out.open("rb") as fh:
        assert Files(fh.read())["latin.txt"] == "café au lait"


def test_plain_copies_decoded_files_and_skips_interleave_correctly(
    tmp_path: Path, link: bool
) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    kinds = {
        "plain": lambda i: f"plain {i}\n".encode() * 50_000,  # several blocks
        "wide": lambda i: f"wide {i}".encode("utf-16"),  # decoded, not copied
        "late-nul": lambda i: b"x" * 1_500_000 + b"\x00",  # binary after a full block
        "latin": lambda i: f"caf\xe9 {i}".encode("latin-1"),  # not UTF-8: skipped
    }
    names = []
    for i in range(24):
        kind = list(kinds)[i % 4]
        names.append(f"{i:02d}-{kind}.txt")
        (root / names[-1]).write_bytes(kinds[kind](i))
    files, skipped = pack(tmp_path, found(root, *names), link)
    assert len(skipped) == 12 and all("latin" in s or "late-nul" in s for s in skipped)
    for name in files:
        i = int(name[:2])
        expected = f"plain {i}\n" * 50_000 if "plain" in name else f"wide {i}"
        assert files[name] == expected


def test_a_file_that_grows_while_it_is_packed_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: bool
) -> None:
    """The plain-copy path re-checks the file after its last block: a file appended to
    while it was copied is rolled back and skipped with why, the others kept."""
    import recursa.pack as pack_module

    (tmp_path / "big.txt").write_text("x" * (3 << 20))
    (tmp_path / "ok.txt").write_text("fine\n")
    raw_blocks = pack_module.raw_blocks

    def appending(path: Path, opened: list[os.stat_result] | None = None) -> Iterator[bytes]:
        for i, block in enumerate(raw_blocks(path, opened)):
            if i == 0 and path.name == "big.txt":
                with path.open("a") as fh:
                    fh.write("more")
            yield block

    monkeypatch.setattr(pack_module, "raw_blocks", appending)
    files, skipped = pack(tmp_path, found(tmp_path, "big.txt", "ok.txt"), link)
    assert list(files) == ["ok.txt"] and files["ok.txt"] == "fine\n"
    assert skipped == ["big.txt: changed while read (3,145,728 -> 3,145,732 bytes)"]
