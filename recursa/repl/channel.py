"""The host's end of the worker channel: reading frames, serving the REPL's calls, results.

The frames and their checks are :mod:`recursa.repl.protocol` (the worker's side is
:mod:`recursa.repl.worker`). The transport is whatever asyncio stream pair the sandbox
opened: a private ``socketpair`` for the subprocess sandbox, stdin/stdout pipes for
Docker. Never a TCP port.

The worker is an untrusted peer. A frame that does not decode ends the channel (the
sandbox kills the worker and says why in the cell's error); a call whose request does
not decode is answered with an error and the channel goes on.

The host's memory is bounded per sandbox, not only per frame: the bytes of every frame
being read or served (a call's frame is held until its reply is sent) count against
:data:`MAX_INFLIGHT_BYTES`. A call that would go over it is read off the channel in
small pieces without being held, and answered with an error (:data:`BUSY`); the REPL
raises ``HostCallError`` and may retry once its other calls are answered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import re
from typing import Any

from .base import HostCallback
from .protocol import (
    HEADER_BYTES,
    MAX_FRAME_BYTES,
    Call,
    CellDone,
    Frame,
    ProtocolError,
    Reply,
    RunCell,
    decode_frame,
    decode_request,
    encode_frame,
    frame_length,
)

#: The error a call gets when its cell is interrupted while the host is serving it.
CANCELLED = "cancelled: the cell was interrupted"
#: The most bytes of one sandbox's frames the host holds at once (calls being served, the
#: frame being read); :class:`WorkerLink` takes another limit as ``max_inflight``.
MAX_INFLIGHT_BYTES = 256 * 1024 * 1024
#: The error a call gets when it would take the host over that limit.
BUSY = (
    "refused: this request ({size:,} bytes) would take the host over the {limit:,} bytes "
    "it holds for one sandbox ({held:,} held by calls in flight); send fewer or smaller "
    "requests at once"
)
#: Frames are read in pieces of this size, so reading one never holds it twice.
READ_CHUNK = 1 << 20
#: A frame that is not a call and no larger than this is read even over the limit (a
#: cell's result must not be lost while its threads' calls are in flight).
SMALL_FRAME = 1 << 20
# A worker's Call frame starts with its id (the dataclass field order; see protocol.py):
# enough to answer a call that is refused unread.
_CALL_ID = re.compile(rb'\{"id":(\d{1,18}),"name":')
_HEAD = b'{"id":123456789012345678,"name":'


class WorkerGone(Exception):
    """The channel to the worker closed: the worker exited, crashed, or broke the protocol."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME_BYTES) -> Frame | None:
    """The next frame, or None at a clean end of stream; :class:`ProtocolError` if it does
    not decode."""
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("the stream ended inside a frame header") from None
        return None
    try:
        body = await reader.readexactly(frame_length(header, limit))
    except asyncio.IncompleteReadError:
        raise ProtocolError("the stream ended inside a frame") from None
    return decode_frame(body)


