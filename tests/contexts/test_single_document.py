"""One PDF given alone is a str context that keeps its pages: citations into it get
their page, the prompt lists where each page starts; through the API and the real CLI
against a real local OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from recursa.citations import verify
from recursa.context import Context
from recursa.prompts import describe_context
from recursa.prompts_compact import compact_system_prompt
from recursa.repl.protocol import CitationRef
from recursa.testing import ScriptedServer, http_router
from tests.helpers import run_cli
from tests.sources.pdfgen import write_pdf

PAGES = [["alpha on one"], ["beta on two", "more of two"], ["gamma on three"]]


@pytest.fixture
def paper(tmp_path: Path) -> Path:
    pytest.importorskip("pypdf")
    path = tmp_path / "paper.pdf"
    write_pdf(path, PAGES)
    return path


@pytest.mark.parametrize("make", [Context, lambda p: Context.from_paths(str(p))])
def test_a_pdf_alone_is_a_str_that_keeps_its_page_starts(
    paper: Path, make: Callable[[Path], Context]
) -> None:
    ctx = make(paper)
    text = ctx.value()
    assert ctx.info.kind == "str" and isinstance(text, str)
    starts = ctx.page_starts("paper.pdf")
    assert starts is not None and starts == ctx.info.pages and len(starts) == 3
    ends = [*starts[1:], len(text)]
    pages = [text[start:end].strip() for start, end in zip(starts, ends, strict=True)]
    assert pages == ["alpha on one", "beta on two\nmore of two", "gamma on three"]


def test_a_citation_into_a_pdf_alone_gets_its_page(paper: Path) -> None:
    ctx = Context(paper)
    start = ctx.info.pages[1] + 3
    quoted, spanned = verify(
        ctx, [CitationRef(quote="GAMMA on three"), CitationRef(start=start, end=start + 5)]
    )
    assert (quoted.verified, quoted.source, quoted.page) == (True, "context", 3)
    assert (spanned.verified, spanned.page) == (True, 2)


def test_a_text_file_alone_has_no_pages(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("plain words here\n", encoding="utf-8")
    ctx = Context(path)
    (cited,) = verify(ctx, [CitationRef(quote="words")])
    assert cited.verified and cited.page is None
    assert ctx.info.pages == () and ctx.page_starts("notes.txt") is None
    assert "pages" not in describe_context(ctx.info)


def test_both_prompts_say_how_many_pages_and_where_each_starts(paper: Path) -> None:
    info = Context(paper).info
    listed = f"starts = [{', '.join(map(str, info.pages))}]"
    assert "one document of 3 pages" in describe_context(info)
    assert listed in describe_context(info)
    compact = compact_system_prompt(info, subcalls=True, max_depth=1)
    assert "one document of 3 pages" in compact and listed in compact


def test_the_cli_cites_a_page_of_a_pdf_given_alone(
    paper: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    code = '```repl\nFINAL("two", cite=["beta on two"])\n```'
    with ScriptedServer(http_router([code])) as server:
        proc = run_cli(
            ["run", "q", "-c", str(paper), "--model", "openai/s", "--base-url", server.url,
             "--sandbox", "subprocess", "--no-progress", "--json"],
            clean_env,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (citation,) = json.loads(proc.stdout)["citations"]
    assert (citation["verified"], citation["page"]) == (True, 2)
    system = server.requests[0]["messages"][0]["content"]
    assert "one document of 3 pages" in system
