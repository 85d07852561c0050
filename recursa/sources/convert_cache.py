"""Converted documents kept on disk, keyed by the document's bytes and the converter.

Converting a PDF costs far more than reading its text back, and the same files are
given again and again (a folder asked about twice). An entry is named by SHA-256 of
the converter's version string and the file's own SHA-256, so an edited file or an
upgraded library misses on its own. Entries are written to a temporary file and
renamed into place, so a reader never sees half of one and concurrent runs may
share the folder. A cache that cannot be read or written is only slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Converted:
    """A document as text."""

    text: str
    # Character offset where each page starts (PDF pages, PPTX slides, XLSX sheets
    # where the library marks them), else None.
    pages: tuple[int, ...] | None


def default_cache_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("recursa") / "converted"


def cache_key(data: bytes, converter: str) -> str:
    """The entry name for ``data`` converted by ``converter`` (name and version)."""
    digest = hashlib.sha256(data).hexdigest()
    return hashlib.sha256(f"{converter}\0{digest}".encode()).hexdigest()


@dataclass(frozen=True)
class ConversionCache:
    folder: Path

    def _entry(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> Converted | None:
        """The entry for ``key``, or None when there is none or it does not parse."""
        try:
            record = json.loads(self._entry(key).read_text(encoding="utf-8"))
            text, pages = record["text"], record["pages"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(text, str) or not (pages is None or isinstance(pages, list)):
            return None
        return Converted(text, None if pages is None else tuple(int(p) for p in pages))

    def store(self, key: str, converted: Converted) -> None:
        """Write the entry atomically; a folder that cannot be written is left alone."""
        record = {"text": converted.text, "pages": converted.pages}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, ensure_ascii=False)
            os.replace(temp, self._entry(key))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
