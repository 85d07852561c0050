"""The worker is an untrusted peer (issue 14): adversarial frames and requests that
``tests/repl/test_protocol.py`` does not cover. Every one is a :class:`ProtocolError`
(never another exception), and the host's end of the channel reports it and survives.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from typing import Any

import pytest

from recursa.repl import channel
from recursa.repl.channel import WorkerLink
from recursa.repl.protocol import (
    Call,
    CellDone,
    Hello,
    HostRequest,
    ProtocolError,
    check_image,
    decode_frame,
    decode_request,
    encode_frame,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "body",
    [
        {"op": "hello", "pid": 1, "limits": {f"k{i}": i for i in range(1000)}},
        {"op": "hello", "pid": 1, "limits": {"cpu_seconds": "x" * 10_000}},
        {"op": "hello", "pid": 1, "limits": {"cpu_seconds": [1, 2]}},
        {"op": "hello", "pid": 1, "limits": {"cpu_seconds": {"nested": 1}}},
        {"op": "hello", "pid": 1, "limits": {"cpu_seconds": 10**40}},
        {"op": "hello", "pid": 1, "limits": {"k" * 1000: 1}},
        {"op": "hello", "pid": -5},
        {"op": "hello", "pid": 2**64},
        {"op": "hello", "pid": True},
        {"op": "hello", "pid": 1, "context_s": -1},
        {"op": "reply", "id": -1, "ok": 1},
        {"op": "reply", "id": 2**64, "ok": 1},
        {"op": "call", "id": 1.5, "name": "budget", "payload": {}},
        {"op": "call", "id": 1, "name": "budget", "payload": None},
        {"op": "result", "interrupted": "yes"},
        {"op": "result", "duration_s": True},
        {"op": "result", "duration_s": 10**400},
    ],
    ids=lambda b: json.dumps(b)[:50],
)
def test_ill_typed_frames_do_not_decode(body: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(json.dumps(body).encode())


@pytest.mark.parametrize(
    "raw",
    [
        b'{"op": "result", "duration_s": NaN}',
        b'{"op": "result", "duration_s": Infinity}',
        b'{"op": "hello", "pid": 1, "context_s": -Infinity}',
        b'{"op": "hello", "pid": 1, "limits": {"cpu_seconds": NaN}}',
    ],
)
def test_non_finite_numbers_in_frames_do_not_decode(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(raw)


def test_a_well_formed_hello_still_decodes() -> None:
    hello = decode_frame(
        json.dumps(
            {"op": "hello", "pid": 42, "context_s": 0.5, "limits": {"cpu_seconds": 3600,
             "processes_not_enforced": "uid 0", "unsupported": True, "memory": None}}
        ).encode()
    )  # fmt: skip
    assert isinstance(hello, Hello) and hello.pid == 42 and hello.limits["cpu_seconds"] == 3600


class Weird:
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        # in-process calls skip JSON: any Python value can arrive
        ("rlm_query", {"prompt": "p", "budget": {1: 2, "x": 3}}),
        ("rlm_query", {"prompt": "p", "budget": {Weird(): 1}}),
        ("tool", {"name": "t", "kwargs": {1: 2}, "args": "not a list"}),
        ("llm_query", {"prompt": "p", "images": [{"__recursa_image__": "image/png"}]}),
        ("llm_query", {"prompt": "p", "images": [{"__recursa_image__": b"x", "base64": "x"}]}),
        ("llm_query", {"prompt": "p", "images": ({"a": 1},)}),
        (b"llm_query", {"prompt": "p"}),
        (Weird(), {}),
        ("llm_query", Weird()),
        # citations are untrusted: bounded in count and size, exact types, no own verdict
        ("cite", {"citations": [{"quote": "q"}] * 65}),
        ("cite", {"citations": [{"quote": "q" * 4001}]}),
        ("cite", {"citations": [{"quote": "q", "verified": True}]}),
        ("cite", {"citations": [{"start": True, "end": 2}]}),
        ("cite", {"citations": [{"start": 1}]}),
        ("cite", {"citations": [{}]}),
        ("cite", {"citations": [{"quote": Weird()}]}),
        ("cite", {"citations": [{"quote": type("S", (str,), {})("q")}]}),
        ("cite", {"citations": [{"quote": "q", "item": "k" * 1001}]}),
        ("cite", {"citations": [{"start": 2**64, "end": 2**65}]}),
        ("cite", {"citations": "q"}),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_ill_typed_requests_are_protocol_errors(name: Any, payload: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_request(name, payload)


@pytest.mark.parametrize(
    ("mime", "data", "reason"),
    [
        ("image/png", "https://attacker.example/x.png", "base64"),
        ("image/png", b64(b"https://attacker.example/"), "not image/png"),
        ("image/png", b64(b"GIF89a..."), "not image/png"),
        ("image/webp", b64(b"RIFF0000NOPE"), "not image/webp"),
        ("image/svg+xml", b64(b"<svg/>"), "must be one of"),
        ("image/png;base64,AAAA", b64(PNG), "must be one of"),
        ("IMAGE/PNG", b64(PNG), "must be one of"),
        ("image/png", b64(PNG) + "\n", "base64"),
        ("image/png", "é" + b64(PNG), "base64"),
        (None, b64(PNG), "must be one of"),
        ("image/png", None, "base64"),
    ],
)
def test_only_checked_image_bytes_make_an_image(mime: Any, data: Any, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason.replace("+", r"\+")):
        check_image(mime, data)


def test_a_checked_image_is_re_encoded_from_its_bytes() -> None:
    assert check_image("image/png", b64(PNG)) == ("image/png", b64(PNG))
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8 "
    assert check_image("image/webp", b64(webp))[0] == "image/webp"


@pytest.mark.parametrize(
    "spec",
    ["openai/https://x.example/v1", "a/../../b", "x y/z", "openai/gpt?x=1", "a/b#c",
     "a/b@c", "a\\b", "/etc/passwd", "openai//x", "a/\nb", ""],
)  # fmt: skip
def test_a_sub_call_model_is_a_name_not_a_url(spec: str) -> None:
    with pytest.raises(ProtocolError):
        decode_request("llm_query", {"prompt": "p", "model": spec or "-"})


@pytest.mark.parametrize(
    "spec",
    ["openai/gpt-5-mini", "openrouter/meta-llama/llama-3.1-8b-instruct:free",
     "ollama/qwen2.5:7b", "local/qwen2.5-coder-0.5b", "litellm/bedrock/anthropic.claude-3",
     "scripted/s", "gpt-4o"],
)  # fmt: skip
def test_model_names_still_decode(spec: str) -> None:
    request: HostRequest = decode_request("llm_query", {"prompt": "p", "model": spec})
    assert getattr(request, "model", None) == spec


# -- the host's end of the channel -------------------------------------------------------
async def _link(**kw: Any) -> tuple[WorkerLink, socket.socket, list[HostRequest]]:
    host_end, worker_end = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=host_end)
    served: list[HostRequest] = []

    async def host(request: HostRequest) -> Any:
        served.append(request)
        await asyncio.sleep(0.3)
        return "ok"

    return WorkerLink(reader, writer, host, **kw), worker_end, served


def _send(sock: socket.socket, body: bytes) -> None:
    sock.sendall(len(body).to_bytes(4, "big") + body)


def _frames(sock: socket.socket, want: int) -> list[dict[str, Any]]:
    """Frames from the host, until the reply to call ``want`` (or 3 s of silence)."""
    sock.settimeout(3)
    data, out = b"", list[dict[str, Any]]()
    while not any(f.get("id") == want for f in out):
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        while len(data) >= 4 and len(data) >= 4 + int.from_bytes(data[:4], "big"):
            n = int.from_bytes(data[:4], "big")
            out.append(json.loads(data[4 : 4 + n]))
            data = data[4 + n :]
    return out


@pytest.mark.parametrize(
    "frame",
    [
        CellDone(output="no cell was sent"),
        Hello(pid=1),
        Hello(pid=2),
    ],
)
async def test_a_frame_out_of_turn_ends_the_channel_cleanly(frame: Any) -> None:
    link, worker, _ = await _link()
    try:
        _send(worker, encode_frame(frame)[4:])
        await asyncio.wait_for(link.ended.wait(), 5)
        assert link.broken and link.gone is not None and "unexpected" in link.gone
        result = await asyncio.wait_for(asyncio.shield(link.run("1")), 5)
    except Exception as exc:
        assert type(exc).__name__ == "WorkerGone"
    else:
        pytest.fail(f"a cell on a broken channel resolved: {result}")
    finally:
        await link.aclose()
        worker.close()


async def test_a_call_over_the_in_flight_limit_is_refused_not_held() -> None:
    link, worker, served = await _link(max_inflight=1000)
    try:
        big = encode_frame(Call(7, "llm_query", {"prompt": "x" * 600}))[4:]
        _send(worker, big)  # held while the host serves it (0.3 s)
        _send(worker, encode_frame(Call(8, "llm_query", {"prompt": "y" * 600}))[4:])
        replies = await asyncio.to_thread(_frames, worker, 8)
        refused = [r for r in replies if r["id"] == 8]
        assert refused and "refused" in refused[0]["error"]
        assert link.held <= 1000 and link.peak_held <= 1000 and link.refused == 1
        assert not link.broken
        # once the first is answered, the next fits again
        await asyncio.sleep(0.5)
        _send(worker, encode_frame(Call(9, "budget", {}))[4:])
        assert any(
            r["id"] == 9 and r.get("ok") == "ok"
            for r in await asyncio.to_thread(_frames, worker, 9)
        )
        assert [type(r).__name__ for r in served] == ["LlmQuery", "BudgetQuery"]
    finally:
        await link.aclose()
        worker.close()


async def test_a_large_non_call_frame_over_the_limit_is_a_protocol_error() -> None:
    link, worker, _ = await _link(max_inflight=1000)
    try:
        body = json.dumps({"op": "result", "output": "x" * (channel.SMALL_FRAME + 10)})
        sending = asyncio.ensure_future(asyncio.to_thread(_send, worker, body.encode()))
        await asyncio.wait_for(link.ended.wait(), 5)
        await link.aclose()  # the host stopped reading; closing its end ends the send
        await asyncio.gather(sending, return_exceptions=True)
        assert link.broken and "limit" in str(link.gone)
    finally:
        await link.aclose()
        worker.close()
