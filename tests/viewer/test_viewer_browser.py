"""The viewer page in headless chromium: tree, node details, timeline, big traces, live runs.

Needs Playwright for Python and a chromium binary (Debian's /usr/bin/chromium, or
the path in RECURSA_CHROMIUM); Playwright's own browser download is not used.
Screenshots go to artifacts/ at the repository root.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recursa.viewer import TraceServer

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("RECURSA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
Start = Callable[[Path], tuple[TraceServer, str]]


@pytest.fixture(scope="module")
def expect() -> Any:
    return pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium, or RECURSA_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    yield page
    context.close()
    assert problems == []


def open_viewer(page: Any, url: str, timeout_s: float = 20) -> float:
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=timeout_s * 1000)
    page.wait_for_selector(".trow", timeout=timeout_s * 1000)
    return time.perf_counter() - start


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_depth2_tree_node_details_timeline(
    page: Any, tmp_path: Path, serve_path: Start, traces: Any
) -> None:
    path = traces.write_depth2(tmp_path / "depth2.jsonl", malformed=True)
    _, url = serve_path(path)
    open_viewer(page, url)

    # the malformed line is skipped, visibly
    banner = page.locator("#banner")
    assert banner.is_visible()
    assert "1 malformed line skipped" in banner.inner_text()
    assert "line 7" in banner.inner_text()

    # the tree: the root and its one child
    assert page.locator("#tree .trow").count() == 2
    assert page.locator("#tree-count").inner_text() == "2 nodes"
    assert "$0.0027" in page.locator(".trow[data-node=n0]").inner_text()
    shot(page, "viewer-root.png")

    # the child node: its code (highlighted), output and sub-call
    page.click(".trow[data-node=n1] .tquery")
    node = page.locator("#tab-node")
    assert node.locator(".node-title h2").inner_text() == "n1"
    code = node.locator(".cell .code").first.inner_text()
    assert 'flooded = [d for d in context if "flood" in d.lower()]' in code
    assert node.locator(".cell .tok-api", has_text="llm_query").count() == 1
    output = node.locator(".cell .pre.output").first.inner_text()
    assert output.startswith("Rotterdam: river flooding on 3 and 12 March.")
    assert "spawned by rlm_query c2 in n0" in node.locator(".spawned").inner_text()
    sub = node.locator("details.sub").first
    sub.locator("summary").click()
    assert "Summarise by city:" in sub.locator(".sub-body").inner_text()
    assert page.evaluate("location.hash") == "#node=n1"
    node.evaluate("el => { el.scrollTop = 0; }")
    shot(page, "viewer-depth2.png")

    # back to the root through the breadcrumb: two iterations, an error cell, a batch of 3
    page.click(".crumbs [data-goto=n0]")
    assert node.locator("section.iter").count() == 2
    assert "TypeError" in node.locator(".cell.has-error .pre.err").inner_text()
    assert node.locator(".batch details.sub").count() == 3

    # the timeline: the batch's three sub-calls overlap, so they sit in three lanes
    page.click(".tab[data-tab=timeline]")
    page.wait_for_selector(".tl-row .bar")
    lanes = page.evaluate(
        "[...document.querySelectorAll('.bar-llm[data-node=n0]')].map(b => b.parentNode.style.top)"
    )
    assert len(lanes) == 3 and len(set(lanes)) == 3
    assert page.locator(".bar-rlm[data-node=n0]").count() == 1
    shot(page, "viewer-timeline.png")

    # totals by model and by depth
    page.click(".tab[data-tab=totals]")
    tables = page.locator("table.usage")
    assert tables.nth(0).locator("tbody tr").count() == 2  # two models
    assert tables.nth(1).locator("tbody tr").count() == 3  # depths 0, 1, 2
    assert "$0.0027" in tables.nth(0).locator("tfoot").inner_text()
    shot(page, "viewer-totals.png")


def test_ten_thousand_events_render_quickly(
    page: Any, tmp_path: Path, serve_path: Start, traces: Any
) -> None:
    path = traces.write_big(tmp_path / "big.jsonl")
    n_events = len(path.read_text(encoding="utf-8").splitlines())
    assert n_events >= 10_000
    _, url = serve_path(path)
    elapsed = open_viewer(page, url)
    assert elapsed < 15, f"10k-event trace took {elapsed:.1f}s to render"
    assert f"{n_events:,}" in page.locator("#summary").inner_text()
    assert page.locator("#tree .trow").count() <= 202  # children are paged, not all drawn
    assert page.locator("#tree [data-morekids]").is_visible()
    # a child deep in the list is reachable, and details stay lazy
    start = time.perf_counter()
    page.click(".trow[data-node=n3] .tquery")
    page.wait_for_selector("#tab-node .node-title h2:text-is('n3')")
    assert time.perf_counter() - start < 5
    page.click(".trow[data-node=n0] .tquery")
    assert page.locator("#tab-node section.iter").count() == 20  # paged iterations
    shot(page, "viewer-big.png")
    start = time.perf_counter()
    page.click(".tab[data-tab=timeline]")
    page.wait_for_selector(".tl-row .bar")
    assert time.perf_counter() - start < 5
    assert page.locator(".tl-row").count() < 150  # rows are virtualised
    shot(page, "viewer-big-timeline.png")


def test_directory_picker_and_live_refresh(
    page: Any, expect: Any, tmp_path: Path, serve_path: Start, traces: Any
) -> None:
    events = traces.build_depth2().events
    lines = [json.dumps(e) + "\n" for e in events]
    live = tmp_path / "live.jsonl"
    live.write_text("".join(lines[:4]), encoding="utf-8")  # run_start, n0 start, turn, cell
    done = traces.write_big(tmp_path / "done.jsonl", n_events=400)
    os.utime(done, (1_700_000_000, 1_700_000_000))
    _, url = serve_path(tmp_path)
    open_viewer(page, url)
    picker = page.locator("#run-picker")
    assert picker.is_visible()
    assert picker.locator("option").count() == 2
    assert picker.input_value() == "live.jsonl"  # newest first
    assert page.locator(".summary-head .badge").inner_text() == "running"
    assert page.locator("#auto-refresh").is_checked()
    assert page.locator("#tree .trow").count() == 1

    # the run goes on: the next poll (or a refresh) shows the child node
    with live.open("a", encoding="utf-8") as fh:
        fh.write("".join(lines[4:12]))
    page.click("#refresh")
    expect(page.locator("#tree .trow")).to_have_count(2)
    with live.open("a", encoding="utf-8") as fh:
        fh.write("".join(lines[12:]))
    expect(page.locator(".summary-head .badge")).to_have_text("done", timeout=10_000)
    expect(page.locator("#auto-refresh")).not_to_be_checked()  # finished: polling stops

    picker.select_option("done.jsonl")
    expect(page.locator(".summary-query")).to_contain_text("Find every contract clause")
    assert "stopped: iterations" in page.locator(".summary-head").inner_text()
    assert "run=done.jsonl" in page.evaluate("location.hash")


def test_empty_directory_waits_for_a_run(
    page: Any, expect: Any, tmp_path: Path, serve_path: Start, traces: Any
) -> None:
    _, url = serve_path(tmp_path)
    page.goto(url)
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#tab-node")).to_contain_text("Waiting for a run to start")
    assert page.locator("#auto-refresh").is_checked()
    traces.write_depth2(tmp_path / "first.jsonl")
    expect(page.locator("#tree .trow")).to_have_count(2, timeout=10_000)
    expect(page.locator(".summary-head .badge")).to_have_text("done")


def test_python_highlighter_tokens(page: Any, depth2_trace: Path, serve_path: Start) -> None:
    _, url = serve_path(depth2_trace)
    open_viewer(page, url)
    code = (
        "@cache\n"
        "def f(x=0x1F, *a):  # note 'not a string'\n"
        '    s = f"{x!r}" + r\'\\d\' + """multi\n'
        'line""" + b"\\"q\\""\n'
        "    return FINAL(llm_query(s)) if x is not None else 1.5e-3j\n"
        "print('unclosed"
    )
    tokens = page.evaluate("(code) => window.recursaViewer.tokenizePython(code)", code)
    assert "".join(text for _, text in tokens) == code  # nothing lost or duplicated
    marked = {(cls, text) for cls, text in tokens if cls}
    assert {
        ("tok-deco", "@cache"),
        ("tok-kw", "def"),
        ("tok-fn", "f"),
        ("tok-num", "0x1F"),
        ("tok-com", "# note 'not a string'"),
        ("tok-str", 'f"{x!r}"'),
        ("tok-str", "r'\\d'"),
        ("tok-str", '"""multi\nline"""'),
        ("tok-str", 'b"\\"q\\""'),
        ("tok-api", "FINAL"),
        ("tok-api", "llm_query"),
        ("tok-const", "None"),
        ("tok-num", "1.5e-3j"),
        ("tok-bi", "print"),
        ("tok-str", "'unclosed"),
    } <= marked
    # names that merely contain keywords stay plain
    assert not {text for cls, text in tokens if cls == "tok-kw"} & {"x", "s", "a"}


