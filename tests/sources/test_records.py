"""read_records on real JSON and JSON Lines files: values kept, bad lines named."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from recursa.sources import Unreadable, iter_text, read_records

ROWS = [{"id": i, "text": f"row {i} — ünïcode", "tags": ["a", "b"][: i % 3]} for i in range(50)]


def jsonl(rows: Sequence[object]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".JSONL"])
def test_json_lines_give_one_record_per_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"rows{suffix}"
    path.write_text(jsonl(ROWS), encoding="utf-8")
    assert read_records(path) == ROWS


def test_blank_lines_are_skipped_and_a_last_line_needs_no_newline(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('\n{"a": 1}\n\n   \n[2, 3]\r\n"four"', encoding="utf-8")
    assert read_records(path) == [{"a": 1}, [2, 3], "four"]


def test_lines_longer_than_a_block_are_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "recursa.sources.records.iter_text",
        lambda p, encoding: iter_text(p, encoding=encoding, block=7),
    )
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl(ROWS), encoding="utf-8")
    assert read_records(path) == ROWS


def test_a_bad_line_is_named_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2}\n{"c": \n{"d": 4}\n', encoding="utf-8")
    with pytest.raises(Unreadable, match=r"^line 4: not valid JSON \(Expecting value, column 7\)$"):
        read_records(path)


def test_compressed_json_lines_in_another_encoding(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl(ROWS[:3]).replace("—", "-").encode("latin-1")))
    expected = json.loads(json.dumps(ROWS[:3]).replace("\\u2014", "-"))
    assert read_records(path, encoding="latin-1") == expected


@pytest.mark.parametrize("value", [ROWS, {"title": "doc", "rows": ROWS}])
def test_a_json_file_gives_its_array_or_object(tmp_path: Path, value: object) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
    assert read_records(path) == value


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('{\n  "a": 1,\n  "b": oops\n}\n', encoding="utf-8")
    with pytest.raises(Unreadable, match=r"^not valid JSON at line 3, column 8: Expecting value$"):
        read_records(path)


def test_a_json_scalar_is_not_a_context(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('"just a string"', encoding="utf-8")
    with pytest.raises(Unreadable, match="must hold an array or an object, not a string"):
        read_records(path)
