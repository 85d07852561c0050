"""A small folder of real files the context tests read: nested text, a binary, gzip."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``docs/``: ``a/b.txt``, ``a/c.md``, ``notes.txt`` (UTF-8), ``z.log.gz`` (gzip)."""
    root = tmp_path / "docs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "b.txt").write_text("the vault code is 4471\n", encoding="utf-8")
    (root / "a" / "c.md").write_text("# Heading\nnaïve café ✓\n", encoding="utf-8")
    (root / "notes.txt").write_text("remember the milk\n" * 50, encoding="utf-8")
    (root / "z.log.gz").write_bytes(gzip.compress(b"compressed line\n"))
    return root


@pytest.fixture
def binary(folder: Path) -> Path:
    """A binary file inside ``folder``: it is skipped, the others are read."""
    path = folder / "blob.bin"
    path.write_bytes(b"\x00\x01\x02binary" * 10)
    return path
