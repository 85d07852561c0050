"""The viewer's local server: loopback only, fresh reads, no way out of its directory."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

import recursa.viewer
from recursa.viewer import TraceServer, make_server, serve
from recursa.viewer.server import read_chunk, run_summary

Start = Callable[[Path], tuple[TraceServer, str]]


def get(url: str, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        headers = {"Host": host} if host else {}
        conn.request("GET", path, headers=headers)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def get_json(url: str, path: str) -> tuple[int, Any]:
    status, headers, body = get(url, path)
    assert headers["content-type"].startswith("application/json")
    return status, json.loads(body)


def test_binds_loopback_only(depth2_trace: Path) -> None:
    server, url = make_server(depth2_trace, 0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert url == f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.server_close()


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such trace"):
        make_server(tmp_path / "nope.jsonl", 0)


def test_page_and_static_files(depth2_trace: Path, serve_path: Start) -> None:
    _, url = serve_path(depth2_trace)
    status, headers, body = get(url, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b'src="/static/app.js"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    for name, ctype in [("app.js", "javascript"), ("style.css", "text/css")]:
        status, headers, body = get(url, f"/static/{name}")
        assert status == 200 and ctype in headers["content-type"] and body
    # nothing but the shipped files: no server source, no traversal, no CDN
    for path in ["/static/../server.py", "/static/%2e%2e/server.py", "/static/x.js", "/nope"]:
        assert get(url, path)[0] == 404
    page = b"".join(get(url, p)[2] for p in ["/", "/static/app.js", "/static/style.css"])
    assert b"http://" not in page.replace(b"http://127.0.0.1", b"") and b"https://" not in page


def test_trace_events_and_malformed_line_warning(
    tmp_path: Path, serve_path: Start, traces: Any
) -> None:
    builder = traces.build_depth2()
    path = builder.write(tmp_path / "run.jsonl", malformed_after=6)
    _, url = serve_path(path)
    status, data = get_json(url, "/api/trace?run=run.jsonl")
    assert status == 200
    assert [e["type"] for e in data["events"]] == [e["type"] for e in builder.events]
    assert len(data["warnings"]) == 1 and data["warnings"][0].startswith("line 7: not JSON")
    assert data["pending"] == 0 and data["offset"] == path.stat().st_size
    # a file path serves its one run without naming it
    status, again = get_json(url, "/api/trace")
    assert status == 200 and len(again["events"]) == len(builder.events)


def test_trace_is_reread_and_incremental(tmp_path: Path, serve_path: Start, traces: Any) -> None:
    events = traces.build_depth2().events
    lines = [json.dumps(e) + "\n" for e in events]
    path = tmp_path / "live.jsonl"
    path.write_text("".join(lines[:5]) + lines[5][:20], encoding="utf-8")  # mid-line
    _, url = serve_path(path)
    status, first = get_json(url, "/api/trace?run=live.jsonl")
    assert len(first["events"]) == 5 and first["warnings"] == [] and first["pending"] == 20
    with path.open("a", encoding="utf-8") as fh:
        fh.write(lines[5][20:] + "".join(lines[6:]))
    status, rest = get_json(
        url, f"/api/trace?run=live.jsonl&offset={first['offset']}&line={first['line']}"
    )
    assert status == 200 and not rest["reset"]
    assert len(rest["events"]) == len(events) - 5 and rest["events"][-1]["type"] == "run_end"
    # a file rewritten shorter than the offset is read again from the start
    path.write_text(lines[0], encoding="utf-8")
    status, reset = get_json(url, f"/api/trace?run=live.jsonl&offset={rest['offset']}&line=9")
    assert reset["reset"] and len(reset["events"]) == 1
    assert get_json(url, "/api/trace?run=live.jsonl&offset=x")[0] == 400


@pytest.mark.parametrize(
    "run",
    ["../secret.jsonl", "/etc/passwd", "..%2Fsecret.jsonl", "runs/../../secret.jsonl",
     "notes.txt", ".", "a", "a.jsonl/../b.jsonl"],
)  # fmt: skip
def test_path_traversal_is_refused(
    tmp_path: Path, serve_path: Start, traces: Any, run: str
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    traces.write_depth2(runs / "a.jsonl")
    (runs / "notes.txt").write_text("not a trace")
    traces.write_depth2(tmp_path / "secret.jsonl")
    _, url = serve_path(runs)
    status, data = get_json(url, "/api/trace?run=" + quote(run, safe="%/"))
    assert status == 404 and "events" not in data


def test_foreign_host_header_is_refused(depth2_trace: Path, serve_path: Start) -> None:
    _, url = serve_path(depth2_trace)
    assert get(url, "/api/runs", host="attacker.example:80")[0] == 403
    assert get(url, "/api/runs", host=f"localhost:{urlsplit(url).port}")[0] == 200


def test_directory_lists_runs_newest_first(tmp_path: Path, serve_path: Start, traces: Any) -> None:
    old = traces.write_big(tmp_path / "old.jsonl", n_events=300)
    events = traces.build_depth2().events
    live = tmp_path / "live.jsonl"
    live.write_text("".join(json.dumps(e) + "\n" for e in events[:8]), encoding="utf-8")
    (tmp_path / "junk.jsonl").write_text("not json\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("# runs\n", encoding="utf-8")
    os.utime(old, (1_700_000_000, 1_700_000_000))
    os.utime(tmp_path / "junk.jsonl", (1_600_000_000, 1_600_000_000))
    _, url = serve_path(tmp_path)
    status, data = get_json(url, "/api/runs")
    assert status == 200 and data["directory"] is True
    assert [r["name"] for r in data["runs"]] == ["live.jsonl", "old.jsonl", "junk.jsonl"]
    by_name = {r["name"]: r for r in data["runs"]}
    assert by_name["live.jsonl"]["status"] == "unfinished"
    assert by_name["live.jsonl"]["query"].startswith("Which cities")
    assert by_name["old.jsonl"]["status"] == "stopped: iterations"
    assert by_name["old.jsonl"]["cost_usd"] > 0
    assert by_name["junk.jsonl"]["status"] == "unreadable"
    status, trace = get_json(url, "/api/trace?run=old.jsonl")
    assert status == 200 and trace["events"][-1]["type"] == "run_end"


def test_file_mode_lists_just_that_file(depth2_trace: Path, serve_path: Start) -> None:
    _, url = serve_path(depth2_trace)
    status, data = get_json(url, "/api/runs")
    assert status == 200 and data["directory"] is False
    assert [(r["name"], r["status"]) for r in data["runs"]] == [("depth2.jsonl", "done")]
    assert data["runs"][0]["answer"] == "{'Rotterdam': 2, 'Hamburg': 1, 'Lyon': 0}"


def test_read_chunk_edge_cases(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        b'{"v":1,"type":"cell","t":NaN}\n'
        b"\n"
        b'["not", "an", "event"]\n'
        b'{"type":"weird"}\n'
        b'{"v":1,"type":"node_end","t":1.0,"answer":"caf\xc3\xa9"}'  # last line, no newline
    )
    chunk = read_chunk(path)
    assert [e["type"] for e in chunk.events] == ["cell", "node_end"]
    assert chunk.events[0]["t"] is None  # NaN is not JSON: the browser could not read it
    assert chunk.events[1]["answer"] == "café"
    assert chunk.warnings == [
        "line 3: not a recursa trace event",
        "line 4: not a recursa trace event",
    ]
    assert chunk.pending == 0 and chunk.offset == path.stat().st_size and chunk.line == 5
    summary = run_summary(path)
    assert summary["status"] == "unreadable" and summary["query"] is None


def test_serve_returns_on_ctrl_c(
    depth2_trace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed: list[bool] = []

    def interrupted(self: TraceServer, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    original_close = TraceServer.server_close

    def close(self: TraceServer) -> None:
        closed.append(True)
        original_close(self)

    monkeypatch.setattr(TraceServer, "serve_forever", interrupted)
    monkeypatch.setattr(TraceServer, "server_close", close)
    opened: list[str] = []
    monkeypatch.setattr(recursa.viewer.webbrowser, "open", opened.append)
    serve(depth2_trace, port=0, open_browser=False)
    assert closed == [True] and opened == []
    assert "http://127.0.0.1:" in capsys.readouterr().err
