"""Sampling on the embedded model: a seed makes a sampled reply repeatable, max_tokens
caps it, and what llama.cpp has no knob for (reasoning_effort) is refused."""

from __future__ import annotations

import pytest

from recursa.errors import ConfigError
from recursa.models import local
from recursa.models.base import Message
from recursa.sampling import Sampling

ASK: list[Message] = [
    {"role": "system", "content": "You are a storyteller."},
    {"role": "user", "content": "Invent a name for a dragon."},
]


async def test_reasoning_effort_is_refused_before_loading() -> None:
    model = local.LocalModel("qwen2.5-coder-0.5b")
    with pytest.raises(ConfigError, match=r"local/.* does not support reasoning_effort='low'"):
        await model.complete(ASK, sampling=Sampling(reasoning_effort="low"))
    assert model._engine is None


@pytest.mark.local_model
async def test_a_seed_makes_sampling_repeatable_and_max_tokens_caps(
    qwen: local.LocalModel,
) -> None:
    hot = Sampling(temperature=0.8, top_p=0.95, max_tokens=12)
    # Asked once first: a cold prompt's logits (the whole prompt in one batch) and those
    # of one read back from the prompt cache (its last token alone) differ by a few
    # ulps, which can flip a sampled token; from the cache on, a seed repeats.
    await qwen.complete(ASK, sampling=hot.replace(seed=1))
    first = await qwen.complete(ASK, sampling=hot.replace(seed=1))
    again = await qwen.complete(ASK, sampling=hot.replace(seed=1))
    assert first.text == again.text
    assert 1 <= first.output_tokens <= 12
    others = {(await qwen.complete(ASK, sampling=hot.replace(seed=s))).text for s in (2, 3, 4)}
    assert others - {first.text}, "other seeds sample other replies"
    short = await qwen.complete(ASK, sampling=Sampling(max_tokens=3))
    assert short.output_tokens <= 3
