"""``recursa run -c`` with folders, globs, several files and piped input, through the real
CLI against a real local OpenAI-compatible server whose scripted code reads the files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recursa.testing import ScriptedServer, http_router
from tests.helpers import run_cli
from tests.sources.pdfgen import write_pdf

READ = """```repl
FINAL(" | ".join([str(len(context)), context["a/b.txt"].strip(), ",".join(context)]))
```"""
TEXT = """```repl
FINAL(type(context).__name__ + ":" + context.strip())
```"""


def run(server: ScriptedServer, env: dict[str, str], *args: str, stdin: str | None = None,
        sandbox: str = "inprocess") -> subprocess.CompletedProcess[str]:  # fmt: skip
    return run_cli(
        ["run", "q", *args, "--model", "openai/s", "--base-url", server.url,
         "--sandbox", sandbox, "--no-progress"],
        env, stdin=stdin,
    )  # fmt: skip


def test_a_folder_is_read_by_name_in_a_subprocess_sandbox(
    folder: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    trace = tmp_path / "run.jsonl"
    with ScriptedServer(http_router([READ])) as server:
        proc = run(server, clean_env, "-c", str(folder), "--trace", str(trace),
                   sandbox="subprocess")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4 | the vault code is 4471 | a/b.txt,a/c.md,notes.txt,z.log.gz"
    start = json.loads(trace.read_text(encoding="utf-8").splitlines()[0])
    assert start["context"] == {"type": "files", "chars": start["context"]["chars"], "items": 4}
    system = server.requests[0]["messages"][0]["content"]
    assert "mapping of 4 files" in system and "'a/b.txt'" in system
    assert "vault" not in system  # the model is told the names, never the text


def test_context_repeats_and_a_glob_expands(folder: Path, clean_env: dict[str, str]) -> None:
    code = '```repl\nFINAL(",".join(n.rsplit("/", 1)[-1] for n in context))\n```'
    with ScriptedServer(http_router([code])) as server:
        proc = run(server, clean_env, "-c", str(folder / "notes.txt"),
                   "-c", str(folder / "a" / "*.md"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "notes.txt,c.md"  # in the order given


def test_piped_input_without_context_is_the_text(clean_env: dict[str, str]) -> None:
    with ScriptedServer(http_router([TEXT])) as server:
        proc = run(server, clean_env, stdin="piped log line\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "str:piped log line"


def test_no_context_at_all_is_a_usage_error(clean_env: dict[str, str]) -> None:
    with ScriptedServer(http_router([TEXT])) as server:
        proc = run(server, clean_env, stdin="")
        assert server.requests == []
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("recursa: error: missing --context")


def test_a_skipped_binary_is_reported_and_counted(
    folder: Path, binary: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    trace = tmp_path / "run.jsonl"
    with ScriptedServer(http_router([READ])) as server:
        proc = run(server, clean_env, "-c", str(folder), "--json", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "recursa: skipped blob.bin: binary (NUL byte)" in lines
    assert "recursa: 1 file skipped, 4 read" in lines
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["skipped"] == [{"name": "blob.bin", "reason": "binary (NUL byte)"}]
    start = json.loads(trace.read_text(encoding="utf-8").splitlines()[0])
    assert start["context"]["skipped"] == 1 and start["context"]["items"] == 4


def test_many_skipped_files_are_named_up_to_20_then_counted_by_reason(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    for i in range(25):
        (root / f"link{i:02}").symlink_to(root / f"gone{i}")
    for i in range(10):
        (root / f"bin{i}.pyc").write_bytes(b"\x00compiled")
    (root / "readme.txt").write_text("the one text file", encoding="utf-8")
    trace = tmp_path / "run.jsonl"
    code = '```repl\nFINAL(",".join(context))\n```'
    with ScriptedServer(http_router([code])) as server:
        proc = run(server, clean_env, "-c", str(root), "--json", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "skipped" in line.split("/")[0]]
    named = [f"recursa: skipped link{i:02}: broken symbolic link" for i in range(20)]
    assert lines == [
        *named,
        "recursa: ... and 10 more skipped: binary (NUL byte)",
        "recursa: ... and 5 more skipped: broken symbolic link",
        "recursa: 35 files skipped, 1 read",
    ]
    assert len(json.loads(proc.stdout)["skipped"]) == 35
    start = json.loads(trace.read_text(encoding="utf-8").splitlines()[0])
    assert start["context"]["skipped"] == 35


@pytest.mark.parametrize("kind", ["binaries only", "missing path", "empty glob"])
def test_nothing_to_read_exits_2_with_one_line_before_any_model_call(
    tmp_path: Path, clean_env: dict[str, str], kind: str
) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00" * 8)
    target = {"binaries only": tmp_path, "missing path": tmp_path / "nope",
              "empty glob": tmp_path / "*.txt"}[kind]  # fmt: skip
    with ScriptedServer(http_router([TEXT])) as server:
        proc = run(server, clean_env, "-c", str(target))
        assert server.requests == []
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("recursa: error:")]
    assert len(errors) == 1, proc.stderr


def test_pdf_pages_are_readable_by_page(tmp_path: Path, clean_env: dict[str, str]) -> None:
    pytest.importorskip("pypdf")
    root = tmp_path / "papers"
    root.mkdir()
    write_pdf(root / "paper.pdf", [["first page words"], ["second page words"]])
    (root / "readme.txt").write_text("a note", encoding="utf-8")
    code = '```repl\nFINAL(" / ".join(p.strip() for p in context.pages("paper.pdf")))\n```'
    with ScriptedServer(http_router([code])) as server:
        proc = run(server, clean_env, "-c", str(root), sandbox="subprocess")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "first page words / second page words"


def test_chat_takes_a_folder(folder: Path, clean_env: dict[str, str]) -> None:
    code = '```repl\nFINAL(context["a/b.txt"].strip())\n```'
    with ScriptedServer(http_router([code])) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "recursa", "chat", "-c", str(folder), "--model", "openai/s",
             "--base-url", server.url, "--sandbox", "inprocess"],
            input="what is the code?\n", capture_output=True, text=True, env=clean_env,
            timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "the vault code is 4471" in proc.stdout
