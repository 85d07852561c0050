"""The embedded model streams its text: the pieces come while it writes, on the event
loop's thread, hold back what a stop string cuts, and join to exactly the reply a
request without a listener gets (same text, token counts and finish reason)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM
from recursa.models import local
from recursa.models.base import Message, stream_text

# A byte-level vocabulary for the stand-alone checks: token i is PIECES[i].
PIECES = [b"Hi", b" the", b"re", b"<|im", b"_e", b"nd|>", b"\xc3", b"\xa9", b"!", b"<|x"]
STOP = "<|im_end|>"


class Told:
    """A text listener that keeps what it is told, and on which thread."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.restarts = 0
        self.threads: set[int] = set()

    def __call__(self, piece: str, *, restart: bool = False) -> None:
        self.threads.add(threading.get_ident())
        if restart:
            self.restarts += 1
            self.pieces = []
        self.pieces.append(piece)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _detokenize(tokens: list[int]) -> bytes:
    return b"".join(PIECES[t] for t in tokens)


def _llama_reply(tokens: list[int], stops: list[str]) -> str:
    """The reply llama.cpp returns for ``tokens``: cut at the first stop string found."""
    text = _detokenize(tokens)
    for stop in stops:
        if stop.encode() in text:
            text = text[: text.index(stop.encode())]
            break
    return text.decode("utf-8", errors="ignore")


def _stream(tokens: list[int], stops: list[str]) -> tuple[Told, list[str]]:
    """Show ``tokens`` as llama.cpp's stopping-criteria hook does (after a two-token
    prompt, one token behind the newest), then finish with llama.cpp's reply; the
    listener, and the pieces it was told before the finish."""
    told = Told()
    streamed = local._StreamedText(_detokenize, 2, stops, told)
    prompt = [0, 1]
    for n in range(len(tokens)):
        assert streamed.observe(prompt + tokens[:n], None) is False
    live = list(told.pieces)
    streamed.finish(_llama_reply(tokens, stops))
    return told, live


def test_a_stop_string_split_over_tokens_is_never_told() -> None:
    tokens = [0, 1, 2, 3, 4, 5, 8]  # "Hi there<|im_end|>!"
    told, live = _stream(tokens, [STOP])
    assert told.text == "Hi there" and told.restarts == 0
    assert live == ["Hi", " the", "re"]  # "<|im" held back until it proved a stop


def test_text_that_only_looked_like_a_stop_string_is_told_once_it_differs() -> None:
    tokens = [0, 9, 2, 8]  # "Hi<|xre!": "<|x" is no stop string after all
    told, live = _stream(tokens, [STOP, "<|xyz"])
    assert told.text == "Hi<|xre!" and "".join(live) == "Hi<|xre"
    assert live[:2] == ["Hi", "<|xre"]  # "<|x" waited for the next token


def test_a_character_split_between_tokens_is_told_whole() -> None:
    tokens = [0, 6, 7, 8, 6]  # "Hié!" and a stray lead byte the reply drops
    told, live = _stream(tokens, [STOP])
    assert live == ["Hi", "é", "!"]
    assert told.text == "Hié!" == _llama_reply(tokens, [STOP])


def test_a_reply_that_does_not_continue_the_pieces_starts_them_over() -> None:
    told = Told()
    streamed = local._StreamedText(_detokenize, 0, [STOP], told)
    streamed.observe([0, 1], None)
    streamed.finish("Hello")
    assert told.restarts == 1 and told.pieces == ["", "Hello"]


# ---------------------------------------------------------------------------
# the real embedded model

# (question, max_tokens, how the greedy reply ends)
PROMPTS = [
    ("Name the three primary colours in one short line.", 24, "stop"),  # end-of-turn token
    ("Write a haiku about the sea.", 12, "length"),
    ("Reply with three cat emoji and the French word for coffee.", 16, "stop"),  # emoji
]


def _ask(question: str) -> list[Message]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]


async def _generate(
    engine: local.Engine, messages: list[Message], max_tokens: int, told: Told | None
) -> local._Result:
    """One :meth:`Engine.generate` on its worker thread; ``told`` hears the text on the
    event loop's thread (as :class:`LocalModel` arranges it)."""
    loop = asyncio.get_running_loop()
    cancelled = threading.Event()
    on_text = None if told is None else local._on_loop(loop, told, cancelled)

    def job() -> local._Result:
        return engine.generate(
            messages, spec="local/test", max_tokens=max_tokens, temperature=0.0, seed=0,
            cancelled=cancelled, on_text=on_text,
        )  # fmt: skip

    return await loop.run_in_executor(engine.executor, job)


