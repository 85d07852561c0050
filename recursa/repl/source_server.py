"""The host's end of a worker's source channel: descriptors of the files a pack links to.

A pack leaves plain UTF-8 files where they lie (:mod:`recursa.pack`). When model-written
code first reads one, the worker sends its number on a private ``socketpair`` and this
server answers with a read-only descriptor of that file (``SCM_RIGHTS``), opened and
checked by :meth:`recursa.pack.Source.open`: only files in the pack's index, and only
while each is still the file that was checked. The sandbox's namespaces, mounts and
user never matter: the descriptor carries the read. A worker is an untrusted peer, so
a number that is not in this pack gets an error reply, a malformed request ends the
channel, and the server never blocks the event loop (it is a thread of its own).

The socket is ``SOCK_SEQPACKET``: every request and every reply is one whole message,
so a cell interrupted between its request and the reply leaves a whole reply queued,
never half of one. Replies carry their request's number, and the worker drops a reply
that is not for the number it asked for. Both ways little-endian: a request is a u32
source number; a reply is that u32, a u8 status (0: ok, the descriptor attached; 1:
refused), a u16 length and that many bytes of UTF-8 error text.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import threading
from collections.abc import Sequence

from ..pack import Source

REQUEST = struct.Struct("<I")
REPLY = struct.Struct("<IBH")
_MAX_ERROR = 2_000
#: Whether this platform can hand a worker descriptors this way (else the sandbox gets
#: a pack with every text copied in).
AVAILABLE = sys.platform.startswith("linux") and hasattr(socket, "send_fds")


class SourceServer:
    """Serves one worker's requests for its pack's linked files, on a thread."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self._sources = tuple(sources)
        self._sock, self.worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._thread = threading.Thread(target=self._serve, name="recursa-sources", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while len(request := self._sock.recv(64)) == REQUEST.size:
                (number,) = REQUEST.unpack(request)
                self._answer(number)
        with contextlib.suppress(OSError):  # the worker's next request fails at once
            self._sock.shutdown(socket.SHUT_RDWR)

    def _answer(self, number: int) -> None:
        if number >= len(self._sources):
            self._refuse(number, f"no linked file {number} ({len(self._sources):,} in this pack)")
            return
        try:
            fd = self._sources[number].open()
        except OSError as exc:
            self._refuse(number, str(exc))
            return
        try:
            socket.send_fds(self._sock, [REPLY.pack(number, 0, 0)], [fd])
        finally:
            os.close(fd)

    def _refuse(self, number: int, message: str) -> None:
        text = message.encode("utf-8", "replace")[:_MAX_ERROR]
        self._sock.send(REPLY.pack(number, 1, len(text)) + text)

    def close(self) -> None:
        """End the thread (the worker's end closes with the worker)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._sock.close()
        self.worker_end.close()
