"""Which reader a file needs, by its name alone (no bytes are read)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

Kind = Literal["text", "document", "records"]

#: Converted to text by a document library (the ``docs`` extra).
DOCUMENT_SUFFIXES = frozenset({".pdf", ".docx", ".pptx", ".xlsx", ".html", ".htm", ".epub"})
#: Parsed as JSON: one value per line, or one value per file.
RECORD_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
#: Compression that :func:`recursa.sources.iter_text` undoes while it reads.
COMPRESSED_SUFFIXES = frozenset({".gz", ".bz2", ".xz"})


def kind_of(path: PurePath) -> Kind:
    """``document`` for .pdf .docx .pptx .xlsx .html .htm .epub (converted),
    ``records`` for .jsonl .ndjson .json (also compressed: ``a.jsonl.gz``), ``text``
    for everything else, compressed text included. A compressed document is ``text``:
    documents are read as they lie on disk."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in DOCUMENT_SUFFIXES:
        return "document"
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    if suffixes and suffixes[-1] in RECORD_SUFFIXES:
        return "records"
    return "text"
