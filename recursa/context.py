"""The prompt an RLM works over: validated once, described to the model, handed to sandboxes.

A :class:`Context` never sends the text to a model. It knows the context's
type, its length in characters, the lengths of its items, and a short preview;
sandboxes get the value itself (in-process) or a file to load (workers). A
``pathlib.Path`` stays on disk: the host validates it by streaming and never
holds it in memory. A folder, a glob or several paths become ``files``: one
packed file (:mod:`recursa.pack`) the sandbox reads as a name-to-text mapping.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import io
import json
import os
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeGuard

from .errors import ContextError
from .repl.runtime import Files, Image

if TYPE_CHECKING:
    from .pack import Source
    from .sources import Found, Skipped

ContextValue = str | list[Any] | dict[str, Any]
#: What :class:`Context` is made from (``ContextInput``, below, also takes a Context).
ContextSource = ContextValue | Path | list[Path]
ContextKind = Literal["str", "list", "dict", "files"]
FileFormat = Literal["text", "json", "pack"]

PREVIEW_CHARS = 300
_BLOCK = 16 * 1024 * 1024
_LARGEST_LISTED = 5
_COMPRESSED = (".gz", ".bz2", ".xz")


@dataclass(frozen=True)
class ContextInfo:
    """What the model is told about its context."""

    kind: ContextKind
    chars: int
    item_lengths: tuple[int, ...]  # per item for a list, per key for a dict or files
    keys: tuple[str, ...]  # a dict's keys, or the files' names in order
    preview: str
    # files only: what a folder looks like without its content
    total_bytes: int = 0  # of the texts, UTF-8
    extensions: tuple[tuple[str, int], ...] = ()  # (".txt", count), most common first
    largest: tuple[tuple[str, int], ...] = ()  # (name, characters), largest first
    paged: int = 0  # files with pages (converted PDFs)
    skipped: int = 0  # files found but not readable
    # str made from one document with pages (a PDF): where each page starts, characters
    pages: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "chars": self.chars, "items": len(self.item_lengths) or None}


_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
_IMAGE_SUFFIXES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def as_image(value: Any) -> Image | None:
    """An :class:`Image` for image-like context items (bytes, image files, PIL images)."""
    if isinstance(value, Image):
        return value
    if isinstance(value, bytes):
        for magic, mime in _MAGIC.items():
            if value.startswith(magic):
                return Image(value, mime)
        if value[:4] == b"RIFF" and value[8:12] == b"WEBP":
            return Image(value, "image/webp")
        raise ContextError("a bytes context item must be an image (PNG, JPEG, GIF or WebP)")
    if isinstance(value, Path) and value.suffix.lower() in _IMAGE_SUFFIXES:
        try:
            return Image(value.read_bytes(), _IMAGE_SUFFIXES[value.suffix.lower()])
        except OSError as exc:
            raise ContextError(f"{value}: {exc.strerror}") from None
    if hasattr(value, "save") and hasattr(value, "mode"):  # a PIL image
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return Image(buffer.getvalue(), "image/png")
    return None


def _scan_file(path: Path) -> tuple[int, str, bool]:
    """Count characters and validate UTF-8 by streaming; returns (chars, preview, blank).

    An ASCII block (the common case) is valid UTF-8 with one character a byte, so it
    is only checked, never decoded: about 3x faster on a large file, which is time
    spent before the first model request.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    buffer = bytearray(_BLOCK)
    chars = 0
    preview = ""
    offset = 0
    blank = True
    try:
        with path.open("rb", buffering=0) as fh:
            while got := fh.readinto(buffer):
                block = memoryview(buffer)[:got]
                if (nul := buffer.find(0, 0, got)) >= 0:
                    raise ContextError(
                        f"{path}: looks binary (NUL byte at offset {offset + nul:,}); "
                        "give a UTF-8 text file"
                    )
                ascii_block = (buffer if got == _BLOCK else buffer[:got]).isascii()
                if ascii_block and decoder.getstate()[0] == b"":
                    text = None if preview and not blank else str(block, "ascii")
                    chars += got
                else:
                    try:
                        text = decoder.decode(block)
                    except UnicodeDecodeError as exc:
                        raise ContextError(
                            f"{path}: not valid UTF-8 (byte offset {offset + exc.start:,}); "
                            "convert it first, e.g. iconv -f latin1 -t utf-8"
                        ) from None
                    chars += len(text)
                if text is not None:
                    preview = preview or text[:PREVIEW_CHARS]
                    blank = blank and not text.strip()
                offset += got
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ContextError(f"{path}: not valid UTF-8 (truncated character at the end)") from None
    except IsADirectoryError:
        raise ContextError(f"{path}: is a directory, not a file") from None
    except FileNotFoundError:
        raise ContextError(f"{path}: no such file") from None
    except PermissionError:
        raise ContextError(f"{path}: permission denied") from None
    return chars, preview, blank