def test_bench_directory_grid_filters_and_opens_traces(
    page: Any, expect: Any, bench_dir: Path, serve_path: Start
) -> None:
    rows = [json.loads(line) for line in (bench_dir / "results.jsonl").read_text().splitlines()]
    _, url = serve_path(bench_dir)
    page.goto(url)
    page.wait_for_selector("body[data-ready]")
    page.wait_for_selector("#bench-grid .bcell")
    assert page.locator("#bench").is_visible() and not page.locator(".layout").is_visible()
    assert page.locator("#banner").is_hidden()  # results.jsonl is not read as a trace
    grid = page.locator("#bench-grid")
    assert grid.locator("thead th.bmethod").all_inner_texts() == ["base", "rlm", "rlm-nosub"]
    assert grid.locator("tbody tr").count() == 3
    assert "model openai/gpt-5-mini" in page.locator("#bench-about").inner_text()
    assert "sniah haystack:" in page.locator("#bench-about").inner_text()
    for row in rows:  # each run in its place, with its score, gold and stop reason
        line = grid.locator(f"tbody tr[data-item='{row['item']}']")
        assert line.locator(".bgold").inner_text() == row["gold"]
        cell = line.locator(f".bcell[data-method='{row['method']}']")
        assert cell.locator(".bscore").inner_text() == f"{100 * row['score']:.0f}"
        assert "$" in cell.locator(".bcost").inner_text()  # gpt-5-mini is priced
        assert (cell.get_attribute("data-trace") is None) == (row["method"] == "base")
        if row["method"] == "rlm-nosub":
            assert "stopped: iterations" in cell.inner_text()
    shot(page, "viewer-bench.png")

    # filters: by method and by score
    page.select_option("#bench-method", "base")
    page.select_option("#bench-score", "stopped")
    expect(grid).to_contain_text("No runs match the filters.")
    page.select_option("#bench-method", "rlm")
    page.select_option("#bench-score", "right")
    expect(grid.locator("tbody tr")).to_have_count(3)
    assert grid.locator("thead th.bmethod").all_inner_texts() == ["rlm"]
    assert page.locator("#bench-count").inner_text().startswith("3 items · 3 of 9 runs")
    page.select_option("#bench-length", "2000")
    page.select_option("#bench-task", "sniah")
    expect(grid.locator("tbody tr")).to_have_count(3)

    # a cell opens its trace; the back button returns to the grid as it was
    cell = grid.locator(".bcell[data-method='rlm']").first
    name = cell.get_attribute("data-trace")
    cell.click()
    page.wait_for_selector("#tree .trow")
    assert page.locator("#bench").is_hidden() and page.locator("#bench-back").is_visible()
    assert f"run={name}" in page.evaluate("location.hash")
    assert "special magic" in page.locator("#summary").inner_text()
    assert page.locator("#run-picker").input_value() == name
    page.click("#bench-back")
    expect(page.locator("#bench")).to_be_visible()
    assert page.locator("#bench-method").input_value() == "rlm"
    assert page.evaluate("location.hash") == "#bench"

    # a link to one trace of the bench opens that trace straight away
    page.goto(f"{url}#run={name}")
    page.reload()
    page.wait_for_selector("#tree .trow")
    assert page.locator("#bench").is_hidden()


