"""Finding and reading the user's files: paths, folders and globs become documents,
and each document becomes text.

- :func:`discover` turns inputs into :class:`Found` files (and :class:`Skipped` ones,
  with the reason), honouring hidden names, .gitignore and ``--include``/``--exclude``;
- :func:`kind_of` says which reader a file needs;
- :func:`iter_text` streams a text file (compressed or not, any encoding);
- :func:`convert` turns a PDF, DOCX, PPTX, XLSX, HTML or EPUB into text (cached);
- :func:`read_records` parses JSON and JSON Lines.

Layer 0: the standard library, ``pathspec`` and ``platformdirs``, and the ``docs``
extra's libraries imported when a document is converted.
"""

from __future__ import annotations

from .convert_cache import Converted
from .discover import Discovery, Found, Skipped, discover
from .documents import convert
from .kinds import Kind, kind_of
from .records import read_records
from .text import Unreadable, iter_text

__all__ = [
    "Converted",
    "Discovery",
    "Found",
    "Kind",
    "Skipped",
    "Unreadable",
    "convert",
    "discover",
    "iter_text",
    "kind_of",
    "read_records",
]
