"""The viewer in headless chromium shows a real run's citations under its answer: each
quote highlighted, where it is, verified or not (with the reason), a verified one in the
context's text around it (``before``/``after``), and a trace from before those fields
still renders."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM
from recursa.testing import ScriptedServer, http_router
from recursa.viewer import make_server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("RECURSA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update"]  # fmt: skip


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        yield page
        browser.close()
        assert problems == []


def test_the_viewer_highlights_citations(page: Any, tmp_path: Path) -> None:
    reply = "```repl\nFINAL('db-7', cite=['failed on host db-7', '<b>forged</b>'])\n```"
    trace = tmp_path / "run.jsonl"
    with ScriptedServer(http_router([reply])) as server:
        RLM("openai/s", base_url=server.url, sandbox="inprocess", trace=trace).completion(
            "q", "Log: the backup failed on host db-7.\n"
        )
    viewer, url = make_server(trace, 0)
    thread = threading.Thread(target=viewer.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready]", timeout=20_000)
        page.wait_for_selector(".summary-citations .citation", timeout=20_000)
        items = page.locator(".summary-citations .citation")
        assert items.count() == 2
        first, second = items.nth(0), items.nth(1)
        assert "verified" in (first.get_attribute("class") or "").split()
        assert first.locator("mark.cite-quote").inner_text() == "failed on host db-7"
        assert "context 16–35" in first.locator(".cite-where").inner_text()
        assert "unverified" in (second.get_attribute("class") or "").split()
        # the model's text is shown as text, never parsed as HTML
        assert second.locator("mark.cite-quote").inner_text() == "<b>forged</b>"
        assert second.locator("b").count() == 0
        assert "not found in the context" in second.locator(".cite-status").inner_text()
        # the root node's details list the same citations
        assert page.locator(".node-citations .citation").count() == 2
    finally:
        viewer.shutdown()
        viewer.server_close()
        thread.join(timeout=5)


def serve_trace(trace: Path) -> tuple[Any, str, threading.Thread]:
    viewer, url = make_server(trace, 0)
    thread = threading.Thread(target=viewer.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return viewer, url, thread


def test_the_viewer_shows_a_quote_in_its_surrounding_text(page: Any, tmp_path: Path) -> None:
    context = "intro line.\n" * 30 + "The backup failed on host db-7 at 02:00." + " tail" * 60
    reply = "```repl\nFINAL('db-7', cite=['failed on host db-7', 'intro line'])\n```"
    trace = tmp_path / "run.jsonl"
    with ScriptedServer(http_router([reply])) as server:
        result = RLM("openai/s", base_url=server.url, sandbox="inprocess", trace=trace).completion(
            "q", context
        )
    cited = result.citations[0]
    assert cited.before is not None and cited.after is not None
    assert len(cited.before) == len(cited.after) == 160  # cut on both sides
    # an older trace: the same run with its citations' before/after taken out
    old = tmp_path / "old.jsonl"
    lines = []
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        for c in event.get("citations") or ():
            c.pop("before"), c.pop("after")
        lines.append(json.dumps(event))
    old.write_text("\n".join(lines) + "\n")

    viewer, url, thread = serve_trace(trace)
    try:
        page.goto(url)
        page.wait_for_selector(".summary-citations .citation .cite-context", timeout=20_000)
        first, second = page.locator(".summary-citations .citation").all()
        inline = first.locator(".cite-context")
        assert inline.locator("mark.cite-quote").inner_text() == "failed on host db-7"
        before = inline.locator(".cite-before").inner_text()
        after = inline.locator(".cite-after").inner_text()
        flat = " ".join(cited.before.split())
        assert before.startswith("…") and " ".join(before[1:].split()) == flat
        assert after.endswith("…") and after[:-1].startswith(" at 02:00. tail tail")
        whole = "…" + cited.before + cited.quote + cited.after + "…"
        assert inline.inner_text().split() == whole.split()  # in order, one line
        # the first line of the context: nothing cut before it, so no ellipsis there
        assert second.locator(".cite-before").inner_text() == ""
        assert page.locator(".node-citations .cite-context").count() == 2
    finally:
        viewer.shutdown()
        viewer.server_close()
        thread.join(timeout=5)

    viewer, url, thread = serve_trace(old)
    try:
        page.goto(url)
        page.wait_for_selector(".summary-citations .citation", timeout=20_000)
        items = page.locator(".summary-citations .citation")
        assert items.count() == 2 and page.locator(".cite-context").count() == 0
        assert items.nth(0).locator("mark.cite-quote").inner_text() == "failed on host db-7"
    finally:
        viewer.shutdown()
        viewer.server_close()
        thread.join(timeout=5)
