"""Many documents written into one file a sandbox worker maps: their texts, then an index.

A worker gets its context as one read-only file (an inherited descriptor, a Docker
mount), so a folder travels the same way at every isolation level: every document's
UTF-8 text back to back, then a JSON index (name, byte offset and length, characters,
page starts, original size, kind), then :data:`~recursa.repl.runtime.PACK_TRAILER`.
Documents are streamed through in blocks, converted ones one at a time, so the host
never holds all the text. A file that is plain UTF-8 as it lies on disk (the common
case) is copied as it is, its blocks checked rather than decoded and encoded again;
anything else goes through :func:`recursa.sources.iter_text`. The reader is
:class:`recursa.repl.runtime.Files`.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ContextError
from .repl.runtime import PACK_MAGIC, PACK_TRAILER
from .sources import Found, Skipped, Unreadable, convert, iter_text, kind_of
from .sources.text import check_unchanged, needs_decoding

PREVIEW_CHARS = 300
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Packed:
    """One document's place in a pack."""

    name: str
    offset: int
    nbytes: int
    chars: int
    pages: tuple[int, ...] | None  # character offsets where each page starts
    size: int  # the original file's size in bytes
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "offset": self.offset,
            "bytes": self.nbytes,
            "chars": self.chars,
            "pages": list(self.pages) if self.pages is not None else None,
            "size": self.size,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class Written:
    """What streaming text into a file counted: characters, a preview, whether all blank."""

    chars: int
    preview: str
    blank: bool


def write_text(blocks: Iterable[str], out: BinaryIO) -> Written:
    """Write ``blocks`` to ``out`` as UTF-8, one block at a time."""
    chars = 0
    preview = ""
    blank = True
    for block in blocks:
        if "\x00" in block:
            raise Unreadable("binary (NUL character)")
        out.write(block.encode("utf-8"))
        chars += len(block)
        if len(preview) < PREVIEW_CHARS:
            preview += block[: PREVIEW_CHARS - len(preview)]
        blank = blank and not block.strip()
    return Written(chars, preview, blank)


def copy_plain(blocks: Iterable[bytes], out: BinaryIO) -> int | None:
    """Copy a file that is UTF-8 as it lies (its raw ``blocks``) to ``out`` unchanged
    and return its length in characters: ASCII blocks are only checked, others decoded
    to count. None (``out`` then to be rolled back) when it is not plain UTF-8;
    ``Unreadable`` for a NUL byte."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    chars = 0
    for i, data in enumerate(blocks):
        if i == 0 and needs_decoding(data[:6]):
            return None
        if data.find(0) >= 0:
            raise Unreadable("binary (NUL byte)")
        if data.isascii() and decoder.getstate()[0] == b"":
            chars += len(data)
        else:
            try:
                chars += len(decoder.decode(data))
            except UnicodeDecodeError:
                return None
        out.write(data)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    return chars


def raw_blocks(path: Path) -> Iterator[bytes]:
    """A file's bytes in blocks; ``Unreadable`` when it cannot be read, or when it changed
    while it was read."""
    try:
        with path.open("rb", buffering=0) as fh:
            before = os.fstat(fh.fileno())
            while block := fh.read(_BLOCK):
                yield block
    except OSError as exc:
        raise Unreadable(exc.strerror or type(exc).__name__) from None
    check_unchanged(path, before)


def document_blocks(
    path: Path, *, encoding: str | None = None, cache_dir: Path | None = None
) -> tuple[Iterator[str], tuple[int, ...] | None]:
    """A document's text as blocks, and its page starts: text files streamed, documents
    (PDF, DOCX, ...) converted. Raises ``Unreadable`` or :class:`ContextError`."""
    if kind_of(path) == "document":
        converted = convert(path, cache_dir=cache_dir)
        return iter((converted.text,)), converted.pages
    return iter_text(path, encoding=encoding), None


def write_pack(
    found: Sequence[Found],
    out: BinaryIO,
    *,
    encoding: str | None = None,
    cache_dir: Path | None = None,
) -> tuple[list[Packed], list[Skipped]]:
    """Write every readable document of ``found`` into ``out`` (a new, empty binary file),
    then the index and the trailer. A document that cannot be read is rolled back and
    becomes a :class:`Skipped` entry with the reason."""
    packed: list[Packed] = []
    skipped: list[Skipped] = []
    offset = 0
    for item in found:
        kind = kind_of(item.path)
        try:
            chars, pages = _write_document(item.path, kind, out, offset, encoding, cache_dir)
        except (Unreadable, ContextError) as exc:  # a failed write is an error, no skip
            _roll_back(out, offset)
            skipped.append(Skipped(item.name, str(exc)))
            continue
        end = out.tell()
        packed.append(Packed(item.name, offset, end - offset, chars, pages, item.size, kind))
        offset = end
    index = json.dumps([p.to_json() for p in packed], ensure_ascii=False).encode("utf-8")
    out.write(index)
    out.write(PACK_TRAILER.pack(offset, PACK_MAGIC))
    return packed, skipped


def _write_document(
    path: Path,
    kind: str,
    out: BinaryIO,
    offset: int,
    encoding: str | None,
    cache_dir: Path | None,
) -> tuple[int, tuple[int, ...] | None]:
    """One document's text into ``out`` from ``offset`` on: copied as it is when it is
    plain UTF-8, else decoded or converted. Returns its characters and page starts."""
    plain = kind == "text" and encoding is None
    if plain and (chars := copy_plain(raw_blocks(path), out)) is not None:
        return chars, None
    _roll_back(out, offset)
    blocks, pages = document_blocks(path, encoding=encoding, cache_dir=cache_dir)
    return write_text(blocks, out).chars, pages


def _roll_back(out: BinaryIO, offset: int) -> None:
    """Drop what was written of a document from ``offset`` on."""
    out.seek(offset)
    out.truncate()
