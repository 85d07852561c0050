"""A tiny local HTTP server for the trace viewer.

It binds to 127.0.0.1 only, serves the static page shipped in this package and
two JSON endpoints that read trace files fresh on every request, so a run that
is still being written shows its new events when the page refreshes:

``GET /api/runs``
    The runs the viewer was pointed at: every ``*.jsonl`` of a directory,
    newest first, or the one file it was given, each with a short summary
    (query, answer, status, cost) read from its first and last lines.
``GET /api/trace?run=NAME[&offset=BYTES&line=N]``
    The parsed events of one run and a warning per malformed line. With
    ``offset``/``line`` (as returned by the previous answer) only the events
    appended since are sent, which keeps auto-refresh cheap on large traces.

``GET /api/bench``
    For a ``recursa bench`` output directory (``results.jsonl`` and
    ``config.json``; :mod:`recursa.viewer.bench`): its newest row per item and
    method, each naming its trace, and the run's config. The runs on offer are
    then the traces under its ``traces/``.

``run`` must be one of the names ``/api/runs`` lists; anything else (a path,
``..``, another file) is refused. Requests whose ``Host`` is not a loopback
name are refused too, so a web page cannot reach the server through DNS
rebinding.
"""

from __future__ import annotations

import json
import mimetypes
import os
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..events import RunEnd, RunStart, is_event
from ..runs import first_event, last_event
from .bench import BENCH_TRACES, is_bench_dir, read_bench

__all__ = ["TraceServer", "make_server", "read_chunk", "run_summary"]

HOST = "127.0.0.1"
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_SUMMARY_CHARS = 300
_MAX_RUNS = 1000
_MAX_WARNINGS = 200
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


# -- reading traces ------------------------------------------------------------


@dataclass
class Chunk:
    """Events parsed from a byte range of a trace file."""

    events: list[dict[str, Any]]
    warnings: list[str]
    offset: int  # bytes consumed: the next read starts here
    line: int  # complete lines consumed
    pending: int  # bytes of an unfinished last line (the writer is mid-line)
    size: int
    reset: bool  # the file is shorter than the offset asked for: read from 0


def _no_constant(name: str) -> None:
    return None  # NaN and Infinity are not JSON: the browser could not parse them back


def _parse_line(raw: bytes, lineno: int) -> tuple[dict[str, Any] | None, str | None]:
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return None, None
    try:
        event = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        return None, f"line {lineno}: not JSON ({exc.msg})"
    if not is_event(event):
        return None, f"line {lineno}: not a recursa trace event"
    return event, None


def read_chunk(path: Path, offset: int = 0, line: int = 0) -> Chunk:
    """Parse the complete lines of ``path`` from byte ``offset`` on.

    A last line without its newline is left unread (and counted in
    ``pending``) unless it already parses as an event: the writer may be in
    the middle of it. Malformed lines are skipped with a warning naming them.
    """
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        reset = offset > size
        if reset or offset < 0:
            offset, line = 0, 0
        fh.seek(offset)
        data = fh.read()
    events: list[dict[str, Any]] = []
    warnings: list[str] = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            event, _ = _parse_line(data[pos:], line + 1)
            if event is None:
                break  # unfinished: read it next time
            events.append(event)
            line += 1
            pos = len(data)
            break
        line += 1
        event, warning = _parse_line(data[pos:nl], line)
        if event is not None:
            events.append(event)
        elif warning is not None:
            warnings.append(warning)
        pos = nl + 1
    if len(warnings) > _MAX_WARNINGS:
        extra = len(warnings) - _MAX_WARNINGS
        warnings = [*warnings[:_MAX_WARNINGS], f"… and {extra} more malformed lines"]
    return Chunk(events, warnings, offset + pos, line, len(data) - pos, size, reset)


def _short(value: str) -> str:
    return value if len(value) <= _SUMMARY_CHARS else value[:_SUMMARY_CHARS] + "…"


def run_summary(path: Path) -> dict[str, Any]:
    """What the run picker shows about one trace, read from its first and last lines."""
    stat = path.stat()
    start = RunStart.from_dict(first_event(path, "run_start"))
    end = RunEnd.from_dict(last_event(path, "run_end"))
    if end is None:
        status = "unfinished" if start is not None else "unreadable"
    elif end.error:
        status = "error"
    elif end.stopped:
        status = f"stopped: {end.stopped}"
    else:
        status = "done"
    return {
        "name": path.name,
        "size": stat.st_size,
        "mtime": stat.st_mtime,
        "run_id": (start.run_id if start else None) or (end.run_id if end else None) or None,
        "query": _short(start.query) if start and start.query else None,
        "model": (start.model or None) if start else None,
        "answer": _short(end.answer) if end else None,
        "cost_usd": end.cost_usd if end else None,
        "status": status,
        "t": start.t if start else None,
    }


