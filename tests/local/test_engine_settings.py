"""The engine's tuned llama.cpp settings (issue 20): applied, and greedy output unchanged
against llama-cpp-python's defaults (the settings before the tuning)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recursa.models import local

pytestmark = pytest.mark.local_model

PROMPT = "def fibonacci(n):\n    " + "".join(
    f"# step {i}: add the two previous numbers of the sequence\n    " for i in range(60)
)


def _greedy(path: Path, settings: dict[str, Any]) -> str:
    llama = local._import_llama_cpp().Llama(model_path=str(path), seed=0, verbose=False, **settings)
    try:
        tokens = llama.tokenize(PROMPT.encode("utf-8"), add_bos=False)
        assert len(tokens) > 512  # several batches of either setting
        out = llama.create_completion(
            prompt=tokens, max_tokens=32, temperature=0.0, top_k=1, repeat_penalty=1.0
        )
        return str(out["choices"][0]["text"])
    finally:
        llama.close()


def test_the_engine_prefills_in_small_batches_without_flash_attention(
    qwen: local.LocalModel,
) -> None:
    params = qwen.load().llama.context_params
    assert params.n_batch == params.n_ubatch == local.PREFILL_BATCH
    llama_cpp = local._import_llama_cpp()
    assert params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    assert params.type_k == params.type_v == llama_cpp.GGML_TYPE_F16


@pytest.mark.slow  # two loads and two prefills of about 700 tokens
def test_tuned_settings_keep_greedy_output(qwen_path: Path) -> None:
    threads = local.default_threads()
    defaults = {"n_ctx": 2048, "n_threads": threads, "n_threads_batch": threads}
    assert _greedy(qwen_path, local.llama_settings(2048, threads)) == _greedy(qwen_path, defaults)