def test_tool_runs_show_in_the_sub_call_and_timeline_as_text(
    page: Any, expect: Any, tool_trace: Path, serve_path: Start
) -> None:
    from tests.viewer.conftest import SCRIPT_ARGUMENT

    uses = [
        json.loads(line)
        for line in tool_trace.read_text(encoding="utf-8").splitlines()
        if '"tool_use"' in line
    ]
    assert len(uses) == 2
    _, url = serve_path(tool_trace)
    open_viewer(page, url)
    node = page.locator("#tab-node")
    sub = node.locator("details.sub").first
    assert "2 tool runs" in sub.locator("summary").inner_text()
    assert "1 failed" in sub.locator("summary").inner_text()
    sub.locator("summary").click()
    runs = sub.locator(".tool-run")
    expect(runs).to_have_count(2)  # drawn when the details open: wait for them
    ok, failed = runs.nth(0), runs.nth(1)
    assert ok.locator(".tool-name").inner_text() == "gauge"
    assert "step 1" in ok.locator(".tool-head").inner_text()
    assert f"{round(uses[0]['duration_s'] * 1000)} ms" in ok.locator(".tool-head").inner_text()
    # the markup in the argument is shown as the text it is: no element made, nothing run
    assert ok.locator(".tool-args").inner_text() == uses[0]["arguments"]
    assert SCRIPT_ARGUMENT in ok.locator(".tool-args").inner_text()
    assert page.locator("#tab-node script, #tab-node img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert ok.locator(".pre.output").inner_text() == uses[0]["result"]
    assert failed.get_attribute("class") == "tool-run has-error"
    assert "no gauge in Atlantis" in failed.locator(".pre.err").inner_text()
    failed.scroll_into_view_if_needed()
    shot(page, "viewer-tool-runs.png")

    # the timeline: a bar per tool run, its tooltip the tool, arguments and outcome
    page.click(".tab[data-tab=timeline]")
    page.wait_for_selector(".tl-row .bar")
    bars = page.locator(".bar-tool")
    assert bars.count() == 2
    title = bars.nth(0).get_attribute("title") or ""
    assert "tool gauge" in title and "arguments:" in title and "result:" in title
    assert "tl-err" in (bars.nth(1).get_attribute("class") or "")
    assert page.evaluate("window.__pwned") is None
    shot(page, "viewer-tool-timeline.png")
    bars.nth(0).click()  # back to the node, at the sub-call's iteration
    assert page.locator("#tab-node .node-title h2").inner_text() == "n0"
