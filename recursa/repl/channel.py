"""The host's end of the worker channel: reading frames, serving the REPL's calls, results.

The frames and their checks are :mod:`recursa.repl.protocol` (the worker's side is
:mod:`recursa.repl.worker`). The transport is whatever asyncio stream pair the sandbox
opened: a private ``socketpair`` for the subprocess sandbox, stdin/stdout pipes for
Docker. Never a TCP port.

The worker is an untrusted peer. A frame that does not decode ends the channel (the
sandbox kills the worker and says why in the cell's error); a call whose request does
not decode is answered with an error and the channel goes on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host
        self._max_frame = max_frame
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
                frame = await read_frame(self._reader, self._max_frame)
                if frame is None:
                    break
                if isinstance(frame, Call):
                    task = asyncio.get_running_loop().create_task(self._serve(frame))
                    self._calls.add(task)
                    task.add_done_callback(self._calls.discard)
                elif isinstance(frame, CellDone) and self._results:
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
