"""Methods, report and CLI pieces of the bench, without a server where none is needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from recursa.bench.cli import bench
from recursa.bench.methods import (
    METHODS,
    BaseMethod,
    CodeActBM25Method,
    MethodContext,
    cut_text,
    get_method,
    parse_action,
    split_text,
)
from recursa.bench.report import cells, table_markdown
from recursa.bench.runner import ResultRow
from recursa.bench.tasks import Item
from recursa.errors import ConfigError
from recursa.models.scripted import ScriptedModel
from recursa.testing import ScriptedServer
from tests.benchrun.script import reply
from tests.helpers import requires


def item(context: str | list[str], query: str = "What is X?") -> Item:
    return Item("t-2k-s0-0", "t", context, query, "x", 2_000, {})


def test_registry_names() -> None:
    assert list(METHODS) == ["base", "rlm", "rlm-nosub", "summary", "codeact-bm25"]
    assert get_method("rlm-nosub").name == "rlm-nosub"
    with pytest.raises(ConfigError, match="unknown benchmark method 'nope'; known methods: base"):
        get_method("nope")


def test_cut_text_says_where() -> None:
    assert cut_text("abcdef", 10) == "abcdef"
    assert cut_text("abcdef", 4) == "abcd\n[context cut at 4 of 6 characters]"


def test_split_text_prefers_line_then_sentence_ends() -> None:
    assert split_text("aaaa\nbbbb\ncccc", 10) == ["aaaa\nbbbb\n", "cccc"]
    assert split_text("One two. Three four five six.", 12) == [
        "One two. ",
        "Three four ",
        "five six.",
    ]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert "".join(split_text("word " * 1000, 333)) == "word " * 1000


def test_parse_action() -> None:
    assert parse_action("Let me look.\nSEARCH(magic number)") == ("search", "magic number")
    assert parse_action("SEARCH(a)\n**ANSWER:** 42 and 43") == ("answer", "42 and 43")
    assert parse_action("ANSWER: x\nSEARCH(more)") == ("search", "more")
    assert parse_action("no action") is None


async def test_base_cuts_the_context_to_the_window_with_a_note() -> None:
    model = ScriptedModel(["an answer"], context_window=2_000)
    result = await BaseMethod().run(item("line\n" * 5_000), MethodContext(model))
    assert result.answer == "an answer" and result.error is None
    assert result.usage.calls == 1 and result.usage.cost_usd == 0.0
    prompt = str(model.calls[0].messages[0]["content"])
    assert "[context cut at " in prompt and "of 25,000 characters]" in prompt
    assert prompt.rstrip().endswith("Question: What is X?")
    assert len(prompt) < 2_000 * 4


@requires("bm25s")
async def test_codeact_searches_and_answers_over_documents() -> None:
    docs = [f"Document {i}. Nothing to see here about weather." for i in range(30)]
    docs[17] = "Document 17. The secret code of the vault is 4242."
    replies = ["Searching.\nSEARCH(secret code vault)", "ANSWER: 4242"]
    model = ScriptedModel(replies)
    result = await CodeActBM25Method(top_k=2).run(item(docs), MethodContext(model))
    assert result.answer == "4242"
    assert result.usage.calls == 2
    tool_reply = str(model.calls[1].messages[-1]["content"])
    assert tool_reply.startswith("SEARCH(secret code vault): the ")
    assert "[passage 17]\nDocument 17. The secret code" in tool_reply


@requires("bm25s")
async def test_codeact_stops_after_its_steps() -> None:
    model = ScriptedModel(lambda messages: "Hmm, thinking.")
    result = await CodeActBM25Method(max_steps=2).run(item("some text"), MethodContext(model))
    assert result.usage.calls == 3  # two steps, then the forced last answer
    assert result.answer == "Hmm, thinking."


def row(method: str, task: str, length: int, score: float, cost: float | None) -> ResultRow:
    return ResultRow(task, length, f"{task}-x", 0, method, score, cost, 1, 1, 1, 0.1, None, None)


def test_table_cells_mean_cost_interval_and_unpriced() -> None:
    rows = [
        row("rlm", "sniah", 8_000, 1.0, 0.10),
        row("rlm", "sniah", 8_000, 0.5, 0.30),
        row("base", "sniah", 8_000, 0.0, None),
        row("base", "oolong", 32_000, 0.25, 0.002),
    ]
    table = cells(rows)
    rlm = table[(8_000, "sniah", "rlm", "")]
    assert rlm.cost_mean == pytest.approx(0.20)
    assert rlm.ci_method == "bootstrap" and rlm.ci_low <= 75.0 <= rlm.ci_high
    assert table[(8_000, "sniah", "base", "")].text() == "0.0 [0.0–79.3] 2 tok"
    text = table_markdown(rows, models={"model": "openai/gpt-5", "sub_model": None})
    assert "Models: model `openai/gpt-5`." in text
    assert "## 8k tokens (n = 1/2)" in text and "## 32k tokens (n = 1)" in text
    assert "| method | sniah | oolong |" in text
    assert "| base | 0.0 [0.0–79.3] 2 tok | – |" in text
    assert "| base | – | 25.0 [25.0–25.0] $0.0020 |" in text
    assert text.index("| base |") < text.index("| rlm |")  # the paper's order


def test_cli_rejects_unknown_tasks_and_methods(tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--model", "openai/x", "--out", str(tmp_path)]
    result = runner.invoke(bench, ["sniah,nope", *common])
    assert result.exit_code == 2
    assert "unknown benchmark task 'nope'" in result.stderr
    result = runner.invoke(bench, ["sniah", "--methods", "rlm,magic", *common])
    assert result.exit_code == 2
    assert "unknown benchmark method 'magic'" in result.stderr
    result = runner.invoke(bench, ["sniah", "--lengths", "8q", *common])
    assert result.exit_code == 2 and "not a length" in result.stderr
    result = runner.invoke(bench, ["sniah", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--model is required" in result.stderr
    result = runner.invoke(bench, common)
    assert result.exit_code == 2 and "give at least one task" in result.stderr
    # No key for the model: refused before anything runs, not recorded as failed rows.
    result = runner.invoke(bench, ["oolong", "--model", "openai/gpt-5", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no API key for openai/gpt-5" in result.stderr
    assert not (tmp_path / "results.jsonl").exists()


@requires("matplotlib")
def test_cli_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ScriptedServer(reply) as server:
        args = ["oolong", "--model", "openai/gpt-5-mini", "--base-url", server.url]
        args += ["--lengths", "2k", "--n", "1", "--methods", "base,rlm", "--out", str(out)]
        args += ["--sandbox", "inprocess", "--no-progress"]
        result = CliRunner().invoke(bench, args)
        assert result.exit_code == 0, result.output
        assert "| rlm | 100.0 [20.7–100.0] $" in result.stdout
        assert "ran 2 (failed 0), skipped 0" in result.stderr
        assert (out / "table.md").exists() and (out / "score_vs_length.png").exists()
        requests = len(server.requests)
        result = CliRunner().invoke(bench, args)
        assert result.exit_code == 0 and "ran 0 (failed 0), skipped 2" in result.stderr
        assert len(server.requests) == requests
    result = CliRunner().invoke(bench, ["--report-only", "--out", str(out)])
    assert result.exit_code == 0 and "| base | " in result.stdout
