"""The embedded 0.5B model through llama.cpp: one shared instance, exact token counts,
context-window errors, real generations, and prompt-prefix reuse."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from recursa.errors import ConfigError, ContextWindowError
from recursa.models import local
from recursa.models.base import Message

pytestmark = pytest.mark.local_model

SYSTEM = "You are a careful assistant. Answer with as few words as possible. " + " ".join(
    f"Rule {i}: stay brief and exact." for i in range(60)
)

NOTES = "Notes. " + " ".join(f"Item {i} is stored on shelf {i % 7}." for i in range(40))


def _ask(question: str) -> list[Message]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]


def test_weights_match_their_checksum(qwen_path: Path) -> None:
    weights = local.known_weights("qwen2.5-coder-0.5b")
    assert qwen_path.name == weights.filename
    assert local._sha256(qwen_path) == weights.sha256


def test_one_engine_per_process(qwen: local.LocalModel) -> None:
    again = local.LocalModel("qwen2.5-coder-0.5b-instruct")
    assert again.load() is qwen.load()
    assert again.load().llama is qwen.load().llama
    assert qwen.context_window == 32768


async def test_a_real_generation_with_exact_token_counts(qwen: local.LocalModel) -> None:
    messages = _ask("What is 2+3? Reply with the number only.")
    completion = await qwen.complete(messages)
    assert completion.text.strip() == "5"
    engine = qwen.load()
    prompt, _stop = engine.render(messages)
    assert completion.input_tokens == len(engine.tokenize(prompt))
    assert completion.output_tokens == len(engine.tokenize(completion.text, special=False))
    assert completion.cost_usd == 0.0
    assert completion.model == "local/qwen2.5-coder-0.5b"


async def test_greedy_by_default_so_replies_repeat(qwen: local.LocalModel) -> None:
    messages = _ask("Name one primary colour.")
    first = await qwen.complete(messages, max_tokens=8)
    second = await qwen.complete(messages, max_tokens=8)
    assert first.text == second.text
    assert second.output_tokens <= 8


async def test_an_oversized_prompt_raises_context_window_error(qwen: local.LocalModel) -> None:
    before = qwen.load().stats.calls
    messages = _ask("Summarise: " + "lorem ipsum dolor " * 12_000)
    with pytest.raises(ContextWindowError, match=r"context window is 32,768 tokens"):
        await qwen.complete(messages)
    assert qwen.load().stats.calls == before  # refused before any evaluation


async def test_concurrent_calls_are_serialised(qwen: local.LocalModel) -> None:
    questions = [f"What is {n}+{n}? Reply with the number only." for n in (1, 2, 3)]
    replies = await asyncio.gather(*(qwen.complete(_ask(q), max_tokens=4) for q in questions))
    assert [r.text.strip() for r in replies] == ["2", "4", "6"]


@pytest.mark.slow  # about 13 s of llama.cpp prefill
async def test_prefix_reuse_survives_interleaved_sub_calls(qwen: local.LocalModel) -> None:
    engine = qwen.load()
    turn1: list[Message] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of France? One word."},
    ]
    first = await qwen.complete(turn1, max_tokens=8)
    assert first.input_tokens > local.SNAPSHOT_MIN_TOKENS
    # Sub-calls in between replace llama.cpp's live KV cache, and more long ones than
    # there are snapshot slots must not evict the (multi-turn) root conversation.
    for i in range(local.SNAPSHOT_MAX_COUNT + 1):
        prompt = f"{NOTES}\nQuestion {i}: what is {i} plus one? Reply with the number only."
        await qwen.complete([{"role": "user", "content": prompt}], max_tokens=4)
    assert engine.snapshot_bytes > 0
    turn2: list[Message] = [
        *turn1,
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "And of Italy? One word."},
    ]
    evaluated_before = engine.stats.prompt_evaluated
    second = await qwen.complete(turn2, max_tokens=8)
    evaluated = engine.stats.prompt_evaluated - evaluated_before
    new_tokens = second.input_tokens - first.input_tokens
    assert "Rome" in second.text
    assert second.cached_tokens >= first.input_tokens
    assert evaluated == second.input_tokens - second.cached_tokens
    assert evaluated <= new_tokens + 2  # only the new tokens were evaluated


async def test_smollm2_for_smoke_tests() -> None:
    try:
        local._import_llama_cpp()
        model = local.LocalModel("smollm2-135m")
        model.load()
    except ConfigError as exc:
        pytest.skip(str(exc))
    completion = await model.complete(_ask("Say hello."), max_tokens=8)
    assert completion.text and 0 < completion.output_tokens <= 8
    assert completion.model == "local/smollm2-135m"
    assert model.context_window == 8192
