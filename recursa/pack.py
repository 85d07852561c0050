"""Many documents described in one file a sandbox worker maps: an index, and the texts
that cannot be read where they lie.

A worker gets its context as one read-only file (an inherited descriptor, a Docker
mount), so a folder travels the same way at every isolation level. A file that is plain
UTF-8 as it lies on disk (the common case) and at least :data:`LINK_FROM` bytes long is
only checked (its blocks scanned, its characters counted, its ``stat`` recorded) and
*linked*: its index entry names it by number, and the worker asks the host for a
descriptor of that file when the code first reads it
(:mod:`recursa.repl.source_server`). Nothing of it is copied, so a 1 GB folder costs a
read, not a second gigabyte of page cache. A smaller plain file is copied as it is:
reading a linked file costs about 30 µs more than reading a copy, and copying one
costs 1.5–2.5 µs a KiB (``benchmarks/linked_reads.py``), so the two meet near 16 KiB
when the code reads every file, and a link wins sooner when it reads fewer. Anything
else (another encoding, a compressed file, a converted document) has its UTF-8 text
written into the pack, one block at a time, so the host never holds all the text. Then
comes a JSON index (name, byte offset and length or source number, characters, page
starts, original size, kind) and :data:`~recursa.repl.runtime.PACK_TRAILER`. A sandbox
that cannot be handed descriptors (Docker's pipes) gets :func:`write_standalone`'s copy
instead. The reader is :class:`recursa.repl.runtime.Files`.
"""

from __future__ import annotations

import codecs
import json
import mmap
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ContextError
from .repl.runtime import PACK_MAGIC, PACK_TRAILER, pack_index
from .sources import Found, Skipped, Unreadable, convert, iter_text, kind_of
from .sources.text import check_unchanged, needs_decoding

PREVIEW_CHARS = 300
_BLOCK = 1 << 20
#: Plain files from this size on are linked rather than copied (see above).
LINK_FROM = 16 * 1024


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
    source: int | None = None  # linked: the number of its Source, read where it lies

    def to_json(self) -> dict[str, Any]:
        entry = {
            "name": self.name,
            "offset": self.offset,
            "bytes": self.nbytes,
            "chars": self.chars,
            "pages": list(self.pages) if self.pages is not None else None,
            "size": self.size,
            "kind": self.kind,
        }
        if self.source is not None:
            entry["source"] = self.source
        return entry


Stamp = tuple[int, int, int, int, int]


