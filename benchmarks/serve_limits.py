"""What unauthenticated and stalled clients cost ``recursa serve``, and how fast /health is.

Starts ``python -m recursa serve --api-key KEY`` as a real process (from this checkout, or
from another source tree with ``--tree DIR``, e.g. an older version unpacked with
``git archive``), then measures and prints:

* the server's memory (RSS at rest, and its peak) while ``--bodies`` clients each send a
  64 MB body with a wrong key;
* /health latency (median and worst of 20) while ``--stalled`` connections sit with an
  unfinished request head, and how many of those the server has closed after
  ``--wait`` seconds;
* /health requests per second over keep-alive connections (``--threads`` clients).

    .venv/bin/python benchmarks/serve_limits.py
    git archive HEAD~1 | tar -x -C /tmp/old && .venv/bin/python benchmarks/serve_limits.py --tree /tmp/old
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

KEY = "bench-key"
BODY = 64 * 1024 * 1024


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start(tree: Path | None, extra: list[str]) -> tuple[subprocess.Popen[str], str, int]:
    env = {**os.environ, "OPENAI_API_KEY": "unused"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    proc = subprocess.Popen(
        [sys.executable, "-m", "recursa", "serve", "--port", "0", "--api-key", KEY,
         "--model", "openai/unused", "--base-url", "http://127.0.0.1:9/v1",
         "--sandbox", "inprocess", *extra],
        stderr=subprocess.PIPE, text=True, env=env, cwd="/",
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = re.search(r"serving on http://([\d.]+):(\d+)/v1", line)
    if not found:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining the log
    return proc, found[1], int(found[2])


def unauthenticated_body(host: str, port: int) -> str:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer wrong\r\n"
        f"Content-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
    ).encode()
    chunk = b"x" * (1024 * 1024)
    with socket.create_connection((host, port), timeout=60) as sock:
        try:
            sock.sendall(head)
            for _ in range(BODY // len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # refused and closed before the whole body was sent: the point
        try:
            reply = sock.recv(200)
        except OSError as exc:
            return f"connection {type(exc).__name__}"
    return reply.split(b"\r\n", 1)[0].decode() or "closed"


def health_latency(base: str, n: int = 20) -> list[float]:
    times = []
    with httpx.Client(timeout=30) as http:
        for _ in range(n):
            started = time.perf_counter()
            try:
                http.get(f"{base}/health").raise_for_status()
                times.append(time.perf_counter() - started)
            except httpx.HTTPError:
                times.append(float("inf"))
    return times


def requests_per_second(base: str, seconds: float, threads: int) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                http.get(f"{base}/health")
                counts[i] += 1

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="serve from this source tree (PYTHONPATH)")
    parser.add_argument("--bodies", type=int, default=4)
    parser.add_argument("--stalled", type=int, default=200)
    parser.add_argument("--wait", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("server_args", nargs="*", help="more `recursa serve` options")
    args = parser.parse_args(argv)
    proc, host, port = start(args.tree, args.server_args)
    base = f"http://{host}:{port}"
    try:
        time.sleep(0.5)
        rest, _ = memory_mb(proc.pid)
        with_threads: list[str] = []
        workers = [
            threading.Thread(target=lambda: with_threads.append(unauthenticated_body(host, port)))
            for _ in range(args.bodies)
        ]
        started = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        took = time.monotonic() - started
        now, peak = memory_mb(proc.pid)
        print(f"memory: {rest:.0f} MB at rest -> peak {peak:.0f} MB (now {now:.0f} MB) under "
              f"{args.bodies} unauthenticated 64 MB bodies, answered in {took:.1f}s: "
              f"{sorted(set(with_threads))}")  # fmt: skip

        stalled = []
        for _ in range(args.stalled):
            sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\n")  # never finished
            stalled.append(sock)
        times = health_latency(base)
        print(f"/health with {args.stalled} stalled connections: median "
              f"{statistics.median(times) * 1000:.1f} ms, worst {max(times) * 1000:.1f} ms")  # fmt: skip
        time.sleep(args.wait)
        closed = 0
        for sock in stalled:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
            sock.close()
        print(f"stalled connections closed by the server after {args.wait:g}s: "
              f"{closed}/{args.stalled}")  # fmt: skip

        rps = requests_per_second(base, args.seconds, args.threads)
        print(f"/health: {rps:.0f} requests/s ({args.threads} keep-alive clients, "
              f"{args.seconds:g}s)")  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
