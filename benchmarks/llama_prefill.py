"""Prefill speed of the embedded model (llama.cpp) at 1K, 8K and 32K prompt tokens, against
the floor this machine allows.

The floor: the model's FLOPs per prompt token, from the GGUF's shape (2 x the weights of
every matmul, plus attention over the tokens before it, averaged over the prompt; the
output layer is left out, llama.cpp computes logits for the last token only), at the
rate llama.cpp itself reaches on a short prompt, where the quantised matmuls are nearly
all the work ("machine rate"). A numpy float32 GEMM is printed as a second reference.

"before" is the engine's settings before issue 20 (flash attention off, 512-token
batches, f16 KV cache); "after" is :func:`recursa.models.local.llama_settings`, what the
engine uses now. ``--variant`` adds a configuration: "before" with some arguments of
``llama_cpp.Llama`` changed. Each point runs ``--repeats`` times (lengths of 16K tokens
and more once), each figure with the 1-minute load average when it finished. A greedy
continuation of a 1K prompt is compared with "before" for every configuration. Last, a
second root turn through recursa's engine (with a sub-call between the turns): how much
of its prompt the KV cache already held and what its prefill cost.

    .venv/bin/python benchmarks/llama_prefill.py                       # 1K and 8K
    .venv/bin/python benchmarks/llama_prefill.py --lengths 1k,8k,32k   # the full run
    .venv/bin/python benchmarks/llama_prefill.py --configs before \\
        --variant ub1024=flash_attn=1,n_batch=1024,n_ubatch=1024
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from recursa.models import local  # noqa: E402
from recursa.models.base import Message  # noqa: E402

RATE_TOKENS = 512  # the short prompt that measures the machine rate
GREEDY_PROMPT = 1024
GREEDY_TOKENS = 48
ONCE_FROM = 16 * 1024  # lengths from here on run once per configuration
N_CTX = 32768  # the engine's window for local/qwen2.5-coder-0.5b


@dataclass(frozen=True)
class Shape:
    """What the FLOPs of one prompt token depend on."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int

    @classmethod
    def from_metadata(cls, meta: dict[str, str], vocab: int) -> Shape:
        arch = meta["general.architecture"]

        def get(key: str) -> int:
            return int(meta[f"{arch}.{key}"])

        return cls(
            layers=get("block_count"),
            hidden=get("embedding_length"),
            heads=get("attention.head_count"),
            kv_heads=get("attention.head_count_kv"),
            ffn=get("feed_forward_length"),
            vocab=vocab,
        )

    @property
    def matmul_flops(self) -> int:
        """2 x the weights of Q, K, V, O and the gated FFN, over every layer."""
        kv = self.kv_heads * (self.hidden // self.heads)
        per_layer = (
            2 * self.hidden * self.hidden + 2 * self.hidden * kv + 3 * self.hidden * self.ffn
        )
        return 2 * self.layers * per_layer

    def flops_per_token(self, prompt: int) -> float:
        """Matmuls plus attention (QK^T and the weighted sum of V, 4 x hidden FLOPs per layer
        and earlier token); causal, so a token attends (prompt + 1) / 2 tokens on average."""
        attention = 4 * self.layers * self.hidden * (prompt + 1) / 2
        return self.matmul_flops + attention


def parse_length(text: str) -> int:
    text = text.strip().lower()
    return int(text[:-1]) * 1024 if text.endswith("k") else int(text)


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``name=key=value,key=value``: values are integers or ggml type names (q8_0, f16)."""
    name, _, body = text.partition("=")
    if not name or not body:
        raise SystemExit(f"--variant {text!r}: expected NAME=key=value[,key=value]")
    llama_cpp = local._import_llama_cpp()
    changes: dict[str, Any] = {}
    for item in body.split(","):
        key, _, value = item.partition("=")
        if key in ("type_k", "type_v"):
            changes[key] = int(getattr(llama_cpp, f"GGML_TYPE_{value.upper()}"))
        elif key in ("flash_attn", "use_mlock", "use_mmap"):
            changes[key] = value.lower() in ("1", "true", "on", "yes")
        else:
            changes[key] = int(value)
    return name, changes


def before_settings(n_threads: int) -> dict[str, Any]:
    """The engine's ``Llama`` arguments before issue 20 (llama-cpp-python's defaults)."""
    return {"n_ctx": N_CTX, "n_threads": n_threads, "n_threads_batch": n_threads}


def load(path: Path, settings: dict[str, Any]) -> Any:
    llama_cpp = local._import_llama_cpp()
    return llama_cpp.Llama(model_path=str(path), seed=0, verbose=False, **settings)


def sample_tokens(llama: Any, n: int) -> list[int]:
    """``n`` tokens of real text: the standard library's Python sources, in a fixed order."""
    tokens: list[int] = []
    for source in sorted(Path(os.__file__).parent.glob("*.py")):
        text = source.read_text(encoding="utf-8", errors="replace")
        tokens.extend(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        if len(tokens) >= n:
            return tokens[:n]
    raise SystemExit(f"not enough text for {n} tokens")


def prefill_seconds(llama: Any, tokens: list[int]) -> float:
    llama.reset()  # the next eval drops the whole KV cache
    started = time.perf_counter()
    llama.eval(tokens)
    return time.perf_counter() - started


def greedy_text(llama: Any, tokens: list[int]) -> str:
    llama.reset()
    out = llama.create_completion(
        prompt=tokens, max_tokens=GREEDY_TOKENS, temperature=0.0, top_k=1, repeat_penalty=1.0
    )
    return str(out["choices"][0]["text"])


def load1() -> float:
    return os.getloadavg()[0]


def numpy_gflops(n: int = 2048, rounds: int = 5) -> float:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


@dataclass
class Point:
    config: str
    length: int
    rates: list[tuple[float, float]]  # (tokens/s, load average)

    @property
    def best(self) -> float:
        return max(r for r, _ in self.rates)


def measure(path: Path, name: str, settings: dict[str, Any], lengths: list[int], repeats: int,
            reference: str | None) -> tuple[list[Point], str]:  # fmt: skip
    llama = load(path, settings)
    try:
        prompt = sample_tokens(llama, max([*lengths, GREEDY_PROMPT]))
        prefill_seconds(llama, prompt[:64])  # warm up
        greedy = greedy_text(llama, prompt[:GREEDY_PROMPT])
        same = "" if reference is None else f"; greedy output same as before: {greedy == reference}"
        print(f"{name}: {settings}{same}", flush=True)
        points = []
        for length in lengths:
            point = Point(name, length, [])
            for _ in range(1 if length >= ONCE_FROM else repeats):
                seconds = prefill_seconds(llama, prompt[:length])
                point.rates.append((length / seconds, load1()))
                print(f"  {length:>6} tokens: {length / seconds:7.1f} tok/s "
                      f"({seconds:6.1f} s, load {load1():.2f})", flush=True)  # fmt: skip
            points.append(point)
        return points, greedy
    finally:
        llama.close()


def machine_rate(path: Path, settings: dict[str, Any], shape: Shape, repeats: int) -> float:
    """FLOP/s of llama.cpp's best prefill of a short prompt (matmuls dominate there)."""
    llama = load(path, settings)
    try:
        tokens = sample_tokens(llama, RATE_TOKENS)
        prefill_seconds(llama, tokens[:64])
        best = min(prefill_seconds(llama, tokens) for _ in range(max(3, repeats)))
    finally:
        llama.close()
    return RATE_TOKENS / best * shape.flops_per_token(RATE_TOKENS)


async def second_turn(path: Path, filler: list[str]) -> None:
    """A root turn, a sub-call, and the root's next turn through recursa's engine."""
    model = local.LocalModel(str(path), n_ctx=N_CTX)
    engine = await asyncio.to_thread(model.load)
    system = "You answer questions about a long context.\n\n" + "\n".join(filler[:200])
    root: list[Message] = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Which module defines the function shown above? " * 20},
    ]
    sub: list[Message] = [{"role": "user", "content": "\n".join(filler[200:260])}]

    async def call(label: str, messages: list[Message]) -> str:
        before = (engine.stats.prompt_evaluated, engine.stats.prompt_seconds)
        c = await model.complete(messages, max_tokens=32)
        evaluated = engine.stats.prompt_evaluated - before[0]
        seconds = engine.stats.prompt_seconds - before[1]
        print(f"  {label:<12} prompt {c.input_tokens:>5} tokens, cached {c.cached_tokens:>5}, "
              f"evaluated {evaluated:>5} in {seconds:5.1f} s (load {load1():.2f})", flush=True)  # fmt: skip
        return c.text

    print("prefix reuse through recursa's engine (after settings):")
    reply = await call("root turn 1", root)
    await call("sub-call", sub)
    root += [
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "REPL output:\n" + "\n".join(filler[260:280])},
    ]
    await call("root turn 2", root)
    local.close_engines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="1k,8k", help="prompt lengths, e.g. 1k,8k,32k")
    parser.add_argument("--repeats", type=int, default=2, help="runs per point (16K+: one)")
    parser.add_argument("--configs", default="before,after", help="before, after or both")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=K=V,...",
                        help="'before' with some Llama arguments changed (repeatable)")  # fmt: skip
    parser.add_argument("--model", help="a .gguf file (default: local/qwen2.5-coder-0.5b)")
    parser.add_argument("--no-turns", action="store_true", help="skip the second-turn check")
    args = parser.parse_args(argv)

    lengths = [parse_length(x) for x in args.lengths.split(",") if x.strip()]
    threads = local.default_threads()
    path = Path(args.model) if args.model else local.ensure_weights(local.known_weights("default"))
    configs: dict[str, dict[str, Any]] = {}
    for name in (c.strip() for c in args.configs.split(",") if c.strip()):
        if name == "before":
            configs[name] = before_settings(threads)
        elif name == "after":
            configs[name] = local.llama_settings(N_CTX, threads)
        else:
            raise SystemExit(f"--configs: unknown {name!r} (before, after)")
    for text in args.variant:
        name, changes = parse_variant(text)
        configs[name] = {**before_settings(threads), **changes}

    probe = local._import_llama_cpp().Llama(model_path=str(path), vocab_only=True, verbose=False)
    shape = Shape.from_metadata(probe.metadata, probe.n_vocab())
    probe.close()
    print(f"{path.name}: {shape}; {threads} threads, {os.cpu_count()} CPUs, load {load1():.2f}")
    best_settings = local.llama_settings(N_CTX, threads)
    rate = machine_rate(path, best_settings, shape, args.repeats)
    gemm = numpy_gflops()
    print(f"machine rate: {rate / 1e9:.1f} GFLOP/s (llama.cpp, {RATE_TOKENS}-token prefill, "
          f"after settings); numpy float32 GEMM: {gemm:.1f} GFLOP/s (load {load1():.2f})")  # fmt: skip
    for length in lengths:
        f = shape.flops_per_token(length)
        print(f"  {length:>6} tokens: {f / 1e9:.3f} GFLOP/token "
              f"({shape.matmul_flops / f:.0%} matmul) -> floor {rate / f:6.1f} tok/s")  # fmt: skip

    points: list[Point] = []
    reference: str | None = None
    for name, settings in configs.items():
        got, greedy = measure(path, name, settings, lengths, args.repeats, reference)
        reference = greedy if reference is None else reference
        points += got

    print(
        f"\n{'config':<12} {'tokens':>6} {'tok/s (load)':<34} {'floor':>7} {'floor/measured':>14}"
    )
    for p in points:
        floor = rate / shape.flops_per_token(p.length)
        runs = ", ".join(f"{r:.1f} ({la:.2f})" for r, la in p.rates)
        print(f"{p.config:<12} {p.length:>6} {runs:<34} {floor:7.1f} {floor / p.best:13.2f}x")
    if not args.no_turns:
        llama = load(path, {"n_ctx": 512, "vocab_only": True})
        filler = llama.detokenize(sample_tokens(llama, 6000)).decode("utf-8", "replace")
        llama.close()
        asyncio.run(second_turn(path, filler.splitlines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
