"""iter_text on real files: encodings by byte-order mark or by name, compression by
magic bytes, binary and broken files refused with a reason, a file changed mid-read."""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
import os
from pathlib import Path

import pytest

from recursa.errors import ContextError
from recursa.sources import Unreadable, iter_text
from recursa.sources.text import sniff

TEXT = "Grüße aus Köln: naïve café, 12€ — and 🙂 too.\nSecond line.\n" * 5


def read(path: Path, **kwargs: object) -> str:
    return "".join(iter_text(path, **kwargs))  # type: ignore[arg-type]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
def test_utf8_reads_whole_at_any_block_size(tmp_path: Path, block: int) -> None:
    path = write(tmp_path, "a.txt", TEXT.encode())
    assert read(path, block=block) == TEXT


def test_blocks_are_bounded_by_the_block_size(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", ("x" * 1000).encode())
    blocks = list(iter_text(path, block=64))
    assert len(blocks) == 16 and max(map(len, blocks)) == 64


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
    ],
)
@pytest.mark.parametrize("block", [1, 5, 4096])
def test_a_byte_order_mark_picks_the_codec_and_is_dropped(
    tmp_path: Path, bom: bytes, codec: str, block: int
) -> None:
    path = write(tmp_path, "bom.txt", bom + TEXT.encode(codec))
    assert read(path, block=block) == TEXT
    assert read(path, encoding="latin-1") == TEXT  # the mark wins over the caller's guess
    assert sniff(path) is None  # UTF-16/32 text is full of NUL bytes, yet text


def test_latin1_needs_its_encoding_and_says_where_it_broke(tmp_path: Path) -> None:
    text = "plain start, then caf\xe9 and na\xefve"
    path = write(tmp_path, "latin.txt", text.encode("latin-1"))
    with pytest.raises(Unreadable) as caught:
        read(path, block=4)
    assert str(caught.value) == f"not valid UTF-8 at byte {text.index('é'):,} (try --encoding)"
    assert read(path, encoding="latin-1") == text
    assert read(path, encoding="cp1252", block=3) == text


def test_the_offset_counts_bytes_held_over_a_block_boundary(tmp_path: Path) -> None:
    # "é" is two bytes; the second block starts inside it, and the bad byte follows.
    data = b"ab\xc3\xa9" + b"c" * 10 + b"\xc3(" + b"tail"
    path = write(tmp_path, "split.txt", data)
    for block in (1, 2, 3, 13, 15):
        with pytest.raises(Unreadable, match=r"^not valid UTF-8 at byte 14 "):
            read(path, block=block)


def test_a_truncated_character_at_the_end_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "cut.txt", "abcé".encode()[:-1])
    with pytest.raises(Unreadable, match=r"^not valid UTF-8 at byte 3 "):
        read(path)


def test_invalid_bytes_in_the_callers_encoding_name_it_without_the_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", b"abc\x81def")  # 0x81 is undefined in cp1252
    with pytest.raises(Unreadable) as caught:
        read(path, encoding="cp1252")
    assert str(caught.value) == "not valid cp1252 at byte 3"


def test_an_unknown_encoding_is_the_callers_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", b"abc")
    with pytest.raises(ContextError, match="unknown encoding 'klingon-8'"):
        read(path, encoding="klingon-8")


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("a.txt.gz", gzip.compress),
        ("a.txt.bz2", bz2.compress),
        ("a.txt.xz", lzma.compress),
        ("really-gzip.log", gzip.compress),  # recognised by its magic bytes
    ],
)
def test_compressed_text_is_decompressed_by_magic_bytes(
    tmp_path: Path, name: str, compress: object
) -> None:
    data = compress(codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"))  # type: ignore[operator]
    path = write(tmp_path, name, data)
    assert read(path, block=5) == TEXT


def test_a_name_that_says_gz_over_plain_text_reads_as_plain_text(tmp_path: Path) -> None:
    path = write(tmp_path, "not-really.gz", TEXT.encode())
    assert read(path) == TEXT


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (gzip.compress(TEXT.encode())[:-12], "compressed data ends early"),
        (b"\x1f\x8b\x08\x00" + b"\xff" * 40, "corrupt compressed data"),
        (b"BZh9" + b"\x00" * 40, "corrupt compressed data"),
        (b"\xfd7zXZ\x00" + b"\x01" * 40, "corrupt compressed data"),
    ],
)
def test_broken_compressed_data_is_unreadable(tmp_path: Path, data: bytes, reason: str) -> None:
    path = write(tmp_path, "broken.gz", data)
    with pytest.raises(Unreadable, match=f"^{reason}"):
        read(path)
    assert (sniff(path) or "").startswith(reason)


def test_nul_bytes_mean_binary(tmp_path: Path) -> None:
    path = write(tmp_path, "data.bin", b"PK\x03\x04 some text\x00\x00 more")
    with pytest.raises(Unreadable, match=r"^binary \(NUL byte\)$"):
        read(path)
    assert sniff(path) == "binary (NUL byte)"
    gz = write(tmp_path, "data.gz", gzip.compress(b"abc\x00def"))
    assert sniff(gz) == "binary (NUL byte)"


def test_a_nul_after_the_sniffed_head_is_still_caught_while_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "late.txt", b"a" * 20_000 + b"\x00")
    assert sniff(path) is None
    with pytest.raises(Unreadable, match="binary"):
        read(path, block=4096)


def test_a_file_that_grows_while_read_is_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, "growing.txt", b"0123456789" * 10)
    blocks = iter_text(path, block=16)
    assert next(blocks) == "0123456789012345"
    with path.open("ab") as fh:  # another process appends meanwhile
        fh.write(b"appended")
    with pytest.raises(Unreadable, match=r"^changed while read \(100 -> 108 bytes\)$"):
        list(blocks)


def test_a_file_replaced_while_read_is_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, "replaced.txt", b"x" * 64)
    blocks = iter_text(path, block=16)
    next(blocks)
    replacement = write(tmp_path, "new.txt", b"y" * 64)
    os.replace(replacement, path)  # same size, another file
    with pytest.raises(Unreadable, match=r"^changed while read$"):
        list(blocks)


def test_a_file_that_vanishes_while_read_is_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, "gone.txt", b"x" * 64)
    blocks = iter_text(path, block=16)
    next(blocks)
    path.unlink()
    with pytest.raises(Unreadable, match=r"^file vanished$"):
        list(blocks)


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(Unreadable, match=r"^file vanished$"):
        read(tmp_path / "nope.txt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_permission_denied_is_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.txt", b"hidden")
    path.chmod(0)
    try:
        with pytest.raises(Unreadable, match=r"^permission denied$"):
            read(path)
        assert sniff(path) == "permission denied"
    finally:
        path.chmod(0o600)
