"""The SQLite response cache: hits over real HTTP cost nothing, keys, migrations, processes."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM
from recursa.errors import ConfigError, ModelError
from recursa.models.base import Completion
from recursa.models.cache import (
    MIGRATIONS,
    CachedModel,
    ResponseCache,
    cache_key,
    default_cache_path,
    open_cache,
    with_cache,
)
from recursa.models.openai import OpenAIModel
from recursa.models.registry import ModelOptions
from recursa.sampling import Sampling
from recursa.testing import HTTPFailure, ScriptedServer, http_router
from tests.cache._worker import write_and_read

SANDBOX = "inprocess"
TURNS = [
    "```repl\nparts = llm_batch([context[:5], context[5:]])\nprint(parts)\n```",
    "```repl\nFINAL(' + '.join(parts))\n```",
]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(http_router(TURNS, lambda p: f"<{p}>")) as s:
        yield s


def priced(server: ScriptedServer) -> OpenAIModel:
    # A real price, so the first run costs something and the cached one visibly nothing.
    return OpenAIModel("gpt-5-mini", options=ModelOptions(base_url=server.url))


def test_second_identical_run_makes_no_requests_and_costs_nothing(
    server: ScriptedServer, tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    results = []
    for _ in range(2):
        cache = ResponseCache(path)
        rlm = RLM(CachedModel(priced(server), cache), sandbox=SANDBOX)
        results.append(rlm.completion("join", "helloworld"))
        assert cache._db is None, "the run closed the cache connection"
    first, second = results
    assert first.answer == second.answer == "<hello> + <world>"
    assert len(server.requests) == 4  # 2 turns + 2 sub-calls, all in the first run
    assert first.cost_usd is not None and first.cost_usd > 0
    assert second.cost_usd == 0.0
    assert second.usage.calls == first.usage.calls == 4
    assert second.usage.input_tokens == first.usage.input_tokens
    assert second.usage.output_tokens == first.usage.output_tokens
    assert set(second.usage.by_model) == {"openai/gpt-5-mini"}


def test_trace_marks_cached_calls(server: ScriptedServer, tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    for name in ("first", "second"):
        cache = ResponseCache(path)
        rlm = RLM(CachedModel(priced(server), cache), sandbox=SANDBOX, trace=tmp_path / name)
        rlm.completion("join", "helloworld")
    for name, cached in (("first", False), ("second", True)):
        events = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        calls = [e for e in events if e["type"] == "model_call"]
        assert len(calls) == 4
        assert all(e.get("cached", False) is cached for e in calls)  # false is left out
        if cached:
            assert all(e["usage"]["cost_usd"] == 0.0 for e in calls)


async def test_hit_keeps_tokens_costs_zero_and_sampling_parameters_are_keyed(
    server: ScriptedServer, tmp_path: Path
) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        # gpt-4o-mini: it takes a temperature (gpt-5-mini refuses any but 1)
        priced_chat = OpenAIModel("gpt-4o-mini", options=ModelOptions(base_url=server.url))
        model = CachedModel(priced_chat, cache)
        async with model:
            messages: Any = [{"role": "user", "content": "hi"}]
            miss = await model.complete(messages, sampling=Sampling(temperature=0.0))
            hit = await model.complete(messages, sampling=Sampling(temperature=0.0))
            assert len(server.requests) == 1
            assert not miss.cache_hit and hit.cache_hit
            assert miss.cost_usd is not None and miss.cost_usd > 0
            assert hit.cost_usd == 0.0
            assert (hit.text, hit.input_tokens, hit.output_tokens) == (
                miss.text,
                miss.input_tokens,
                miss.output_tokens,
            )
            cold = Sampling(temperature=0.0)
            await model.complete(messages, sampling=Sampling(temperature=0.7))  # a miss
            await model.complete(messages, sampling=cold, max_tokens=5)  # and max_tokens
            await model.complete([{"role": "user", "content": "hi!"}], sampling=cold)
            await model.complete(messages, sampling=cold.replace(top_p=0.5))  # and top_p
            await model.complete(messages, sampling=cold.replace(seed=7))  # and seed
            # the user's max_tokens is the same cap as the budget's: a hit
            await model.complete(messages, sampling=cold.replace(max_tokens=5))
            assert len(server.requests) == 6
            assert server.requests[1]["temperature"] == 0.7
            assert server.requests[4]["top_p"] == 0.5
            assert server.requests[5]["seed"] == 7
        assert (cache.hits, cache.misses) == (2, 6)
        assert len(cache) == 6


def test_key_covers_model_messages_and_parameters() -> None:
    m: Any = [{"role": "user", "content": "x"}]
    base = cache_key("openai/a", m)
    assert base == cache_key("openai/a", [{"content": "x", "role": "user"}])
    assert (
        len(
            {
                base,
                cache_key("openai/b", m),
                cache_key("openai/a", [{"role": "user", "content": "y"}]),
                cache_key("openai/a", m, sampling=Sampling(temperature=0.0)),
                cache_key("openai/a", m, sampling=Sampling(top_p=0.9)),
                cache_key("openai/a", m, sampling=Sampling(seed=1)),
                cache_key("openai/a", m, sampling=Sampling(reasoning_effort="low")),
                cache_key("openai/a", m, max_tokens=10),
            }
        )
        == 8
    )
    # an output cap is one cap, whether a budget or the user asked for it
    assert cache_key("openai/a", m, max_tokens=10) == cache_key(
        "openai/a", m, sampling=Sampling(max_tokens=10)
    )
    assert cache_key("openai/a", m, max_tokens=10) == cache_key(
        "openai/a", m, max_tokens=20, sampling=Sampling(max_tokens=10)
    )
    assert base == cache_key("openai/a", m, sampling=Sampling())


async def test_errors_are_not_cached(tmp_path: Path) -> None:
    def reply(body: dict[str, Any]) -> str:
        raise HTTPFailure(404, "no such model")

    with ScriptedServer(reply) as failing, ResponseCache(tmp_path / "c.sqlite") as cache:
        model = CachedModel(priced(failing), cache)
        async with model:
            for _ in range(2):
                with pytest.raises(ModelError, match="404"):
                    await model.complete([{"role": "user", "content": "hi"}])
        assert len(failing.requests) == 2
        assert len(cache) == 0


def test_migrations_table(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    names = [name for name, _ in MIGRATIONS]
    assert names[:3] == [
        "m001_responses",
        "m002_responses_spec_index",
        "m003_responses_endpoint_and_hits",
    ]
    with ResponseCache(path) as cache:
        assert cache.applied_migrations() == names
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name, applied_at FROM migrations").fetchall()
        assert [r[0] for r in rows] == names
        assert all(r[1] > 0 for r in rows)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # An older database: only the first migration applied.
        db.execute("DROP INDEX responses_spec")
        db.execute("ALTER TABLE responses DROP COLUMN key_version")
        db.execute("ALTER TABLE responses DROP COLUMN endpoint")
        db.execute("ALTER TABLE responses DROP COLUMN hits")
        db.execute("ALTER TABLE responses DROP COLUMN last_hit_at")
        db.execute("DELETE FROM migrations WHERE name != 'm001_responses'")
    db.close()
    with ResponseCache(path) as cache:
        assert cache.applied_migrations() == names
        cache.put("k", "openai/m", Completion("t", "openai/m"))
    with ResponseCache(path) as cache:  # reopening applies nothing twice
        assert cache.applied_migrations() == names
        assert cache.get("k") is not None


def test_processes_writing_at_once_do_not_corrupt_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"  # new: the processes also race to create and migrate it
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=write_and_read, args=(str(path), w, 40)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM responses").fetchone()[0] == 4 * 40 + 40
        assert db.execute("SELECT count(*) FROM migrations").fetchone()[0] == len(MIGRATIONS)
    db.close()


def test_unusable_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        ResponseCache(tmp_path).get("k")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite database"):
        ResponseCache(junk).get("k")


def test_default_path_and_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECURSA_CACHE_DIR", str(tmp_path / "d"))
    assert default_cache_path() == tmp_path / "d" / "responses.sqlite"
    monkeypatch.delenv("RECURSA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_path() == tmp_path / "x" / "recursa" / "responses.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "recursa" / "responses.sqlite"
    assert open_cache(None) is None and open_cache(False) is None
    cache = open_cache(True)
    assert cache is not None and cache.path == default_cache_path()
    assert open_cache(cache) is cache
    other = open_cache(tmp_path / "o.sqlite")
    assert other is not None and other.path == tmp_path / "o.sqlite"
    model = OpenAIModel("m", options=ModelOptions(base_url="http://127.0.0.1:9/v1"))
    wrapped = with_cache(model, cache)
    assert isinstance(wrapped, CachedModel) and wrapped.spec == "openai/m"
    assert with_cache(wrapped, cache) is wrapped and with_cache(model, None) is model


# -- the RLM and CLI options (wired in rlm.py and cli.py) ---------------------------------


def test_rlm_cache_option(server: ScriptedServer, tmp_path: Path) -> None:
    path = tmp_path / "api.sqlite"
    answers = [
        RLM("openai/gpt-5-mini", base_url=server.url, sandbox=SANDBOX, cache=path).completion(
            "join", "helloworld"
        )
        for _ in range(2)
    ]
    assert answers[0].answer == answers[1].answer
    assert len(server.requests) == 4
    assert answers[1].cost_usd == 0.0


def test_cli_cache_flag(server: ScriptedServer, tmp_path: Path, clean_env: dict[str, str]) -> None:
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("helloworld")
    env = {**clean_env, "RECURSA_CACHE_DIR": str(tmp_path / "cachedir")}
    outs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "recursa", "run", "join", "-c", str(ctx), "--model",
             "openai/gpt-5-mini", "--base-url", server.url, "--sandbox", SANDBOX, "--json",
             "--cache"],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout))
    assert len(server.requests) == 4
    assert outs[0]["answer"] == outs[1]["answer"]
    assert outs[1]["cost_usd"] == 0.0
    assert (tmp_path / "cachedir" / "responses.sqlite").exists()