@pytest.mark.local_model
@pytest.mark.slow  # about 15 s of generation on two shared cores
@pytest.mark.parametrize(("question", "max_tokens", "finish"), PROMPTS)
async def test_streamed_replies_equal_whole_ones(
    qwen: local.LocalModel, question: str, max_tokens: int, finish: str
) -> None:
    engine = qwen.load()
    messages = _ask(question)
    # A first call leaves the same KV state before the next two: a prompt evaluated
    # afresh may round differently from one restored, and so change a greedy reply.
    await _generate(engine, messages, max_tokens, None)
    told = Told()
    streamed = await _generate(engine, messages, max_tokens, told)
    whole = await _generate(engine, messages, max_tokens, None)
    assert streamed == whole  # text, token counts, cached tokens, finish reason
    assert streamed.finish_reason == finish
    assert told.text == streamed.text and told.restarts == 0
    assert len(told.pieces) > 1  # told while written, not once at the end
    assert told.threads == {threading.get_ident()}  # on the event loop's thread


@pytest.mark.local_model
@pytest.mark.slow
async def test_a_stop_string_cuts_the_streamed_reply_where_it_cuts_the_whole_one(
    qwen: local.LocalModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = qwen.load()
    render: Callable[..., tuple[str, list[str]]] = engine.render

    def with_stop(messages: Any) -> tuple[str, list[str]]:
        prompt, stop = render(messages)
        return prompt, [*stop, ", 4"]

    monkeypatch.setattr(engine, "render", with_stop)
    messages = _ask("Count from 1 to 9, separated by commas. Numbers only.")
    whole = await _generate(engine, messages, 32, None)
    told = Told()
    streamed = await _generate(engine, messages, 32, told)
    assert whole.finish_reason == "stop" and whole.text.startswith("1, 2, 3")
    assert ", 4" not in whole.text
    assert streamed.text == whole.text == told.text and told.restarts == 0
    assert streamed.completion_tokens == whole.completion_tokens


@pytest.mark.local_model
@pytest.mark.slow
async def test_a_cancelled_stream_tells_nothing_more_and_the_engine_goes_on(
    qwen: local.LocalModel,
) -> None:
    told = Told()
    first_piece = asyncio.Event()

    def listener(piece: str, *, restart: bool = False) -> None:
        told(piece, restart=restart)
        first_piece.set()

    messages = _ask("Write a long story about a lighthouse keeper.")
    with stream_text(listener):
        task = asyncio.ensure_future(qwen.complete(messages, max_tokens=400))
    await asyncio.wait_for(first_piece.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    count = len(told.pieces)
    reply = await qwen.complete(_ask("What is 2+3? Reply with the number only."))
    assert reply.text.strip() == "5"
    await asyncio.sleep(0)
    assert len(told.pieces) == count  # the cancelled request told nothing after it


# Short, so that the root turn's prompt is quick to evaluate on a CPU.
SHORT_SYSTEM = "Answer by writing Python in a ```repl block; `context` holds the text."


@pytest.mark.local_model
@pytest.mark.slow  # one root turn on the embedded model
def test_a_live_sink_gets_the_embedded_root_turns_in_pieces(
    qwen: local.LocalModel, tmp_path: Path
) -> None:
    sink = _Sink()
    rlm = RLM(qwen, sandbox="inprocess", max_iterations=1, model_settings={"max_tokens": 24},
              system_prompt=SHORT_SYSTEM, trace=tmp_path / "run.jsonl")  # fmt: skip
    result = rlm.completion("How many words are in the context?", "one two three", sinks=[sink])
    assert result.trace is not None
    events = [json.loads(line) for line in Path(result.trace).read_text().splitlines()]
    turns = {e["call_id"]: e for e in events if e["type"] == "model_call"}
    assert turns and not [e for e in events if e["type"] == "model_delta"]
    for call_id, turn in turns.items():
        pieces = [e["text"] for e in sink.events if e.get("call_id") == call_id]
        assert len(pieces) > 1 and "".join(pieces) == turn["response"]


class _Sink:
    """A live sink that asks for the turns' text and keeps the ``model_delta`` notices."""

    live = True
    text_deltas = True

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: Any) -> None:
        if event["type"] == "model_delta":
            self.events.append(dict(event))