def stamp_of(st: os.stat_result) -> Stamp:
    """What must not change between checking a linked file and reading it: the same
    file (device, inode), size, content time and change time (which no one can set)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class SourceChanged(OSError):
    """A linked file is no longer the one that was checked."""


@dataclass(frozen=True)
class Source:
    """A plain UTF-8 file a pack links to instead of holding its text."""

    name: str
    path: Path
    stamp: Stamp

    def open(self) -> int:
        """A read-only descriptor of this file, after checking it is still the file that
        was checked (the same inode, size and times): :class:`SourceChanged` if not."""
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
        try:
            fd = os.open(self.path, flags | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise SourceChanged(f"{self.name}: {why} (since the run read it)") from None
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and stamp_of(st) == self.stamp:
            return fd
        os.close(fd)
        size = self.stamp[2]
        now = f" ({size:,} -> {st.st_size:,} bytes)" if st.st_size != size else ""
        raise SourceChanged(
            f"{self.name} changed after the run read it{now}: start the run again to read "
            "it as it is now"
        )


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


def copy_plain(blocks: Iterable[bytes], out: BinaryIO | None) -> int | None:
    """Check a file that is UTF-8 as it lies (its raw ``blocks``), copying it to ``out``
    unchanged when given, and return its length in characters: ASCII blocks are only
    checked, others decoded to count. None (``out`` then to be rolled back) when it is
    not plain UTF-8; ``Unreadable`` for a NUL byte."""
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
        if out is not None:
            out.write(data)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    return chars


def raw_blocks(path: Path, opened: list[os.stat_result] | None = None) -> Iterator[bytes]:
    """A file's bytes in blocks (its ``fstat`` when opened appended to ``opened``);
    ``Unreadable`` when it cannot be read, or when it changed while it was read."""
    try:
        with path.open("rb", buffering=0) as fh:
            before = os.fstat(fh.fileno())
            if opened is not None:
                opened.append(before)
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


@dataclass(frozen=True)
class PackWritten:
    """What :func:`write_pack` wrote: the documents, those it skipped and why, and the
    files it links to (read where they lie)."""

    packed: list[Packed]
    skipped: list[Skipped]
    sources: list[Source]


def write_pack(
    found: Sequence[Found],
    out: BinaryIO,
    *,
    encoding: str | None = None,
    cache_dir: Path | None = None,
    link_from: int | None = LINK_FROM,
) -> PackWritten:
    """Write every readable document of ``found`` into ``out`` (a new, empty binary file),
    then the index and the trailer: plain UTF-8 files of ``link_from`` bytes or more
    linked (None: none), the others copied, the rest's text written. A document that
    cannot be read is rolled back and becomes a :class:`Skipped` entry with the reason."""
    packed: list[Packed] = []
    skipped: list[Skipped] = []
    sources: list[Source] = []
    offset = 0
    for item in found:
        kind = kind_of(item.path)
        plain = kind == "text" and encoding is None
        try:
            if plain and link_from is not None and item.size >= link_from:
                checked = _check_in_place(item.path)
                if checked is not None:
                    chars, stamp = checked
                    number = len(sources)
                    packed.append(
                        Packed(item.name, 0, stamp[2], chars, None, item.size, kind, number)
                    )
                    sources.append(Source(item.name, item.path, stamp))
                    continue
                plain = False  # checked: not plain UTF-8
            chars, pages = _write_document(item.path, plain, out, encoding, cache_dir)
        except (Unreadable, ContextError) as exc:  # a failed write is an error, no skip
            _roll_back(out, offset)
            skipped.append(Skipped(item.name, str(exc)))
            continue
        end = out.tell()
        packed.append(Packed(item.name, offset, end - offset, chars, pages, item.size, kind))
        offset = end
    _write_index(out, offset, [p.to_json() for p in packed])
    return PackWritten(packed, skipped, sources)


def _write_index(out: BinaryIO, offset: int, entries: Sequence[dict[str, Any]]) -> None:
    """The index (its entries as JSON) at ``offset``, then the trailer."""
    index = json.dumps(list(entries), ensure_ascii=False).encode("utf-8")
    out.write(index)
    out.write(PACK_TRAILER.pack(offset, PACK_MAGIC))


def _check_in_place(path: Path) -> tuple[int, Stamp] | None:
    """A file to link: its characters and stamp when it is plain UTF-8 (that did not
    change while it was checked: see :func:`raw_blocks`); None when it must be decoded."""
    opened: list[os.stat_result] = []
    chars = copy_plain(raw_blocks(path, opened), None)
    return None if chars is None else (chars, stamp_of(opened[0]))


def write_standalone(pack: Path, sources: Sequence[Source], out: BinaryIO) -> None:
    """Copy ``pack`` into ``out`` with every linked file's text in it, for a sandbox
    that cannot be handed descriptors. :class:`SourceChanged` if a linked file changed
    since it was checked."""
    with pack.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        entries = pack_index(data)
        for entry in entries:
            offset = out.tell()
            number = entry.pop("source", None)
            if number is None:
                fh.seek(entry["offset"])
                _copy(fh, out, entry["bytes"])
            else:
                with os.fdopen(sources[number].open(), "rb") as src:
                    _copy(src, out, entry["bytes"])
            entry["offset"] = offset
        _write_index(out, out.tell(), entries)


def _copy(src: BinaryIO, out: BinaryIO, nbytes: int) -> None:
    while nbytes > 0:
        block = src.read(min(_BLOCK, nbytes))
        if not block:
            raise SourceChanged("a linked file shrank while it was copied")
        out.write(block)
        nbytes -= len(block)


def _write_document(
    path: Path, plain: bool, out: BinaryIO, encoding: str | None, cache_dir: Path | None
) -> tuple[int, tuple[int, ...] | None]:
    """One document's text into ``out``: copied as it is when it may be ``plain`` UTF-8
    and is, else decoded or converted. Returns its characters and page starts."""
    offset = out.tell()
    if plain and (chars := copy_plain(raw_blocks(path), out)) is not None:
        return chars, None
    _roll_back(out, offset)
    blocks, pages = document_blocks(path, encoding=encoding, cache_dir=cache_dir)
    return write_text(blocks, out).chars, pages


def _roll_back(out: BinaryIO, offset: int) -> None:
    """Drop what was written of a document from ``offset`` on."""
    out.seek(offset)
    out.truncate()
