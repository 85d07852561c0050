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
never half of one. A request asks for up to ``SOURCE_BATCH`` files at once (the one the
code reads and the next ones, which code that reads one file often reads next: one
round trip then serves many reads), and each entry of the reply carries its number, so
the worker files away whatever a reply holds, a late one included. The wire format is
in :mod:`recursa.repl.protocol` (``SOURCE_*``), shared with the worker's end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Sequence

from ..pack import Source
from .protocol import SOURCE_BATCH, SOURCE_ENTRY, SOURCE_HEADER, SOURCE_NUMBER

_MAX_ERROR = 500
_MAX_REQUEST = SOURCE_NUMBER.size * SOURCE_BATCH
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
            while True:
                request = self._sock.recv(_MAX_REQUEST + 1)
                size = len(request)
                if not size or size % SOURCE_NUMBER.size or size > _MAX_REQUEST:
                    break  # the end, or not a request: this channel ends
                self._answer([n for (n,) in SOURCE_NUMBER.iter_unpack(request)])
        with contextlib.suppress(OSError):  # the worker's next request fails at once
            self._sock.shutdown(socket.SHUT_RDWR)

    def _answer(self, numbers: list[int]) -> None:
        parts = [SOURCE_HEADER.pack(len(numbers), len(self._sources))]
        fds: list[int] = []
        try:
            for number in numbers:
                try:
                    if number >= len(self._sources):
                        total = len(self._sources)
                        raise OSError(f"no linked file {number} ({total:,} in this pack)")
                    fds.append(self._sources[number].open())
                except OSError as exc:
                    text = str(exc).encode("utf-8", "replace")[:_MAX_ERROR]
                    parts.append(SOURCE_ENTRY.pack(number, 1, len(text)) + text)
                else:
                    parts.append(SOURCE_ENTRY.pack(number, 0, 0))
            reply = b"".join(parts)
            if fds:
                socket.send_fds(self._sock, [reply], fds)
            else:
                self._sock.send(reply)
        finally:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        """End the thread (the worker's end closes with the worker)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._sock.close()
        self.worker_end.close()
