"""A text file as a stream of characters: decompressed, decoded and checked on the way.

Files are read in blocks so a large file never sits in memory whole. Compression is
recognised by its magic bytes (a ``.log`` that is really gzip still reads), the
encoding by a byte-order mark first, then the caller's ``encoding``, else strict
UTF-8. Anything that stops a file from being honest text (NUL bytes, bytes the codec
refuses, a file that changed under us) is an :class:`Unreadable` with a one-line
reason, so callers can skip the file and say why.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ..errors import ContextError

SNIFF_BYTES = 8192

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Codecs whose text is full of NUL bytes: NUL is no sign of a binary file there.
_WIDE = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)
_Stream = io.BufferedIOBase | IO[bytes]  # a file, or a decompressor over one


class Unreadable(Exception):
    """A file that cannot become text; ``str(exc)`` is the reason line."""


#: Compressed files by their magic bytes, and how to read them decompressed (the
#: caller closes the stream: ``with _opened(raw) as stream``).
_DECOMPRESSORS: tuple[tuple[bytes, Callable[[IO[bytes]], _Stream]], ...] = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", lambda raw: bz2.BZ2File(raw, mode="rb")),
    (b"\xfd7zXZ\x00", lambda raw: lzma.LZMAFile(raw, mode="rb")),  # noqa: SIM115
)


def _opened(raw: IO[bytes]) -> _Stream:
    """``raw`` itself, or a stream that decompresses it when its magic bytes say so."""
    head = raw.read(6)
    raw.seek(0)
    for magic, decompressed in _DECOMPRESSORS:
        if head.startswith(magic):
            return decompressed(raw)
    return raw


def needs_decoding(head: bytes) -> bool:
    """Whether a file beginning with ``head`` (its first 6 bytes) is compressed or starts
    with a byte-order mark: not UTF-8 text as it lies, so not to be copied or read in
    place."""
    return any(head.startswith(magic) for magic, _ in _DECOMPRESSORS) or bool(_bom_of(head))


def _bom_of(head: bytes) -> tuple[str, int] | None:
    """(codec, mark length) when ``head`` starts with a byte-order mark."""
    return next(((codec, len(bom)) for bom, codec in _BOMS if head.startswith(bom)), None)


def _check_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ContextError(f"unknown encoding {encoding!r}") from None


def _read_exactly(stream: _Stream, size: int) -> bytes:
    """Up to ``size`` bytes; decompressing streams may return short reads."""
    parts: list[bytes] = []
    need = size
    while need and (part := stream.read(need)):
        parts.append(part)
        need -= len(part)
    return b"".join(parts)


def reason_of(exc: Exception) -> str:
    """The reason line for an error met while opening, decompressing or reading."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file vanished"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, EOFError):
        return "compressed data ends early (truncated file)"
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or str(exc)
    return f"corrupt compressed data ({exc})"  # BadGzipFile, zlib, bz2 and lzma errors


def iter_text(path: Path, *, encoding: str | None = None, block: int = 1 << 20) -> Iterator[str]:
    """A text file's characters in blocks, streamed (bounded memory).

    Transparently decompresses .gz/.bz2/.xz (by magic bytes, not only suffix).
    Encoding: a UTF-8 BOM is dropped; a UTF-16 LE/BE (or UTF-32) BOM selects that
    codec; else ``encoding`` if given, else strict UTF-8. Raises :class:`Unreadable`
    for NUL bytes in UTF-8/``encoding`` text (binary), bytes the codec refuses (with
    the byte offset, in the decompressed stream), permission denied, and a file that
    vanished or changed while it was read (re-stat at the end). An unknown
    ``encoding`` is the caller's mistake: a :class:`ContextError`.
    """
    chosen = _check_encoding(encoding) if encoding else None
    if block < 1:
        raise ValueError("block must be at least 1 byte")
    try:
        with path.open("rb") as raw, _opened(raw) as stream:
            before = os.fstat(raw.fileno())
            yield from _decode(stream, chosen, block)
    except _READ_ERRORS as exc:
        raise Unreadable(reason_of(exc)) from None
    check_unchanged(path, before)


def check_unchanged(path: Path, before: os.stat_result) -> None:
    """Raise :class:`Unreadable` when ``path`` is no longer the file that was ``before``
    (its ``fstat`` when opened): it grew, shrank, was replaced or vanished while read."""
    try:
        after = path.stat()
    except _READ_ERRORS as exc:
        raise Unreadable(reason_of(exc)) from None
    if after.st_size != before.st_size:
        raise Unreadable(f"changed while read ({before.st_size:,} -> {after.st_size:,} bytes)")
    same = (before.st_dev, before.st_ino, before.st_mtime_ns, before.st_ctime_ns)
    if (after.st_dev, after.st_ino, after.st_mtime_ns, after.st_ctime_ns) != same:
        raise Unreadable("changed while read")


def _decode(stream: _Stream, encoding: str | None, block: int) -> Iterator[str]:
    head = _read_exactly(stream, 4)
    bom = _bom_of(head)
    codec, fed = bom if bom else (encoding or "utf-8", 0)
    decoder = codecs.getincrementaldecoder(codec)("strict")
    check_nul = codec not in _WIDE
    data = head[fed:] + stream.read(max(block - len(head), 1))  # the head counts in block 1
    while True:
        final = not data
        # Bytes the decoder still holds from the last block come first in its error's
        # offsets; ``fed`` counts every byte handed to it (the mark included).
        start = fed - len(decoder.getstate()[0])
        try:
            text = decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            raise Unreadable(_decode_reason(codec, start + exc.start, encoding)) from None
        if check_nul and "\x00" in text:
            raise Unreadable("binary (NUL byte)")
        if text:
            yield text
        if final:
            return
        fed += len(data)
        data = stream.read(block)


def _decode_reason(codec: str, at: int, encoding: str | None) -> str:
    name = "UTF-8" if codec == "utf-8" else codec
    hint = "" if encoding else " (try --encoding)"
    return f"not valid {name} at byte {at:,}{hint}"


def sniff(path: Path) -> str | None:
    """Why ``path`` is plainly not text (its first bytes hold a NUL and no wide-text
    byte-order mark), else None. Cheap: reads one small block, decompressed."""
    try:
        with path.open("rb") as raw, _opened(raw) as stream:
            head = _read_exactly(stream, SNIFF_BYTES)
    except _READ_ERRORS as exc:
        return reason_of(exc)
    bom = _bom_of(head)
    if bom and bom[0] in _WIDE:
        return None
    return "binary (NUL byte)" if b"\x00" in head else None