# -- serving -------------------------------------------------------------------


class TraceServer(ThreadingHTTPServer):
    """Serves the viewer for one trace file or a directory of them."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, trace_path: Path, port: int = 0) -> None:
        self.trace_path = trace_path.resolve()
        if not self.trace_path.exists():
            raise FileNotFoundError(f"no such trace file or directory: {trace_path}")
        #: a bench output directory: a grid of its runs, traces from its traces/
        self.bench = is_bench_dir(self.trace_path)
        super().__init__((HOST, port), _Handler)

    @property
    def trace_dir(self) -> Path:
        """Where the traces on offer are: the path, or a bench directory's traces/."""
        return self.trace_path / BENCH_TRACES if self.bench else self.trace_path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def runs(self) -> dict[str, Path]:
        """The trace files on offer, newest first, by the name the page uses."""
        if self.trace_path.is_file():
            return {self.trace_path.name: self.trace_path}
        files: list[tuple[float, Path]] = []
        for p in self.trace_dir.glob("*.jsonl"):
            try:
                if p.is_file():
                    files.append((p.stat().st_mtime, p))
            except OSError:
                continue
        files.sort(key=lambda item: (-item[0], item[1].name))
        return {p.name: p for _, p in files[:_MAX_RUNS]}


def make_server(path: Path, port: int = 0) -> tuple[TraceServer, str]:
    """A bound (not yet serving) server for ``path`` and the URL to open.

    ``port=0`` picks a free port. Call ``serve_forever()`` to serve, then
    ``shutdown()`` and ``server_close()``.
    """
    server = TraceServer(Path(path), port)
    return server, server.url


def _static_files() -> dict[str, Any]:
    root = resources.files(__package__ or "recursa.viewer") / "static"
    return {item.name: item for item in root.iterdir() if item.is_file()}


class _Handler(BaseHTTPRequestHandler):
    server: TraceServer
    server_version = "recursa-viewer"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the terminal belongs to the user

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        if host not in _LOOPBACK_NAMES:
            self._error(HTTPStatus.FORBIDDEN, "this server only answers to 127.0.0.1")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path in ("/", "/index.html"):
                self._static("index.html")
            elif url.path.startswith("/static/"):
                self._static(url.path[len("/static/") :])
            elif url.path == "/api/runs":
                self._api_runs()
            elif url.path == "/api/trace":
                self._api_trace(query)
            elif url.path == "/api/bench":
                self._api_bench()
            else:
                self._error(HTTPStatus.NOT_FOUND, "not found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- responses ---------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, cache: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=str)
        self._send(status, body.encode("utf-8"), "application/json; charset=utf-8", False)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json({"error": message}, status)

    def _static(self, name: str) -> None:
        files = _static_files()  # only names that exist in static/, nothing else
        item = files.get(name)
        if item is None:
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(HTTPStatus.OK, item.read_bytes(), ctype, False)

    def _api_runs(self) -> None:
        runs = []
        for path in self.server.runs().values():
            try:
                runs.append(run_summary(path))
            except OSError:
                continue
        self._json(
            {
                "path": str(self.server.trace_path),
                "directory": self.server.trace_path.is_dir(),
                "bench": self.server.bench,
                "runs": runs,
            }
        )

    def _api_bench(self) -> None:
        if not self.server.bench:
            self._error(HTTPStatus.NOT_FOUND, "not a bench directory (results.jsonl, config.json)")
            return
        try:
            payload = read_bench(self.server.trace_path, set(self.server.runs()))
        except OSError as exc:
            self._error(HTTPStatus.NOT_FOUND, f"cannot read the bench results: {exc.strerror}")
            return
        self._json(payload)

    def _api_trace(self, query: dict[str, list[str]]) -> None:
        runs = self.server.runs()
        name = query.get("run", [None])[0]
        if name is None and len(runs) == 1:
            name = next(iter(runs))
        path = runs.get(name) if name is not None else None
        if path is None:
            # Only names that the listing offers are served: no paths, no "..".
            self._error(HTTPStatus.NOT_FOUND, f"no run named {name!r}")
            return
        try:
            offset = int(query.get("offset", ["0"])[0])
            line = int(query.get("line", ["0"])[0])
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "offset and line must be integers")
            return
        try:
            chunk = read_chunk(path, offset, line)
        except OSError as exc:
            self._error(HTTPStatus.NOT_FOUND, f"cannot read {name}: {exc.strerror}")
            return
        self._json(
            {
                "run": name,
                "events": chunk.events,
                "warnings": chunk.warnings,
                "offset": chunk.offset,
                "line": chunk.line,
                "pending": chunk.pending,
                "size": chunk.size,
                "reset": chunk.reset or offset == 0,
            }
        )
