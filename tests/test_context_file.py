"""A context file is validated by streaming blocks: ASCII blocks are only checked, the
rest decoded. Small blocks here put every case on a block boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from recursa import context
from recursa.context import Context
from recursa.errors import ContextError


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "_BLOCK", 8)


def file_with(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "ctx.txt"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii across several blocks\n" * 3,
        "héllo wörld, ünïcode everywhere ✓ and 🙂 too",  # characters split across blocks
        "ascii first block then é" + "x" * 20 + "ü",  # ASCII, mixed, ASCII, mixed
        "   \n\t  x",  # whitespace blocks before the first character
    ],
)
def test_characters_preview_and_blankness_match_a_whole_decode(tmp_path: Path, text: str) -> None:
    ctx = Context(file_with(tmp_path, text.encode()))
    assert ctx.info.chars == len(text)
    assert ctx.info.preview and text.startswith(ctx.info.preview)  # the first block's text


def test_whitespace_only_in_many_blocks_is_empty(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="the file is empty"):
        Context(file_with(tmp_path, b" \n\t" * 20))


def test_nul_in_a_later_block_is_reported_at_its_offset(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="NUL byte at offset 21"):
        Context(file_with(tmp_path, b"a" * 21 + b"\x00" + b"b" * 5))


def test_invalid_byte_after_ascii_blocks_is_reported_at_its_offset(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="byte offset 17"):
        Context(file_with(tmp_path, b"a" * 17 + b"\xff" + b"b" * 10))


def test_a_character_cut_by_a_block_then_ascii_is_invalid(tmp_path: Path) -> None:
    # the first byte of "é" ends block one; block two is ASCII, so it must be decoded
    with pytest.raises(ContextError, match="not valid UTF-8"):
        Context(file_with(tmp_path, b"a" * 7 + "é".encode()[:1] + b"b" * 8))


def test_a_file_ending_inside_a_character_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="truncated character at the end"):
        Context(file_with(tmp_path, b"abc" + "🙂".encode()[:3]))
