"""Bad input: one clear line on stderr, exit 2, no traceback, nothing run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def cli(
    args: list[str], env: dict[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "recursa", *args],
        capture_output=True,
        env=env,
        input=stdin,
        timeout=60,
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {
        "empty": tmp_path / "empty.txt",
        "blank": tmp_path / "blank.txt",
        "binary": tmp_path / "data.bin",
        "latin1": tmp_path / "latin1.txt",
        "good": tmp_path / "good.txt",
    }
    made["empty"].write_bytes(b"")
    made["blank"].write_bytes(b"  \n\n ")
    made["binary"].write_bytes(b"\x7fELF\x02\x01\x00\x00" + bytes(range(256)))
    made["latin1"].write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    made["good"].write_text("hello")
    return made


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "q", "-c", "{missing}"], "no such file"),
        (["run", "q", "-c", "{dir}/*.nothing"], "no file matches this pattern"),
        (["run", "q", "-c", "{empty}"], "the file is empty"),
        (["run", "q", "-c", "{blank}"], "the file is empty"),
        (["run", "q", "-c", "{binary}"], "looks binary"),
        (["run", "q", "-c", "{latin1}"], "not valid UTF-8"),
        (["run", "  ", "-c", "{good}"], "the query is empty"),
        (["run", "q", "-c", "{good}", "--model", "nosuch/model"], "unknown model provider"),
        (["run", "q", "-c", "{good}", "--model", "openai/gpt-5-mini"], "no API key"),
        (["run", "q", "-c", "{good}", "--budget-usd", "0"], "must be positive"),
        (["run", "q", "-c", "{good}", "--max-iterations", "0"], "0"),
        (["run", "q", "-c", "{good}", "--sandbox", "vm"], "vm"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, files: dict[str, Path], tmp_path: Path, clean_env: dict[str, str]
) -> None:
    names = {k: str(v) for k, v in files.items()} | {
        "missing": str(tmp_path / "nope.txt"),
        "dir": str(tmp_path),
    }
    proc = cli([a.format(**names) for a in args], clean_env)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert message in stderr
    assert "Traceback" not in stderr
    assert proc.stdout == b""


def test_binary_stdin_is_refused(clean_env: dict[str, str]) -> None:
    proc = cli(
        ["run", "q", "-c", "-", "--model", "openai/x", "--base-url", "http://127.0.0.1:9/v1"],
        clean_env,
        stdin=b"\xff\xfe\x00bad",
    )
    assert proc.returncode == 2
    assert b"not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr
