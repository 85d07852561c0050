"""The host <-> REPL protocol: round trips, every malformed frame and request, and a real
worker that sends garbage or ill-typed calls (the REPL and the host survive)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from recursa.repl import protocol
from recursa.repl.base import Sandbox
from recursa.repl.channel import WorkerGone, WorkerLink, read_frame
from recursa.repl.protocol import (
    BudgetLimits,
    BudgetQuery,
    Call,
    Cancel,
    CellDone,
    CitationRef,
    Cite,
    Close,
    Frame,
    Hello,
    HostRequest,
    ImageData,
    LlmBatch,
    LlmQuery,
    ProtocolError,
    Reply,
    RlmBatch,
    RlmQuery,
    RunCell,
    ToolCall,
    decode_frame,
    decode_request,
    encode_frame,
    encode_request,
    frame_length,
)

from .sandboxes import FakeHost, started

T = 10.0


def body(frame: Frame) -> bytes:
    data = encode_frame(frame)
    assert frame_length(data[:4]) == len(data) - 4
    return data[4:]


def raw(msg: Any) -> bytes:
    return json.dumps(msg).encode()


# -- round trips ---------------------------------------------------------------------------
FRAMES: list[Frame] = [
    RunCell("print('héllo ✓')"),
    RunCell(""),
    Reply(1, ok="text"),
    Reply(2, ok={"usd": 1.5, "calls": None, "nested": [1, [2, {"x": True}]]}),
    Reply(3, ok=None),
    Reply(4, error="the model refused"),
    Close(),
    Hello(1234),
    Hello(1, context_s=0.25, limits={"memory_bytes": 1 << 30, "processes_not_enforced": "uid 0"}),
    Call(7, "llm_query", {"prompt": "p", "model": None}),
    Call(8, "budget", {}),
    CellDone(),
    CellDone("out\n", "Traceback ...", None, 0.5, True),
    CellDone("", None, "the answer", 1.0, False),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_round_trips(frame: Frame) -> None:
    assert decode_frame(body(frame)) == frame


def test_an_error_reply_carries_no_value() -> None:
    assert json.loads(body(Reply(5, ok="ignored", error="no"))) == {
        "op": "reply",
        "id": 5,
        "error": "no",
    }


def test_numbers_are_floats_after_decoding() -> None:
    done = decode_frame(raw({"op": "result", "output": "", "duration_s": 2}))
    assert isinstance(done, CellDone) and done.duration_s == 2.0
    assert isinstance(done.duration_s, float)


def test_text_that_is_not_utf8_arrives_replaced() -> None:
    # a lone surrogate the REPL printed: the host never gets an unencodable str
    data = encode_frame(CellDone(output="a\ud800b"))[4:]
    done = decode_frame(data)
    assert isinstance(done, CellDone)
    assert done.output.startswith("a") and done.output.endswith("b")
    done.output.encode("utf-8")  # well-formed


REQUESTS: list[HostRequest] = [
    LlmQuery("p"),
    LlmQuery("p", model="openai/gpt-5-mini", group="g1"),
    LlmQuery("look", images=(ImageData("image/png", "aGVsbG8="),)),
    LlmBatch(("a", "b", "")),
    LlmBatch((), model="m"),
    RlmQuery("p"),
    RlmQuery("p", context={"doc": ["x", 1]}, budget=BudgetLimits(usd=0.5, calls=3)),
    RlmQuery("p", budget=BudgetLimits(tokens=1000, seconds=2.5)),
    RlmBatch(("a", "b")),
    RlmBatch(("a", "b"), contexts=("c1", None)),
    RlmQuery("p", model="openai/gpt-5-mini", budget=BudgetLimits(calls=2)),
    RlmBatch(("a",), model="anthropic/claude"),
    Cancel("g1"),
    BudgetQuery(),
    ToolCall("add", (1, 2)),
    ToolCall("search", ("q",), {"limit": 3, "deep": True}),
    Cite((CitationRef("a quote"), CitationRef(start=0, end=4), CitationRef("q", 1, 3, "k"))),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.name)
def test_every_request_round_trips(request_: HostRequest) -> None:
    name, payload = encode_request(request_)
    assert name == request_.name
    json.dumps(payload)  # JSON all through
    assert decode_request(name, payload) == request_


def test_requests_decode_what_the_repl_sends() -> None:
    assert decode_request("llm_query", {"prompt": "p", "model": None}) == LlmQuery("p")
    budget = {"usd": None, "tokens": 10.0, "seconds": None, "calls": 2}
    assert decode_request("rlm_query", {"prompt": "p", "context": None, "budget": budget}) == (
        RlmQuery("p", budget=BudgetLimits(tokens=10, calls=2))
    )
    assert decode_request("tool", {"name": "t"}) == ToolCall("t")
    assert decode_request("rlm_batch", {"prompts": ["a"], "contexts": None}) == RlmBatch(("a",))


# -- malformed frames ----------------------------------------------------------------------
BAD_FRAMES = {
    "not JSON": b"{not json",
    "not UTF-8 either": b"\xff\xfe\x00",
    "empty": b"",
    "a JSON array": raw([1, 2]),
    "a JSON string": raw("run"),
    "no op": raw({"code": "1"}),
    "an unknown op": raw({"op": "exec", "code": "1"}),
    "an op that is not a str": raw({"op": 1}),
    "run without code": raw({"op": "run"}),
    "run with int code": raw({"op": "run", "code": 1}),
    "reply without id": raw({"op": "reply", "ok": 1}),
    "reply with str id": raw({"op": "reply", "id": "1", "ok": 1}),
    "reply with bool id": raw({"op": "reply", "id": True, "ok": 1}),
    "reply with float id": raw({"op": "reply", "id": 1.0, "ok": 1}),
    "reply with int error": raw({"op": "reply", "id": 1, "error": 500}),
    "hello without pid": raw({"op": "hello"}),
    "hello with str pid": raw({"op": "hello", "pid": "12"}),
    "hello with str context_s": raw({"op": "hello", "pid": 1, "context_s": "fast"}),
    "hello with list limits": raw({"op": "hello", "pid": 1, "limits": []}),
    "call without id": raw({"op": "call", "name": "budget", "payload": {}}),
    "call with int name": raw({"op": "call", "id": 1, "name": 3, "payload": {}}),
    "call without payload": raw({"op": "call", "id": 1, "name": "budget"}),
    "call with list payload": raw({"op": "call", "id": 1, "name": "budget", "payload": []}),
    "result with int output": raw({"op": "result", "output": 1}),
    "result with list error": raw({"op": "result", "error": ["x"]}),
    "result with int final": raw({"op": "result", "final": 123}),
    "result with bool final": raw({"op": "result", "final": True}),
    "result with dict final": raw({"op": "result", "final": {"a": 1}}),
    "result with str duration": raw({"op": "result", "duration_s": "1s"}),
    "result with bool duration": raw({"op": "result", "duration_s": True}),
    "result with a huge duration": b'{"op": "result", "duration_s": 1' + b"0" * 400 + b"}",
    "result with str interrupted": raw({"op": "result", "interrupted": "yes"}),
    "nested too deeply": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("data", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_malformed_frame_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(data)


def test_an_oversize_frame_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProtocolError, match="over the"):
        frame_length(b"\x7f\xff\xff\xff")
    with pytest.raises(ProtocolError, match="over the"):
        frame_length((101).to_bytes(4, "big"), limit=100)
    assert frame_length((100).to_bytes(4, "big"), limit=100) == 100
    monkeypatch.setattr(protocol, "MAX_FRAME_BYTES", 64)
    with pytest.raises(ProtocolError, match="over the"):
        encode_frame(CellDone(output="x" * 100))


def test_a_value_that_is_not_json_cannot_be_encoded() -> None:
    with pytest.raises(TypeError):
        encode_frame(Reply(1, ok={1, 2}))


# -- malformed requests --------------------------------------------------------------------
BAD_REQUESTS: dict[str, tuple[Any, Any]] = {
    "an unknown function": ("rm_rf", {}),
    "a name that is not a str": (3, {}),
    "a payload that is not a dict": ("budget", []),
    "llm_query without prompt": ("llm_query", {}),
    "llm_query with a None prompt": ("llm_query", {"prompt": None}),
    "llm_query with an int prompt": ("llm_query", {"prompt": 1}),
    "llm_query with a list prompt": ("llm_query", {"prompt": ["a"]}),
    "llm_query with an int model": ("llm_query", {"prompt": "p", "model": 3}),
    "llm_query with a bool model": ("llm_query", {"prompt": "p", "model": True}),
    "llm_query with a long model": ("llm_query", {"prompt": "p", "model": "m" * 257}),
    "llm_query with an int group": ("llm_query", {"prompt": "p", "group": 1}),
    "llm_query with images not a list": ("llm_query", {"prompt": "p", "images": "img"}),
    "llm_query with a raw image": ("llm_query", {"prompt": "p", "images": ["aGk="]}),
    "llm_query with an image without data": (
        "llm_query",
        {"prompt": "p", "images": [{"__recursa_image__": "image/png"}]},
    ),
    "llm_batch without prompts": ("llm_batch", {}),
    "llm_batch with a str for prompts": ("llm_batch", {"prompts": "abc"}),
    "llm_batch with an int prompt": ("llm_batch", {"prompts": ["a", 2]}),
    "llm_batch with a None prompt": ("llm_batch", {"prompts": [None]}),
    "llm_batch with an int model": ("llm_batch", {"prompts": ["a"], "model": 1}),
    "rlm_query with an int prompt": ("rlm_query", {"prompt": 5}),
    "rlm_query with a str budget": ("rlm_query", {"prompt": "p", "budget": "cheap"}),
    "rlm_query with a list budget": ("rlm_query", {"prompt": "p", "budget": [1]}),
    "rlm_query with a bool in budget": ("rlm_query", {"prompt": "p", "budget": {"calls": True}}),
    "rlm_query with a str in budget": ("rlm_query", {"prompt": "p", "budget": {"usd": "1"}}),
    "rlm_query with zero in budget": ("rlm_query", {"prompt": "p", "budget": {"usd": 0}}),
    "rlm_query with a negative budget": ("rlm_query", {"prompt": "p", "budget": {"calls": -1}}),
    "rlm_query with NaN in budget": ("rlm_query", {"prompt": "p", "budget": {"usd": float("nan")}}),
    "rlm_query with inf in budget": ("rlm_query", {"prompt": "p", "budget": {"tokens": 1e999}}),
    "rlm_query with half a call": ("rlm_query", {"prompt": "p", "budget": {"calls": 2.5}}),
    "rlm_query with an unknown budget field": ("rlm_query", {"prompt": "p", "budget": {"gpu": 1}}),
    "rlm_batch with an int prompt": ("rlm_batch", {"prompts": [1]}),
    "rlm_batch with a dict for contexts": ("rlm_batch", {"prompts": ["a"], "contexts": {}}),
    "rlm_batch with too few contexts": ("rlm_batch", {"prompts": ["a", "b"], "contexts": ["c"]}),
    "rlm_query with an int model": ("rlm_query", {"prompt": "p", "model": 3}),
    "rlm_query with a URL for model": ("rlm_query", {"prompt": "p", "model": "http://x/y"}),
    "rlm_batch with a path for model": ("rlm_batch", {"prompts": ["a"], "model": "a/../../b"}),
    "cancel without group": ("cancel", {}),
    "cancel with an int group": ("cancel", {"group": 7}),
    "tool without name": ("tool", {"args": []}),
    "tool with an int name": ("tool", {"name": 1}),
    "tool with a long name": ("tool", {"name": "t" * 300}),
    "tool with a dict for args": ("tool", {"name": "t", "args": {"a": 1}}),
    "tool with a list for kwargs": ("tool", {"name": "t", "kwargs": [1]}),
}


@pytest.mark.parametrize("call", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_malformed_request_is_a_protocol_error(call: tuple[Any, Any]) -> None:
    with pytest.raises(ProtocolError):
        decode_request(*call)


def test_a_batch_too_large_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_BATCH", 3)
    assert decode_request("llm_batch", {"prompts": ["a"] * 3}) == LlmBatch(("a",) * 3)
    with pytest.raises(ProtocolError, match="more than 3 prompts"):
        decode_request("llm_batch", {"prompts": ["a"] * 4})


def test_errors_say_what_was_wrong() -> None:
    with pytest.raises(ProtocolError, match="llm_query: 'prompt' must be str, not int"):
        decode_request("llm_query", {"prompt": 1})
    with pytest.raises(ProtocolError, match="unknown host function 'rm_rf'"):
        decode_request("rm_rf", {})
    with pytest.raises(ProtocolError, match="result: 'final' must be str, not int"):
        decode_frame(raw({"op": "result", "final": 1}))


# -- the host's end of the channel, in memory ----------------------------------------------
class Peer:
    """The worker's end of a socketpair whose other end is a WorkerLink."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send_raw(self, data: bytes) -> None:
        self.writer.write(len(data).to_bytes(4, "big") + data)

    def send(self, frame: Frame) -> None:
        self.writer.write(encode_frame(frame))

    async def recv(self) -> Frame:
        frame = await asyncio.wait_for(read_frame(self.reader), 5)
        assert frame is not None
        return frame


@contextlib.asynccontextmanager
async def linked(host: Any) -> AsyncIterator[tuple[WorkerLink, Peer]]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    link = WorkerLink(reader, writer, host)
    peer = Peer(*await asyncio.open_unix_connection(sock=theirs))
    try:
        yield link, peer
    finally:
        await link.aclose()
        peer.writer.close()
        with contextlib.suppress(OSError):
            await peer.writer.wait_closed()


unix = pytest.mark.skipif(sys.platform == "win32", reason="unix sockets")


@unix
async def test_a_request_that_does_not_decode_is_answered_with_an_error() -> None:
    host = FakeHost()
    async with linked(host) as (link, peer):
        peer.send(Call(1, "llm_query", {"prompt": 42}))
        assert await peer.recv() == Reply(1, error="llm_query: 'prompt' must be str, not int")
        peer.send(Call(2, "budget", {"extra": "ignored"}))
        assert await peer.recv() == Reply(2, ok={"usd": 1.0, "calls": 10})
        peer.send(Call(3, "nope", {}))
        assert await peer.recv() == Reply(3, error="unknown host function 'nope'")
        peer.send(Call(4, "llm_query", {"prompt": "hi"}))
        assert await peer.recv() == Reply(4, ok="echo:hi")
        assert host.requests == [BudgetQuery(), LlmQuery("hi")]  # nothing ill-typed got in
        assert link.gone is None and not link.broken