def text_from_bytes(data: bytes, source: str = "standard input") -> str:
    """``data`` (read from ``source``, e.g. a pipe) as a text context: UTF-8 with no NUL
    byte, else a :class:`ContextError`, as for a file context. Emptiness is checked when
    the text becomes a :class:`Context`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContextError(f"{source} is not valid UTF-8 (byte offset {exc.start:,})") from None
    if "\x00" in text:
        raise ContextError(f"{source} looks binary (NUL byte); give UTF-8 text")
    return text


class Context:
    """A validated context: a string, a file, a folder or several files, a list of
    documents, or a dict."""

    def __init__(self, value: ContextSource) -> None:
        self._empty()
        if isinstance(value, Path) and value.is_dir():
            self._init_paths([value])
        elif _is_path_list(value):
            self._init_paths(value)
        elif isinstance(value, Path):
            self._init_file(value, None)
        else:
            self._init_value(value)

    def _empty(self) -> None:
        self._value: ContextValue | None = None
        self._path: Path | None = None
        self._owned_file: Path | None = None
        self._remover: weakref.finalize[Any, Any] | None = None
        self._file_lock = threading.Lock()
        self._format: FileFormat = "text"
        self._writer: Callable[[BinaryIO], Any] | None = None  # rewrites a streamed file
        self._page_starts: dict[str, tuple[int, ...]] = {}  # files with pages only
        self._sources: tuple[Source, ...] = ()  # the files a pack links to
        self._standalone: tuple[Path, weakref.finalize[Any, Any]] | None = None
        #: files found but not readable (a folder's binaries, a broken PDF), with why
        self.skipped: list[Skipped] = []

    def _init_value(self, value: Any) -> None:
        if isinstance(value, str):
            if not value.strip():
                raise ContextError("the context is empty")
            self.info = ContextInfo("str", len(value), (), (), value[:PREVIEW_CHARS])
        elif isinstance(value, list):
            if not value:
                raise ContextError("the context is an empty list")
            value = [image if (image := as_image(v)) is not None else v for v in value]
            items = [
                v if isinstance(v, str) else repr(v) if isinstance(v, Image) else _json_text(v)
                for v in value
            ]
            self.info = ContextInfo(
                "list",
                sum(map(len, items)),
                tuple(map(len, items)),
                (),
                items[0][:PREVIEW_CHARS],
            )
        elif isinstance(value, dict):
            if not value:
                raise ContextError("the context is an empty dict")
            lengths = tuple(len(_json_text(v)) for v in value.values())
            try:
                preview = _json_text(value)[:PREVIEW_CHARS]
            except (TypeError, ValueError) as exc:
                raise ContextError(f"a dict context must be JSON-serialisable: {exc}") from None
            self.info = ContextInfo("dict", sum(lengths), lengths, tuple(map(str, value)), preview)
            self._format = "json"
        else:
            raise ContextError(
                "context must be str, list[str], dict, pathlib.Path or list[pathlib.Path], "
                f"not {type(value).__name__}"
            )
        if isinstance(value, list):
            self._format = "json"
        self._value = value

    @classmethod
    def from_paths(
        cls,
        paths: str | Path | Sequence[str | Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        encoding: str | None = None,
    ) -> Context:
        """A context from files, folders and globs (``str`` paths are globbed).

        One plain file stays a text context (read in place when it is UTF-8; a JSON
        or JSONL file becomes its parsed value); anything else becomes ``files``, a
        read-only mapping of name to text in the sandbox. Unreadable files are left out
        and listed in :attr:`skipped`; nothing readable is a :class:`ContextError`.
        """
        inputs = [paths] if isinstance(paths, str | Path) else list(paths)
        ctx = cls.__new__(cls)
        ctx._empty()
        ctx._init_paths(inputs, include=include, exclude=exclude, encoding=encoding)
        return ctx

    @classmethod
    def from_named_files(cls, files: Mapping[str, Path], *, encoding: str | None = None) -> Context:
        """A ``files`` context of exactly these files, under these names, with no
        discovery: for a caller that chose and vetted them itself (the MCP server keeps
        to its roots). Unreadable files are skipped as by :meth:`from_paths`."""
        from .sources import Found

        if not files:
            raise ContextError("no files to read")
        found = [Found(name, path, path.stat().st_size) for name, path in files.items()]
        ctx = cls.__new__(cls)
        ctx._empty()
        ctx._init_pack(found, [], encoding)
        return ctx

    def _init_paths(
        self,
        inputs: Sequence[str | Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        encoding: str | None = None,
    ) -> None:
        from .sources import discover

        if len(inputs) == 1 and not include and not exclude and Path(inputs[0]).is_file():
            self._init_file(Path(inputs[0]), encoding)
            return
        # the pack reads every byte and skips what is not text: no need to sniff first
        discovery = discover(inputs, include=include, exclude=exclude, sniff_content=False)
        self._init_pack(discovery.found, list(discovery.skipped), encoding)

    def _init_file(self, path: Path, encoding: str | None) -> None:
        """One file: UTF-8 text read in place; records parsed; anything else (compressed,
        another encoding, a converted document) streamed into a private text file."""
        from .sources import Unreadable, kind_of

        if path.is_dir():
            self._init_paths([path])
            return
        kind = kind_of(path) if path.exists() else "text"
        try:
            if kind == "records":
                self._init_value(_records(path, encoding))
                return
            if kind == "text" and encoding is None and not _needs_decoding(path):
                chars, preview, blank = _scan_file(path)
                if blank:
                    raise ContextError(f"{path}: the file is empty")
                self._path = path.resolve()
                self.info = ContextInfo("str", chars, (), (), preview)
                return
            self._writer = _text_writer(path, encoding)
            written, pages = self._write_owned(None, self._writer)
        except Unreadable as exc:
            raise ContextError(f"{path}: {exc}") from None
        if written.blank:
            self.cleanup()
            raise ContextError(f"{path}: the file is empty")
        self.info = ContextInfo("str", written.chars, (), (), written.preview, pages=pages or ())
        if pages:
            self._page_starts = {path.name: pages}

    def _init_pack(self, found: Sequence[Found], skipped: list[Skipped], enc: str | None) -> None:
        from .pack import Packed, write_pack

        packed: list[Packed] = []

        def write(out: BinaryIO) -> None:
            written = write_pack(found, out, encoding=enc)
            packed[:] = written.packed
            self.skipped = [*skipped, *written.skipped]
            self._sources = tuple(written.sources)

        self._format = "pack"
        self._writer = write
        self._write_owned(None, write)
        if not packed:
            self.cleanup()
            why = "; ".join(f"{s.name}: {s.reason}" for s in self.skipped[:3])
            raise ContextError(f"nothing to read: {len(self.skipped):,} file(s) skipped ({why})")
        self.info = _files_info(packed, len(self.skipped))
        self._page_starts = {p.name: p.pages for p in packed if p.pages}

    def page_starts(self, name: str) -> tuple[int, ...] | None:
        """Where each page of file ``name`` starts (characters), for a file with pages:
        a file of a folder by its name there, one document given alone (a str context)
        by its file name (``report.pdf``)."""
        return self._page_starts.get(name)

    @property
    def path(self) -> Path | None:
        """The user's file, when the context was given as one and is read in place."""
        return self._path

    def value(self) -> ContextValue | Files:
        """The context as a Python value (reads a text file into memory; maps a pack)."""
        if self._value is not None:
            return self._value
        path, fmt = self.file()
        if fmt == "pack":
            import mmap

            sources = self._sources
            with path.open("rb") as fh:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            return Files(data, lambda number: sources[number].open())
        return path.read_text(encoding="utf-8")

    @property
    def sources(self) -> tuple[Source, ...]:
        """The files a ``pack`` context links to (read where they lie), by number: a
        sandbox hands its worker a descriptor of one when the code reads it."""
        return self._sources

    def file(
        self, directory: Path | None = None, *, standalone: bool = False
    ) -> tuple[Path, FileFormat]:
        """A file holding the context, for a worker to load: the user's own file when
        it is read in place, else written once (UTF-8 text for a str, JSON for a
        list/dict, a pack for files). A pack links to the plain files it names
        (:attr:`sources`); ``standalone`` asks for a copy holding their text too, for
        a sandbox that cannot be handed descriptors (Docker).

        A written file is private: mode 0600 in a directory of its own (mode 0700,
        ``recursa-context-*`` in ``directory`` or ``$TMPDIR``). A worker running as
        another user gets an open descriptor, never the path. It is removed by
        :meth:`cleanup`, else when this object is garbage-collected or the interpreter
        exits, whichever comes first; a later call writes it again.
        """
        if self._path is not None:
            return self._path, "text"
        with self._file_lock:  # sandboxes starting together write it once
            if self._owned_file is None:
                self._write_owned(directory, self._writer or self._write_value)
            assert self._owned_file is not None
            if standalone and self._sources:
                if self._standalone is None:
                    from .pack import write_standalone

                    linked, sources = self._owned_file, self._sources
                    path, remover, _ = self._write_file(
                        directory, lambda out: write_standalone(linked, sources, out)
                    )
                    self._standalone = (path, remover)
                return self._standalone[0], self._format
            return self._owned_file, self._format

    async def afile(self, *, standalone: bool = False) -> tuple[Path, FileFormat]:
        """:meth:`file` in a thread. Cancelled, it still waits for the thread to finish
        writing, so a :meth:`cleanup` that follows the cancellation finds the file."""
        writing = asyncio.ensure_future(
            asyncio.to_thread(functools.partial(self.file, standalone=standalone))
        )
        try:
            return await asyncio.shield(writing)
        except asyncio.CancelledError:
            await asyncio.wait([writing])
            raise

    def _write_value(self, out: BinaryIO) -> None:
        fh = io.TextIOWrapper(out, encoding="utf-8")
        if self._format == "json":
            json.dump(self._value, fh, ensure_ascii=False, default=_image_json)
        else:
            assert isinstance(self._value, str)
            fh.write(self._value)
        fh.flush()
        fh.detach()

    def _write_owned(self, directory: Path | None, write: Callable[[BinaryIO], Any]) -> Any:
        """Write the context's own private file; returns what ``write`` returned."""
        self._owned_file, self._remover, outcome = self._write_file(directory, write)
        return outcome

    def _write_file(
        self, directory: Path | None, write: Callable[[BinaryIO], Any]
    ) -> tuple[Path, weakref.finalize[Any, Any], Any]:
        """Write a private file with ``write(binary_file)``: its path, its remover, and
        what ``write`` returned."""
        private = tempfile.mkdtemp(prefix="recursa-context-", dir=directory)  # mode 0700
        remover = weakref.finalize(self, _remove_private_dir, private)
        suffix = {"json": ".json", "pack": ".pack"}.get(self._format, ".txt")
        name = os.path.join(private, f"context{suffix}")
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(name, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
            with os.fdopen(fd, "w+b") as out:
                outcome = write(out)
        except BaseException:
            remover()
            raise
        return Path(name), remover, outcome

    def cleanup(self) -> None:
        """Remove the files written by :meth:`file` (and their directories), if any."""
        with self._file_lock:
            remover, self._remover, self._owned_file = self._remover, None, None
            standalone, self._standalone = self._standalone, None
        if remover is not None:
            remover()
        if standalone is not None:
            standalone[1]()


def _is_path_list(value: Any) -> TypeGuard[list[Path]]:
    """A non-empty list of paths that are not all images (those stay a list of images)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, Path) for v in value)
        and not all(v.suffix.lower() in _IMAGE_SUFFIXES for v in value)
    )


def _needs_decoding(path: Path) -> bool:
    """Compressed, or starting with a byte-order mark: not readable in place as UTF-8."""
    from .sources.text import needs_decoding

    if path.suffix.lower() in _COMPRESSED:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(6)
    except OSError:
        return False  # _scan_file reports it
    return needs_decoding(head)


def _records(path: Path, encoding: str | None) -> Any:
    """A JSON Lines file's list of records; a JSON file's value (a dict stays a dict,
    anything but a list, dict or str becomes its JSON text)."""
    from .sources import iter_text, read_records

    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] != [".json"] and suffixes[-2:-1] != [".json"]:
        return read_records(path, encoding=encoding)
    text = "".join(iter_text(path, encoding=encoding))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContextError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    return value if isinstance(value, list | dict | str) else text


def _text_writer(path: Path, encoding: str | None) -> Callable[[BinaryIO], Any]:
    """Writes one file's text; returns what it wrote and the page starts of a document
    with pages."""
    from .pack import document_blocks, write_text

    def write(out: BinaryIO) -> Any:
        blocks, pages = document_blocks(path, encoding=encoding)
        return write_text(blocks, out), pages

    return write


def _files_info(packed: Sequence[Any], skipped: int) -> ContextInfo:
    """What the prompt says about many files: counts, sizes, names, never their text."""
    extensions = Counter(Path(p.name).suffix.lower() or "(none)" for p in packed)
    largest = sorted(packed, key=lambda p: -p.chars)[:_LARGEST_LISTED]
    return ContextInfo(
        "files",
        sum(p.chars for p in packed),
        tuple(p.chars for p in packed),
        tuple(p.name for p in packed),
        "",
        total_bytes=sum(p.nbytes for p in packed),
        extensions=tuple(extensions.most_common()),
        largest=tuple((p.name, p.chars) for p in largest),
        paged=sum(1 for p in packed if p.pages),
        skipped=skipped,
    )


#: What the API takes as a context: a value, paths, or a ready :class:`Context`.
ContextInput = ContextSource | Context


def _remove_private_dir(path: str) -> None:
    """Remove a context's private directory (its one file, then itself)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(path):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(path, name))
        os.rmdir(path)


def _image_json(value: Any) -> Any:
    if isinstance(value, Image):
        return value.to_json()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_image_json)
