"""convert on real documents made here: PDF pages exact, DOCX/PPTX/XLSX/HTML/EPUB
through markitdown, broken files unreadable, a missing extra named, and the cache."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import pytest

from recursa.errors import ContextError
from recursa.sources import Converted, Unreadable, convert
from recursa.sources.convert_cache import ConversionCache, cache_key

from .docgen import write_docx, write_epub
from .pdfgen import write_pdf

PAGES = [
    ["Page one: the (first) page.", "It has two lines."],
    ["Page two \\ with a backslash."],
    ["Page three, the last."],
]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def pypdf() -> object:
    return pytest.importorskip("pypdf")


@pytest.fixture
def markitdown() -> object:
    return pytest.importorskip("markitdown")


def page_texts(converted: Converted) -> list[str]:
    assert converted.pages is not None
    ends = [*converted.pages[1:], len(converted.text)]
    return [converted.text[a:b] for a, b in zip(converted.pages, ends, strict=True)]


def test_a_pdf_gives_its_text_page_by_page(tmp_path: Path, cache_dir: Path, pypdf: object) -> None:
    path = write_pdf(tmp_path / "report.pdf", PAGES)
    converted = convert(path, cache_dir=cache_dir)
    assert len(converted.pages or ()) == 3
    for text, lines in zip(page_texts(converted), PAGES, strict=True):
        assert text.split() == " ".join(lines).split()


def test_a_broken_pdf_is_unreadable(tmp_path: Path, cache_dir: Path, pypdf: object) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not a PDF body at all\n")
    with pytest.raises(Unreadable, match=r"^cannot parse PDF \("):
        convert(path, cache_dir=cache_dir)
    assert not list(cache_dir.glob("*.json"))  # failures are not cached


def test_a_docx_becomes_its_paragraphs(tmp_path: Path, cache_dir: Path, markitdown: object) -> None:
    path = write_docx(tmp_path / "memo.docx", ["First paragraph & more.", "Second paragraph."])
    converted = convert(path, cache_dir=cache_dir)
    assert converted.text.split("\n\n") == ["First paragraph & more.", "Second paragraph."]
    assert converted.pages is None


def test_a_pptx_has_one_page_per_slide(tmp_path: Path, cache_dir: Path, markitdown: object) -> None:
    pptx = pytest.importorskip("pptx")
    deck = pptx.Presentation()
    for title in ("Quarterly results", "Next steps", "Questions"):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = f"notes about {title.lower()}"
    path = tmp_path / "deck.pptx"
    deck.save(path)
    slides = page_texts(convert(path, cache_dir=cache_dir))
    assert len(slides) == 3
    for number, (slide, title) in enumerate(
        zip(slides, ("Quarterly results", "Next steps", "Questions"), strict=True), 1
    ):
        assert slide.startswith(f"<!-- Slide number: {number} -->")
        assert f"# {title}" in slide and f"notes about {title.lower()}" in slide


def test_an_xlsx_has_one_page_per_sheet(
    tmp_path: Path, cache_dir: Path, markitdown: object
) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.title = "Sales"
    book.active.append(["region", "total"])
    book.active.append(["north", 120])
    costs = book.create_sheet("Costs")
    costs.append(["item", "amount"])
    costs.append(["rent", 40])
    path = tmp_path / "book.xlsx"
    book.save(path)
    sheets = page_texts(convert(path, cache_dir=cache_dir))
    assert [s.splitlines()[0] for s in sheets] == ["## Sales", "## Costs"]
    assert "| north | 120 |" in sheets[0] and "| rent | 40 |" in sheets[1]


@pytest.mark.parametrize("suffix", [".html", ".htm"])
def test_html_becomes_markdown(
    tmp_path: Path, cache_dir: Path, markitdown: object, suffix: str
) -> None:
    path = tmp_path / f"page{suffix}"
    path.write_text(
        "<html><head><script>var hidden = 1;</script></head><body><h1>Title</h1>"
        "<p>Some <b>bold</b> text.</p><ul><li>one</li><li>two</li></ul></body></html>",
        encoding="utf-8",
    )
    text = convert(path, cache_dir=cache_dir).text
    assert "# Title" in text and "**bold**" in text and "hidden" not in text
    assert [line for line in text.splitlines() if line.startswith("* ")] == ["* one", "* two"]


def test_an_epub_gives_its_chapters_in_order(
    tmp_path: Path, cache_dir: Path, markitdown: object
) -> None:
    path = write_epub(
        tmp_path / "book.epub",
        "A Book",
        [("Chapter One", "It begins."), ("Chapter Two", "It ends.")],
    )
    text = convert(path, cache_dir=cache_dir).text
    assert "A Book" in text
    assert (
        text.index("# Chapter One")
        < text.index("It begins.")
        < text.index("# Chapter Two")
        < text.index("It ends.")
    )


def test_a_broken_docx_is_unreadable(tmp_path: Path, cache_dir: Path, markitdown: object) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Unreadable, match=r"^cannot convert \.docx \("):
        convert(path, cache_dir=cache_dir)


def test_a_second_conversion_of_the_same_bytes_is_read_from_the_cache(
    tmp_path: Path, cache_dir: Path, pypdf: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = convert(write_pdf(tmp_path / "a.pdf", PAGES), cache_dir=cache_dir)
    entries = list(cache_dir.glob("*.json"))
    assert len(entries) == 1 and not list(cache_dir.glob(".tmp-*"))
    assert json.loads(entries[0].read_text(encoding="utf-8")) == {
        "text": first.text,
        "pages": list(first.pages or ()),
    }

    def no_more_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the converter ran again")

    monkeypatch.setattr("pypdf.PdfReader", no_more_parsing)
    copy = tmp_path / "elsewhere" / "renamed.pdf"  # the key is the bytes, not the name
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "a.pdf").read_bytes())
    assert convert(copy, cache_dir=cache_dir) == first
    write_pdf(tmp_path / "a.pdf", [*PAGES, ["one page more"]])  # other bytes: converted
    with pytest.raises(Unreadable, match="the converter ran again"):
        convert(tmp_path / "a.pdf", cache_dir=cache_dir)


def test_a_damaged_cache_entry_is_converted_again(
    tmp_path: Path, cache_dir: Path, pypdf: object
) -> None:
    path = write_pdf(tmp_path / "a.pdf", PAGES)
    first = convert(path, cache_dir=cache_dir)
    (entry,) = cache_dir.glob("*.json")
    entry.write_text('{"text": 12', encoding="utf-8")
    assert convert(path, cache_dir=cache_dir) == first
    assert json.loads(entry.read_text(encoding="utf-8"))["text"] == first.text


def test_the_cache_key_covers_the_converter_version() -> None:
    assert cache_key(b"same bytes", "pypdf 5.0") != cache_key(b"same bytes", "pypdf 5.1")
    assert cache_key(b"same bytes", "pypdf 5.0") == cache_key(b"same bytes", "pypdf 5.0")


def test_an_unwritable_cache_only_costs_time(tmp_path: Path, pypdf: object) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made here")
    path = write_pdf(tmp_path / "a.pdf", PAGES)
    assert convert(path, cache_dir=blocker / "cache").pages is not None
    assert ConversionCache(blocker / "cache").load("anything") is None


def test_the_default_cache_is_in_the_user_cache_dir(
    tmp_path: Path, pypdf: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    convert(write_pdf(tmp_path / "a.pdf", PAGES))
    assert len(list((tmp_path / "xdg" / "recursa" / "converted").glob("*.json"))) == 1


def test_a_missing_library_names_the_docs_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_pdf(tmp_path / "a.pdf", PAGES)
    hint = r'^reading \.pdf files needs the docs extra: pip install "recursa\[docs\]"$'

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    with monkeypatch.context() as patch:
        patch.setattr(metadata, "version", not_installed)
        with pytest.raises(ContextError, match=hint):
            convert(path, cache_dir=tmp_path / "cache")
    monkeypatch.setitem(
        sys.modules, "pypdf", None
    )  # installed per its metadata, yet not importable
    with pytest.raises(ContextError, match=hint):
        convert(path, cache_dir=tmp_path / "cache")


def test_a_file_that_is_not_a_document_is_the_callers_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("text")
    with pytest.raises(
        ContextError, match=r"notes\.txt: not a document format \(\.docx .*\.xlsx\)$"
    ):
        convert(path)


def test_an_unreadable_document_file_is_unreadable(tmp_path: Path, pypdf: object) -> None:
    with pytest.raises(Unreadable, match=r"^file vanished$"):
        convert(tmp_path / "missing.pdf", cache_dir=tmp_path / "cache")
