"""The cache key names the endpoint; hits report cost as misses do; ``recursa cache``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM
from recursa.models.base import Completion
from recursa.models.cache import (
    KEY_VERSION_NUMBER,
    CachedModel,
    ResponseCache,
    cache_identity,
    cache_key,
)
from recursa.models.openai import OpenAIModel
from recursa.models.registry import ModelOptions
from recursa.models.scripted import ScriptedModel
from recursa.testing import ScriptedServer
from tests.helpers import run_cli

SANDBOX = "inprocess"
MESSAGES: Any = [{"role": "user", "content": "hi"}]


def answering(text: str) -> Any:
    return lambda body: f"```repl\nFINAL({text!r})\n```"


@pytest.fixture
def servers() -> Iterator[tuple[ScriptedServer, ScriptedServer]]:
    with ScriptedServer(answering("from A")) as a, ScriptedServer(answering("from B")) as b:
        yield a, b


def test_same_model_name_on_two_servers_is_two_keys(
    servers: tuple[ScriptedServer, ScriptedServer], tmp_path: Path
) -> None:
    a, b = servers
    path = tmp_path / "c.sqlite"

    def ask(server: ScriptedServer) -> str:
        rlm = RLM("openai/gpt-5-mini", base_url=server.url, sandbox=SANDBOX, cache=path)
        return rlm.completion("q", "ctx").answer

    assert ask(a) == "from A"
    assert ask(b) == "from B"  # not A's cached reply
    assert (len(a.requests), len(b.requests)) == (1, 1)
    assert (ask(a), ask(b)) == ("from A", "from B")  # now both are hits
    assert (len(a.requests), len(b.requests)) == (1, 1)
    with ResponseCache(path) as cache:
        stats = cache.stats()
        assert (stats.entries, stats.hits) == (2, 2)
        with sqlite3.connect(path) as db:
            endpoints = {r[0] for r in db.execute("SELECT endpoint FROM responses")}
        db.close()
        assert endpoints == {a.url.rstrip("/"), b.url.rstrip("/")}


def test_identity_names_provider_model_and_endpoint() -> None:
    one = OpenAIModel("m", options=ModelOptions(base_url="http://127.0.0.1:1/v1/"))
    two = OpenAIModel("m", options=ModelOptions(base_url="http://127.0.0.1:2/v1"))
    assert cache_identity(one) == {
        "provider": "openai",
        "model": "m",
        "base_url": "http://127.0.0.1:1/v1",
    }
    assert cache_identity(two)["base_url"] == "http://127.0.0.1:2/v1"
    keys = {cache_key(m.spec, MESSAGES, identity=cache_identity(m)) for m in (one, two)} | {
        cache_key(one.spec, MESSAGES)
    }
    assert len(keys) == 3
    # A wrapper is seen through; a model with no identity is keyed by its spec.
    with ResponseCache(":memory:") as cache:
        assert cache_identity(CachedModel(one, cache)) == cache_identity(one)

    class Bare:
        spec = "custom/x"
        context_window = None

        async def complete(self, messages: Any, **kw: Any) -> Completion:
            return Completion("t", self.spec)

    assert cache_identity(Bare()) == {"spec": "custom/x"}
    assert cache_identity(ScriptedModel(["x"]))["provider"] == "scripted"


async def test_old_key_version_entries_are_never_served(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    model = ScriptedModel(["fresh"] * 3)
    with ResponseCache(path) as cache:
        wrapped = CachedModel(model, cache)
        key = cache_key(model.spec, MESSAGES, identity=wrapped.identity)
        cache.put(key, model.spec, Completion("stale reply", model.spec))
        with sqlite3.connect(path) as db:  # as if written by the old scheme
            db.execute("UPDATE responses SET key_version = ?", (KEY_VERSION_NUMBER - 1,))
        db.close()
        assert cache.get(key) is None
        async with wrapped:
            assert (await wrapped.complete(MESSAGES)).text == "fresh"
        assert cache.stats().stale_entries == 0  # the fresh reply replaced the stale one
        assert cache.get(key) is not None
        cache.put("legacy", model.spec, Completion("old", model.spec))
        with sqlite3.connect(path) as db:
            db.execute("UPDATE responses SET key_version = 1 WHERE key = 'legacy'")
        db.close()
        assert cache.stats().stale_entries == 1
        assert cache.clear_stale() == 1
        assert len(cache) == 1 and cache.stats().stale_entries == 0


@pytest.fixture
def unpriced_server() -> Iterator[ScriptedServer]:
    with ScriptedServer(answering("ok")) as server:
        yield server


def test_unpriced_hit_costs_none_not_zero(unpriced_server: ScriptedServer, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    results = []
    for name in ("first", "second"):
        rlm = RLM(
            "openai/no-such-priced-model",
            base_url=unpriced_server.url,
            sandbox=SANDBOX,
            cache=path,
            trace=tmp_path / name,
        )
        results.append(rlm.completion("q", "ctx"))
    first, second = results
    assert len(unpriced_server.requests) == 1
    assert first.cost_usd is None and second.cost_usd is None
    assert second.usage.calls == 1 and second.usage.input_tokens == first.usage.input_tokens
    events = [json.loads(x) for x in (tmp_path / "second").read_text().splitlines()]
    calls = [e for e in events if e["type"] == "model_call"]
    assert [c.get("cached") for c in calls] == [True]
    assert calls[0]["usage"]["cost_usd"] is None
    with ResponseCache(path) as cache:
        stats = cache.stats()
    assert (stats.hits, stats.unpriced_hits, stats.saved_usd) == (1, 1, None)


async def test_priced_hit_costs_zero_and_the_saving_is_counted(
    unpriced_server: ScriptedServer, tmp_path: Path
) -> None:
    priced = OpenAIModel("gpt-5-mini", options=ModelOptions(base_url=unpriced_server.url))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        model = CachedModel(priced, cache)
        async with model:
            miss = await model.complete(MESSAGES)
            hits = [await model.complete(MESSAGES) for _ in range(2)]
        assert miss.cost_usd is not None and miss.cost_usd > 0
        assert all(h.cache_hit and h.cost_usd == 0.0 for h in hits)
        stats = cache.stats()
    assert stats.hits == 2 and stats.unpriced_hits == 0
    assert stats.saved_usd == pytest.approx(2 * miss.cost_usd)


# -- recursa cache path | stats | clear, as a real process --------------------------------


def test_cache_commands(
    unpriced_server: ScriptedServer, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    env = {**clean_env, "RECURSA_CACHE_DIR": str(tmp_path / "dir")}
    default = tmp_path / "dir" / "responses.sqlite"

    proc = run_cli(["cache", "path"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(default)

    proc = run_cli(["cache", "stats", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["entries"] == 0
    assert not default.exists(), "stats created no file"

    ctx = tmp_path / "ctx.txt"
    ctx.write_text("abc")
    for _ in range(2):
        proc = run_cli(
            ["run", "q", "-c", str(ctx), "--model", "openai/gpt-5-mini", "--base-url",
             unpriced_server.url, "--sandbox", SANDBOX, "--json", "--cache"],
            env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cost_usd"] == 0.0
    assert len(unpriced_server.requests) == 1

    proc = run_cli(["cache", "stats", "--json"], env)
    stats = json.loads(proc.stdout)
    assert (stats["entries"], stats["hits"], stats["stale_entries"]) == (1, 1, 0)
    assert stats["size_bytes"] > 0 and stats["saved_usd"] > 0
    assert stats["by_model"] == {"openai/gpt-5-mini": 1}
    text = run_cli(["cache", "stats"], env).stdout
    assert "entries:  1" in text and "hits:     1" in text and str(default) in text

    proc = run_cli(["cache", "clear"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"removed 1 entries from {default}")
    assert json.loads(run_cli(["cache", "stats", "--json"], env).stdout)["entries"] == 0

    other = tmp_path / "other.sqlite"
    with ResponseCache(other) as cache:
        cache.put("k1", "openai/a", Completion("x", "openai/a"))
        cache.put("k2", "openai/b", Completion("y", "openai/b"))
    proc = run_cli(["cache", "clear", "--cache", str(other), "--model", "openai/a"], env)
    assert proc.returncode == 0, proc.stderr
    assert "removed 1 entries of openai/a" in proc.stdout and "1 left" in proc.stdout
    proc = run_cli(["cache", "clear", "--cache", str(tmp_path / "none.sqlite")], env)
    assert proc.returncode == 0 and "removed 0 entries" in proc.stdout
    assert not (tmp_path / "none.sqlite").exists()
