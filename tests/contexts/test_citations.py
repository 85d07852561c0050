"""Citations into a files context, checked on the host: the file they are in, and the
page of a PDF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recursa.citations import verify
from recursa.context import Context
from recursa.repl.protocol import CitationRef
from tests.sources.pdfgen import write_pdf


def test_a_quote_is_found_in_its_file(folder: Path) -> None:
    ctx = Context(folder)
    (found,) = verify(ctx, [CitationRef(quote="VAULT code")])
    assert (found.verified, found.source, found.page) == (True, "a/b.txt", None)
    assert found.quote == "vault code" and found.start == 4
    (span,) = verify(ctx, [CitationRef(item="a/c.md", start=10, end=15)])
    assert span.verified and span.quote == "naïve"


def test_an_unknown_file_or_a_bare_span_is_unverified(folder: Path) -> None:
    ctx = Context(folder)
    missing, bare = verify(
        ctx, [CitationRef(quote="x", item="nope.txt"), CitationRef(start=0, end=3)]
    )
    assert not missing.verified and missing.reason == "the context has no file 'nope.txt'"
    assert not bare.verified and bare.reason == "the context is files: cite (name, start, end)"


def test_a_quote_in_a_pdf_gets_its_page(folder: Path) -> None:
    pytest.importorskip("pypdf")
    write_pdf(folder / "paper.pdf", [["alpha on one"], ["beta on two"], ["gamma on three"]])
    ctx = Context(folder)
    (cited,) = verify(ctx, [CitationRef(quote="gamma on three")])
    assert (cited.verified, cited.source, cited.page) == (True, "paper.pdf", 3)


def test_one_json_file_is_its_value(tmp_path: Path) -> None:
    path = tmp_path / "docs.json"
    path.write_text(json.dumps({"a.txt": "alpha", "b.txt": "the beta file"}), encoding="utf-8")
    ctx = Context(path)
    assert ctx.info.kind == "dict" and ctx.info.keys == ("a.txt", "b.txt")
    (cited,) = verify(ctx, [CitationRef(quote="BETA file", item="b.txt")])
    assert cited.verified and cited.source == "b.txt"