@unix
async def test_a_host_failure_or_a_non_json_answer_is_an_error_reply() -> None:
    async def host(request: HostRequest) -> Any:
        if isinstance(request, LlmQuery):
            raise RuntimeError("the model refused")
        return {1, 2}  # not JSON

    async with linked(host) as (_, peer):
        peer.send(Call(1, "llm_query", {"prompt": "p"}))
        assert await peer.recv() == Reply(1, error="the model refused")
        peer.send(Call(2, "budget", {}))
        reply = await peer.recv()
        assert isinstance(reply, Reply) and reply.error and "JSON serializable" in reply.error


UNDECODABLE = {
    "garbage": b"\x00\x01garbage",
    "an unknown op": raw({"op": "shutdown"}),
    "an ill-typed final": raw({"op": "result", "output": "", "final": 123}),
    "an ill-typed output": raw({"op": "result", "output": ["forged"]}),
    "a frame only the host sends": raw({"op": "run", "code": "1"}),
    "a second hello": raw({"op": "hello", "pid": 1}),
}


@unix
@pytest.mark.parametrize("data", UNDECODABLE.values(), ids=UNDECODABLE.keys())
async def test_a_frame_that_does_not_decode_ends_the_channel_with_a_reason(data: bytes) -> None:
    async with linked(FakeHost()) as (link, peer):
        future = link.run("x = 1")
        assert await peer.recv() == RunCell("x = 1")
        peer.send_raw(data)
        with pytest.raises(WorkerGone, match="protocol error"):
            await asyncio.wait_for(future, 5)
        assert link.broken and link.gone is not None and link.gone.startswith("protocol error")
        with pytest.raises(WorkerGone):  # a later cell fails at once, nothing hangs
            await link.run("y = 2")