def _error_frame(call_id: int, message: str) -> bytes:
    try:
        return encode_frame(Reply(call_id, error=message))
    except ProtocolError:  # a message over the frame limit
        return encode_frame(Reply(call_id, error=message[:10_000] + " [message truncated]"))


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
        max_inflight: int | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host
        self._max_frame = max_frame
        self._max_inflight = MAX_INFLIGHT_BYTES if max_inflight is None else max_inflight
        self.held = 0  # bytes of the frames being read or served now
        self.peak_held = 0
        self.refused = 0  # calls refused for the in-flight limit
        self._results: collections.deque[asyncio.Future[CellDone]] = collections.deque()
        self._calls: set[asyncio.Task[None]] = set()
        self.gone: str | None = None  # why the channel ended, once it has
        self.broken = False  # the worker broke the protocol (it may still be running)
        self.ended = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    def run(self, code: str) -> asyncio.Future[CellDone]:
        """Send one cell; the future resolves to its :class:`CellDone` or fails with
        :class:`WorkerGone`."""
        future: asyncio.Future[CellDone] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        if self.gone is not None:
            future.set_exception(WorkerGone(self.gone))
            return future
        self._results.append(future)
        self._writer.write(encode_frame(RunCell(code)))
        return future

    async def _read_loop(self) -> None:
        reason = "the channel closed"
        try:
            while True:
                try:
                    header = await self._reader.readexactly(HEADER_BYTES)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        raise ProtocolError("the stream ended inside a frame header") from None
                    break
                size = frame_length(header, self._max_frame)
                head = await self._read_into(b"", min(len(_HEAD), size))
                call = _CALL_ID.match(bytes(head))
                # a small frame that is not a call (a cell's result) is always read
                if self.held + size > self._max_inflight and (call or size > SMALL_FRAME):
                    await self._refuse(size, len(head), call)
                    continue
                self._hold(size)
                try:
                    body = await self._read_into(head, size)
                    text = body.decode("utf-8", "replace")
                    del body  # hold the frame once at a time: bytes, text, values
                    frame = decode_frame(text)
                    del text
                except BaseException:
                    self._release(size)
                    raise
                if isinstance(frame, Call):
                    task = asyncio.get_running_loop().create_task(self._serve(frame))
                    self._calls.add(task)
                    task.add_done_callback(self._calls.discard)
                    task.add_done_callback(functools.partial(self._released, size))
                    continue
                self._release(size)
                if isinstance(frame, CellDone) and self._results:
                    future = self._results.popleft()
                    if not future.done():
                        future.set_result(frame)
                else:
                    raise ProtocolError(f"unexpected message {frame.op!r}")
        except ProtocolError as exc:
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

    def _hold(self, size: int) -> None:
        self.held += size
        self.peak_held = max(self.peak_held, self.held)

    def _release(self, size: int) -> None:
        self.held -= size

    def _released(self, size: int, _task: asyncio.Task[None]) -> None:
        self._release(size)

    async def _read_into(self, head: bytes | bytearray, size: int) -> bytearray:
        """The ``size`` bytes of a frame's body that begins with ``head``, read in pieces
        into one buffer of that size (never held twice)."""
        body = bytearray(size)
        body[: len(head)] = head
        pos = len(head)
        try:
            while pos < size:
                chunk = await self._reader.readexactly(min(READ_CHUNK, size - pos))
                body[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
        except asyncio.IncompleteReadError:
            raise ProtocolError("the stream ended inside a frame") from None
        return body

    async def _refuse(self, size: int, read: int, call: re.Match[bytes] | None) -> None:
        """Read a frame that does not fit off the channel without holding it (``read`` of
        its bytes are read already); answer it with :data:`BUSY` if it is a call (the REPL
        goes on), else it is a protocol error."""
        held = self.held
        if call is None:  # the channel ends: no need to read the rest
            raise ProtocolError(
                f"a frame of {size:,} bytes would take the host over its "
                f"{self._max_inflight:,}-byte limit for one sandbox"
            )
        left = size - read
        try:
            while left:
                left -= len(await self._reader.readexactly(min(READ_CHUNK, left)))
        except asyncio.IncompleteReadError:
            raise ProtocolError("the stream ended inside a frame") from None
        self.refused += 1
        message = BUSY.format(size=size, limit=self._max_inflight, held=held)
        if self._send(_error_frame(int(call.group(1)), message)):
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.drain()

    async def _serve(self, call: Call) -> None:
        try:
            # a request that does not decode is answered like a failed call: the REPL
            # raises HostCallError with the reason, and the channel goes on
            value = await self._host(decode_request(call.name, call.payload))
            frame = encode_frame(Reply(call.id, ok=value))
        except asyncio.CancelledError:  # the cell was interrupted: free whoever waits
            self._send(encode_frame(Reply(call.id, error=CANCELLED)))
            raise
        except Exception as exc:  # the REPL raises HostCallError with this message
            frame = _error_frame(call.id, str(exc) or type(exc).__name__)
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
