"""The prompt an RLM works over: validated once, described to the model, handed to sandboxes.

A :class:`Context` never sends the text to a model. It knows the context's
type, its length in characters, the lengths of its items, and a short preview;
sandboxes get the value itself (in-process) or a file to load (workers). A
``pathlib.Path`` stays on disk: the host validates it by streaming and never
holds it in memory.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ContextError
from .repl.runtime import Image

ContextValue = str | list[Any] | dict[str, Any]
ContextInput = ContextValue | Path
ContextKind = Literal["str", "list", "dict"]
FileFormat = Literal["text", "json"]

PREVIEW_CHARS = 300
_BLOCK = 16 * 1024 * 1024


@dataclass(frozen=True)
class ContextInfo:
    """What the model is told about its context."""

    kind: ContextKind
    chars: int
    item_lengths: tuple[int, ...]  # per item for a list, per key for a dict
    keys: tuple[str, ...]
    preview: str

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
        import io

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
    """A validated context, from a string, a file, a list of documents or a dict."""

    def __init__(self, value: ContextInput) -> None:
        self._value: ContextValue | None = None
        self._path: Path | None = None
        self._owned_file: Path | None = None
        self._remover: weakref.finalize[Any, Any] | None = None
        self._file_lock = threading.Lock()
        self._format: FileFormat = "text"
        if isinstance(value, Path):
            if value.is_dir():
                raise ContextError(f"{value}: is a directory, not a file")
            chars, preview, blank = _scan_file(value)
            if blank:
                raise ContextError(f"{value}: the file is empty")
            self._path = value.resolve()
            self.info = ContextInfo("str", chars, (), (), preview)
            return
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
                f"context must be str, list[str], dict or pathlib.Path, not {type(value).__name__}"
            )
        if isinstance(value, list):
            self._format = "json"
        self._value = value

    @property
    def path(self) -> Path | None:
        """The user's file, when the context was given as one."""
        return self._path

    def value(self) -> ContextValue:
        """The context as a Python value (reads a file context into memory)."""
        if self._value is not None:
            return self._value
        assert self._path is not None
        return self._path.read_text(encoding="utf-8")

    def file(self, directory: Path | None = None) -> tuple[Path, FileFormat]:
        """A file holding the context, for a worker to load: the user's own file when
        there is one, else written once (UTF-8 text for a str, JSON for a list/dict).

        A written file is private: mode 0600 in a directory of its own (mode 0700,
        ``recursa-context-*`` in ``directory`` or ``$TMPDIR``). A worker running as
        another user gets an open descriptor, never the path. It is removed by
        :meth:`cleanup`, else when this object is garbage-collected or the interpreter
        exits, whichever comes first.
        """
        if self._path is not None:
            return self._path, "text"
        with self._file_lock:  # sandboxes starting together write it once
            return self._write_file(directory)

    async def afile(self) -> tuple[Path, FileFormat]:
        """:meth:`file` in a thread. Cancelled, it still waits for the thread to finish
        writing, so a :meth:`cleanup` that follows the cancellation finds the file."""
        writing = asyncio.ensure_future(asyncio.to_thread(self.file))
        try:
            return await asyncio.shield(writing)
        except asyncio.CancelledError:
            await asyncio.wait([writing])
            raise

    def _write_file(self, directory: Path | None) -> tuple[Path, FileFormat]:
        if self._owned_file is None:
            private = tempfile.mkdtemp(prefix="recursa-context-", dir=directory)  # mode 0700
            remover = weakref.finalize(self, _remove_private_dir, private)
            suffix = ".json" if self._format == "json" else ".txt"
            name = os.path.join(private, f"context{suffix}")
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                fd = os.open(name, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    if self._format == "json":
                        json.dump(self._value, fh, ensure_ascii=False, default=_image_json)
                    else:
                        assert isinstance(self._value, str)
                        fh.write(self._value)
            except BaseException:
                remover()
                raise
            self._owned_file, self._remover = Path(name), remover
        return self._owned_file, self._format

    def cleanup(self) -> None:
        """Remove the file written by :meth:`file` (and its directory), if any."""
        with self._file_lock:
            remover, self._remover, self._owned_file = self._remover, None, None
        if remover is not None:
            remover()


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