@unix
async def test_a_result_nobody_asked_for_ends_the_channel() -> None:
    async with linked(FakeHost()) as (link, peer):
        peer.send(CellDone(output="forged"))
        await asyncio.wait_for(link.ended.wait(), 5)
        assert link.broken and "unexpected message 'result'" in (link.gone or "")


# -- a real worker breaking the protocol ---------------------------------------------------
def write_frame(payload: str) -> str:
    """Model code that writes one frame with body ``payload`` (a bytes expression) to the
    worker's channel, then waits for the host to notice."""
    return (
        "import json, os, sys, time\n"
        "fd = json.loads(sys.argv[1])['channel']['fd']\n"
        f"body = {payload}\n"
        "os.write(fd, len(body).to_bytes(4, 'big') + body)\n"
        "time.sleep(30)"
    )


GARBAGE = {
    "not JSON": "b'this is not json'",
    "an unknown op": "json.dumps({'op': 'exec', 'code': 'x'}).encode()",
    "an ill-typed final": "json.dumps({'op': 'result', 'output': '', 'final': 123}).encode()",
    "an ill-typed output": "json.dumps({'op': 'result', 'output': {'a': 1}}).encode()",
    "a call with a str id": "json.dumps({'op': 'call', 'id': 'x', 'name': 'budget', "
    "'payload': {}}).encode()",
    "nested too deeply": "b'[' * 200000 + b']' * 200000",
}

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


