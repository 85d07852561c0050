"""The worker imports its modules from the host's own bytecode, not from source on every
start (it runs with ``-B``, so it could never cache its own)."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

import recursa.repl.process as process
from recursa import RLM
from recursa.models.scripted import ScriptedModel

PROBE = (
    "```repl\nimport sys\nFINAL(str(getattr(sys.modules['recursa_runtime'], 'MARK', None)))\n```"
)


def test_the_worker_runs_the_host_compiled_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bytecode that differs from the copied source: only a worker that loads it sees MARK
    marked = tmp_path / "runtime.py"
    marked.write_text((process._HERE / "runtime.py").read_text() + "\nMARK = 'bytecode'\n")
    pyc = tmp_path / "runtime.pyc"
    py_compile.compile(
        str(marked), cfile=str(pyc), doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )  # fmt: skip
    compiled = process._bytecode()
    monkeypatch.setattr(process, "_bytecode", lambda: {**compiled, "runtime.py": pyc.read_bytes()})
    answer = RLM(ScriptedModel([PROBE]), sandbox="subprocess").completion("q", "ctx").answer
    assert answer == "bytecode"


def test_without_bytecode_the_source_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_bytecode", lambda: {})
    answer = RLM(ScriptedModel([PROBE]), sandbox="subprocess").completion("q", "ctx").answer
    assert answer == "None"


def test_only_current_bytecode_of_this_interpreter_is_passed_on(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("X = 1\n")
    pyc = tmp_path / "mod.pyc"
    py_compile.compile(str(source), cfile=str(pyc), doraise=True)  # timestamp bytecode
    code = pyc.read_bytes()
    assert process._current(code, source.stat())
    source.write_text("X = 22\n")  # edited: another size
    assert not process._current(code, source.stat())
    assert not process._current(b"\0" * 4 + code[4:], source.stat())  # another magic


def test_the_host_bytecode_is_read_once_per_process() -> None:
    assert process._bytecode() is process._bytecode()
    assert set(process._bytecode()) <= {"runtime.py", "protocol.py"}
