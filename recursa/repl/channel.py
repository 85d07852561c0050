"""The host's end of the worker channel: framing, serving the REPL's calls, collecting results.

Frames are a 4-byte big-endian length and a UTF-8 JSON object (the worker's side is
in :mod:`recursa.repl.worker`). The transport is whatever asyncio stream pair the
sandbox opened: a private ``socketpair`` for the subprocess sandbox, stdin/stdout
pipes for Docker. Never a TCP port.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from typing import Any

from .base import HostCallback

HEADER_BYTES = 4
#: The largest frame the host accepts from a worker; a bigger one ends the worker.
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: The error a call gets when its cell is interrupted while the host is serving it.
CANCELLED = "cancelled: the cell was interrupted"


class FrameError(Exception):
    """The worker broke the protocol (a frame too large, not JSON, an unknown message)."""


class WorkerGone(Exception):
    """The channel to the worker closed: the worker exited, crashed, or broke the protocol."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    return len(data).to_bytes(HEADER_BYTES, "big") + data


def decode(body: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(body.decode("utf-8", "replace"))
    except ValueError as exc:
        raise FrameError(f"a frame is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise FrameError("a frame is not a JSON object")
    return msg


def frame_length(header: bytes, limit: int = MAX_FRAME_BYTES) -> int:
    size = int.from_bytes(header, "big")
    if size > limit:
        raise FrameError(f"a frame of {size:,} bytes is over the {limit:,}-byte limit")
    return size


async def read_frame(
    reader: asyncio.StreamReader, limit: int = MAX_FRAME_BYTES
) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("the stream ended inside a frame header") from None
        return None
    try:
        body = await reader.readexactly(frame_length(header, limit))
    except asyncio.IncompleteReadError:
        raise FrameError("the stream ended inside a frame") from None
    return decode(body)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # mark it retrieved: abandoned cells must not log noise


class WorkerLink:
    """One live channel: sends cells, serves the worker's calls concurrently, routes results.

    Results come back in the order cells were sent, so a cell abandoned by a cancelled
    ``run`` still consumes its own result and never answers a later cell.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: HostCallback,
        *,
        max_frame: int = MAX_FRAME_BYTES,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host
        self._max_frame = max_frame
        self._results: collections.deque[asyncio.Future[dict[str, Any]]] = collections.deque()
        self._calls: set[asyncio.Task[None]] = set()
        self.gone: str | None = None  # why the channel ended, once it has
        self.broken = False  # the worker broke the protocol (it may still be running)
        self.ended = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    def run(self, code: str) -> asyncio.Future[dict[str, Any]]:
        """Send one cell; the future resolves to its result message or fails with WorkerGone."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        if self.gone is not None:
            future.set_exception(WorkerGone(self.gone))
            return future
        self._results.append(future)
        self._writer.write(encode({"op": "run", "code": code}))
        return future

    async def _read_loop(self) -> None:
        reason = "the channel closed"
        try:
            while True:
                msg = await read_frame(self._reader, self._max_frame)
                if msg is None:
                    break
                op = msg.get("op")
                if op == "call":
                    task = asyncio.get_running_loop().create_task(self._serve(msg))
                    self._calls.add(task)
                    task.add_done_callback(self._calls.discard)
                elif op == "result" and self._results:
                    future = self._results.popleft()
                    if not future.done():
                        future.set_result(msg)
                else:
                    raise FrameError(f"unexpected message {str(op)[:40]!r}")
        except FrameError as exc:
            reason = f"protocol error: {exc}"
            self.broken = True
        except (ConnectionError, OSError) as exc:
            reason = f"the channel failed: {exc}"
        finally:
            self.gone = reason
            while self._results:
                future = self._results.popleft()
                if not future.done():
                    future.set_exception(WorkerGone(reason))
            self.ended.set()

    async def _serve(self, msg: dict[str, Any]) -> None:
        call_id = msg.get("id")
        payload = msg.get("payload")
        try:
            value = await self._host(
                str(msg.get("name")), payload if isinstance(payload, dict) else {}
            )
            frame = encode({"op": "reply", "id": call_id, "ok": value})
        except asyncio.CancelledError:  # the cell was interrupted: free whoever waits
            self._send(encode({"op": "reply", "id": call_id, "error": CANCELLED}))
            raise
        except Exception as exc:  # the REPL raises HostCallError with this message
            message = str(exc) or type(exc).__name__
            frame = encode({"op": "reply", "id": call_id, "error": message})
        if self._send(frame):
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.drain()

    def _send(self, frame: bytes) -> bool:
        if self.gone is not None or self._writer.is_closing():
            return False
        self._writer.write(frame)
        return True

    def cancel_calls(self) -> None:
        """Stop serving the calls in flight (an interrupted cell no longer wants them)."""
        for task in self._calls:
            task.cancel()

    async def aclose(self) -> None:
        """Stop serving and close the transport (the worker sees the end of its channel)."""
        for task in (self._task, *self._calls):
            task.cancel()
        await asyncio.gather(self._task, *self._calls, return_exceptions=True)
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