@linux
@pytest.mark.parametrize("payload", GARBAGE.values(), ids=GARBAGE.keys())
async def test_a_worker_writing_garbage_is_replaced_and_the_run_goes_on(payload: str) -> None:
    host = FakeHost()
    async with started("subprocess", host=host) as sb:
        await sb.run("x = 1", timeout=T)
        result = await sb.run(write_frame(payload), timeout=T)
        assert result.restarted and result.final is None
        assert result.error is not None
        assert "broke the channel (protocol error:" in result.error
        assert "all variables were lost" in result.error
        after = await sb.run("x", timeout=T)
        assert after.error is not None and "NameError" in after.error
        assert (await sb.run("llm_query('still')", timeout=T)).output == "echo:still\n"
        assert host.requests == [LlmQuery("still")]


@linux
async def test_an_oversize_frame_from_the_worker_is_survived() -> None:
    async with started("subprocess") as sb:
        code = (
            "import json, os, sys, time\n"
            "fd = json.loads(sys.argv[1])['channel']['fd']\n"
            "os.write(fd, (2**31).to_bytes(4, 'big'))\n"
            "time.sleep(30)"
        )
        result = await sb.run(code, timeout=T)
        assert result.restarted and "over the" in (result.error or "")
        assert (await sb.run("'ok'", timeout=T)).output == "ok\n"


@linux
async def test_a_forged_call_that_does_not_decode_gets_an_error_and_the_cell_goes_on() -> None:
    host = FakeHost()
    async with started("subprocess", host=host) as sb:
        await sb.run("kept = 'yes'", timeout=T)
        code = (
            "import json, os, sys, time\n"
            "fd = json.loads(sys.argv[1])['channel']['fd']\n"
            "body = json.dumps({'op': 'call', 'id': 10**6, 'name': 'llm_query',\n"
            "                   'payload': {'prompt': 1, 'model': 2}}).encode()\n"
            "os.write(fd, len(body).to_bytes(4, 'big') + body)\n"
            "time.sleep(0.3)\n"
            "print(llm_query('after'))"
        )
        result = await sb.run(code, timeout=T)
        assert (result.output, result.error, result.restarted) == ("echo:after\n", None, False)
        assert host.requests == [LlmQuery("after")]
        assert (await sb.run("kept", timeout=T)).output == "yes\n"


# -- ill-typed calls: the same checks in every backend -------------------------------------
ILL_TYPED = {
    "a non-str prompt": (
        "llm_query.__self__.call_host('llm_query', {'prompt': 1})",
        "llm_query: 'prompt' must be str, not int",
    ),
    "an int model": ("llm_query('x', model=3)", "llm_query: 'model' must be str, not int"),
    "a bool in budget": (
        "rlm_query('x', budget=Budget(calls=True))",
        "rlm_query: budget 'calls' must be a number",
    ),
    "NaN in budget": (
        "rlm_query('x', budget=Budget(usd=float('nan')))",
        "rlm_query: budget 'usd' must be a finite number",
    ),
    "a budget that is not one": (
        "rlm_query('x', budget='cheap')",
        "rlm_query: budget must be a Budget(...) or a dict",
    ),
    "an int model in a batch": (
        "llm_batch(['a'], model=7)",
        "llm_batch: 'model' must be str, not int",
    ),
    "an unknown host function": (
        "llm_query.__self__.call_host('rm_rf', {})",
        "unknown host function 'rm_rf'",
    ),
    "a cancel without group": (
        "llm_query.__self__.call_host('cancel', {})",
        "cancel: missing 'group'",
    ),
    "a list for a payload": ("llm_query.__self__.call_host('budget', [1])", ""),
    "an int for a name": ("llm_query.__self__.call_host(5, {})", ""),
}


async def raises_host_call_error(sb: Sandbox, call: str) -> str:
    code = f"try:\n    {call}\nexcept Exception as e:\n    print(type(e).__name__, '|', e)"
    result = await sb.run(code, timeout=T)
    assert result.error is None and not result.restarted, result.error
    name, _, message = result.output.strip().partition(" | ")
    assert name == "HostCallError", result.output
    return message


@pytest.mark.parametrize("backend", ["subprocess", "inprocess"])
@pytest.mark.parametrize("case", ILL_TYPED.values(), ids=ILL_TYPED.keys())
async def test_an_ill_typed_call_is_a_host_call_error(backend: str, case: tuple[str, str]) -> None:
    if backend == "subprocess" and not sys.platform.startswith("linux"):
        pytest.skip("Linux sandbox")
    call, expected = case
    host = FakeHost()
    async with started(backend, host=host) as sb:
        await sb.run("kept = 1", timeout=T)
        message = await raises_host_call_error(sb, call)
        assert expected in message
        assert host.requests == []  # the host never saw it
        assert (await sb.run("kept, llm_query('ok')", timeout=T)).output == "(1, 'echo:ok')\n"
