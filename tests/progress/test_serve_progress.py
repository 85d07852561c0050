"""``recursa serve``'s structured progress: the calls running and queued, and a note per
batch as its calls return, read with the official client from a real server."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import openai

from recursa import RLM
from recursa.serve import BackgroundServer, make_app
from recursa.testing import ScriptedServer, http_router

TURNS = ["```repl\nparts = llm_batch([f'p{i}' for i in range(5)])\n```", "FINAL_VAR(parts)"]


def test_stream_progress_counts_running_queued_and_batch_calls() -> None:
    with (
        ScriptedServer(http_router(TURNS, lambda p: p.upper()), latency=0.05) as backend,
        BackgroundServer(
            make_app(RLM("openai/root", base_url=backend.url, sandbox="inprocess",
                         max_concurrency=2))
        ) as server,
        openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client,
    ):  # fmt: skip
        chunks = list(
            client.chat.completions.create(
                model="recursa",
                messages=[{"role": "user", "content": "go"}],
                stream=True,
                extra_body={"rlm": {"progress": True}},
            )
        )
    notes = [(ch.model_extra or {})["rlm"]["progress"] for ch in chunks if not ch.choices]
    assert max(n["running"] for n in notes) == 2 and max(n["queued"] for n in notes) > 0
    assert notes[-1]["running"] == notes[-1]["queued"] == 0
    batch = [n["batch"] for n in notes if n["event"].startswith("batch_")]
    assert batch[0] == {"id": "b0", "kind": "llm", "node_id": "n0", "total": 5, "done": 0}
    assert [b["done"] for b in batch[1:]] == [1, 2, 3, 4, 5, 5]  # ..., then batch_end
    assert [n["event"] for n in notes if "batch" in n][-1] == "batch_end"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "P4" in text
