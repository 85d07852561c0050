"""``recursa demo``: the generated document, the scorer, and one real run on the 0.5B model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from recursa.demo import CHARS_PER_TOKEN, is_correct, make_document, print_demo, run_demo
from recursa.models import local


def test_the_document_is_long_deterministic_and_holds_its_answer() -> None:
    doc = make_document(seed=3)
    assert doc == make_document(seed=3)
    assert make_document(seed=4).question != doc.question
    assert len(doc.text) >= 1_000_000 * CHARS_PER_TOKEN
    assert doc.text.count(doc.needle) == 1
    assert doc.text[doc.offset :].startswith(doc.needle)
    assert doc.expected in doc.needle
    assert doc.expected.lower() not in doc.question.lower()


def test_document_size_follows_tokens() -> None:
    doc = make_document(seed=1, tokens=20_000)
    assert 80_000 <= len(doc.text) < 83_000
    assert doc.approx_tokens >= 20_000


@pytest.mark.parametrize(
    ("answer", "expected", "ok"),
    [
        ("Jasmine oolong tea.", "jasmine oolong", True),
        ("It leaves from pier 42", "42", True),
        ("pier 420", "42", False),
        ("the loose floorboard", "loose floorboard", True),
        ("", "teal", False),
    ],
)
def test_scoring_is_lenient_about_case_and_punctuation(
    answer: str, expected: str, ok: bool
) -> None:
    assert is_correct(answer, expected) is ok


@pytest.mark.local_model
@pytest.mark.slow  # about 17 s: the whole demo on the embedded model
def test_the_demo_answers_on_the_embedded_model(qwen: local.LocalModel, tmp_path: Path) -> None:
    trace = tmp_path / "demo.jsonl"
    result = run_demo(seed=0, model=qwen, trace=trace)
    assert result.correct, result
    assert result.context_tokens >= 1_000_000
    assert result.calls >= 2 and result.input_tokens > 0
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"
    out = io.StringIO()
    print_demo(result, out)
    text = out.getvalue()
    assert "correct" in text and f"recursa view {trace}" in text
