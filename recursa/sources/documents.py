"""Documents (PDF, DOCX, PPTX, XLSX, HTML, EPUB) as text, through well-kept libraries.

PDF goes through pypdf page by page, so page boundaries are exact. The other formats
go through markitdown (Markdown out); its PPTX output marks each slide and its XLSX
output heads each sheet with ``## <sheet>``, which become the page offsets. Both are
in the ``docs`` extra and imported only when a document is converted. Results are
cached (:mod:`recursa.sources.convert_cache`), so converting the same bytes again is
a file read.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import ContextError
from .convert_cache import ConversionCache, Converted, cache_key, default_cache_dir
from .kinds import DOCUMENT_SUFFIXES
from .text import Unreadable, reason_of

#: Bump when the text this module makes from the same library output changes.
CONVERTER_VERSION = "1"
PAGE_SEPARATOR = "\n\n"

_SLIDE = re.compile(r"<!-- Slide number: \d+ -->")
_SHEET = re.compile(r"^## ", re.MULTILINE)


def convert(path: Path, *, cache_dir: Path | None = None) -> Converted:
    """``path`` (a .pdf .docx .pptx .xlsx .html .htm .epub) as text, from the cache in
    ``cache_dir`` (default: the user cache dir's ``recursa/converted``) when these
    bytes were converted before.

    A missing library is a :class:`ContextError` naming the ``docs`` extra; a file
    the library cannot parse (or cannot be read) is an :class:`Unreadable`.
    """
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_SUFFIXES:
        known = " ".join(sorted(DOCUMENT_SUFFIXES))
        raise ContextError(f"{path}: not a document format ({known})")
    library = "pypdf" if suffix == ".pdf" else "markitdown"
    converter = f"recursa {CONVERTER_VERSION}; {library} {_version_of(library, suffix)}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Unreadable(reason_of(exc)) from None
    cache = ConversionCache(cache_dir if cache_dir is not None else default_cache_dir())
    key = cache_key(data, converter)
    if (cached := cache.load(key)) is not None:
        return cached
    converted = _pdf(data) if suffix == ".pdf" else _markitdown(data, suffix)
    cache.store(key, converted)
    return converted


def _needs_docs(suffix: str) -> ContextError:
    return ContextError(f'reading {suffix} files needs the docs extra: pip install "recursa[docs]"')


def _version_of(library: str, suffix: str) -> str:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        raise _needs_docs(suffix) from None


def _quietly(call: Callable[[], Any]) -> Any:
    """``call()`` with the library's warnings (about odd but readable files) hidden."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


def _one_line(exc: BaseException) -> str:
    line = next((part for part in str(exc).splitlines() if part.strip()), type(exc).__name__)
    return line.strip()[:200]


def _pdf(data: bytes) -> Converted:
    try:
        import pypdf
    except ImportError:
        raise _needs_docs(".pdf") from None

    def pages() -> list[str]:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("encrypted PDF (it needs a password)")
        return [page.extract_text() for page in reader.pages]

    try:
        texts: list[str] = _quietly(pages)
    except Unreadable:
        raise
    except Exception as exc:  # pypdf raises many kinds on a malformed file
        raise Unreadable(f"cannot parse PDF ({_one_line(exc)})") from None
    starts: list[int] = []
    offset = 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + len(PAGE_SEPARATOR)
    return Converted(PAGE_SEPARATOR.join(texts), tuple(starts))


#: The markitdown converter class for each format. Calling it directly, not through
#: ``MarkItDown.convert``, means no content sniffing and no fallback to plain text:
#: a damaged .docx is an error, not its zip bytes passed off as text.
_CONVERTERS = {
    ".docx": "DocxConverter",
    ".pptx": "PptxConverter",
    ".xlsx": "XlsxConverter",
    ".html": "HtmlConverter",
    ".htm": "HtmlConverter",
    ".epub": "EpubConverter",
}


def _markitdown(data: bytes, suffix: str) -> Converted:
    try:
        from markitdown import MissingDependencyException, StreamInfo, converters
    except ImportError:
        raise _needs_docs(suffix) from None
    converter = getattr(converters, _CONVERTERS[suffix])()
    stream_info = StreamInfo(extension=suffix)
    try:
        result = _quietly(lambda: converter.convert(io.BytesIO(data), stream_info))
    except MissingDependencyException:
        raise _needs_docs(suffix) from None
    except Exception as exc:  # each format's library has its own errors for a bad file
        raise Unreadable(f"cannot convert {suffix} ({_one_line(exc)})") from None
    text: str = result.markdown
    marker = {".pptx": _SLIDE, ".xlsx": _SHEET}.get(suffix)
    pages = tuple(m.start() for m in marker.finditer(text)) if marker else None
    return Converted(text, pages or None)
