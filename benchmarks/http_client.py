"""CPU per request and memory of the lean HTTP client, next to a bare aiohttp session.

Starts a :class:`recursa.testing.ScriptedServer` in another process (so its threads
do not count against the client's CPU) with ``--latency`` seconds added to every
reply, then, round after round, alternating which goes first, sends ``--requests``
``POST /v1/chat/completions`` at once (``asyncio.gather``) through
:class:`recursa.models.openai_http.ChatClient` and through a bare
``aiohttp.ClientSession``, on fresh connections (a new client each round, closed in
the round) and on kept-alive ones (one client, warmed up). It prints the client
process's CPU (``time.process_time()``) per request, median and min over the rounds,
and the RSS that importing each client adds after ``import asyncio``, each measured
in fresh processes (median of three) with compiled bytecode, as an installed package
has it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from recursa.models.openai_http import ChatClient, encode

HEADERS = {"Authorization": "Bearer bench-key"}
BODY: dict[str, Any] = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Summarise this passage. " + "word " * 200}],
    "max_tokens": 64,
}
PATH = "/chat/completions"

SERVER = """
import sys
from recursa.testing import ScriptedServer
server = ScriptedServer(lambda request: "a short reply", latency=float(sys.argv[1])).start()
print(server.url, flush=True)
sys.stdin.read()
server.close()
"""

RSS = """
import asyncio
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
{before}
start = rss()
{what}
print(rss() - start)
"""

#: (label, code run before the baseline, code measured)
IMPORTS = [
    ("recursa.models.openai_http", "import recursa.errors", "import recursa.models.openai_http"),
    ("  + ChatClient('https://...')", "import recursa.models.openai_http as m",
     "c = m.ChatClient('https://api.openai.com/v1', headers={}, timeout=60)"),
    ("aiohttp", "", "import aiohttp"),
    ("httpx", "", "import httpx"),
]  # fmt: skip

Round = Callable[[], Awaitable[None]]


def lean(url: str, n: int, client: ChatClient | None) -> Round:
    async def run() -> None:
        chat = client or ChatClient(url, headers=HEADERS, timeout=60)
        await asyncio.gather(*(chat.post(PATH, BODY) for _ in range(n)))
        if client is None:
            await chat.close()

    return run


def bare(url: str, n: int, session: aiohttp.ClientSession | None) -> Round:
    async def one(s: aiohttp.ClientSession) -> None:
        async with s.post(url + PATH, data=encode(BODY), headers=HEADERS) as response:
            await response.read()
            response.raise_for_status()

    async def run() -> None:
        if session is not None:
            await asyncio.gather(*(one(session) for _ in range(n)))
            return
        async with aiohttp.ClientSession() as fresh:
            await asyncio.gather(*(one(fresh) for _ in range(n)))

    return run


async def cpu(run: Round) -> float:
    start = time.process_time()
    await run()
    return time.process_time() - start


async def measure(url: str, rounds: int, n: int) -> dict[tuple[str, str], list[float]]:
    """CPU seconds of each round, per (client, connections)."""
    kept_lean = ChatClient(url, headers=HEADERS, timeout=60)
    kept_bare = aiohttp.ClientSession()
    runs = {
        ("lean", "fresh"): lean(url, n, None),
        ("aiohttp", "fresh"): bare(url, n, None),
        ("lean", "kept"): lean(url, n, kept_lean),
        ("aiohttp", "kept"): bare(url, n, kept_bare),
    }
    try:
        for run in runs.values():  # warm-up: imports, and the kept clients' connections
            await run()
        out: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        for i in range(rounds):
            for mode in ("fresh", "kept"):
                order = ("lean", "aiohttp") if i % 2 == 0 else ("aiohttp", "lean")
                for name in order:
                    out[(name, mode)].append(await cpu(runs[(name, mode)]))
        return out
    finally:
        await kept_lean.close()
        await kept_bare.close()


def import_rss(before: str, what: str, env: dict[str, str]) -> float:
    """MiB that ``what`` adds to a fresh process after ``import asyncio`` and ``before``."""
    code = RSS.format(before=before, what=what)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    kib = [
        int(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                           capture_output=True, text=True).stdout)
        for _ in range(3)
    ]  # fmt: skip
    return statistics.median(kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: nice -n 19 .venv/bin/python benchmarks/http_client.py --rounds 15 --requests 64",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--requests", type=int, default=64, help="requests at once (default 64)")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency, s (0.05)")
    args = parser.parse_args()

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    for name in [k for k in env if k.lower().endswith("_proxy")]:
        del env[name]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.latency)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    url = server.stdout.readline().strip()
    try:
        cpu_s = asyncio.run(measure(url, args.rounds, args.requests))
    finally:
        server.stdin.close()
        server.wait(timeout=30)

    print(
        f"CPU of the client process per request, ms: {args.requests} requests at once, "
        f"{args.latency * 1000:.0f} ms server latency (another process), {args.rounds} rounds"
    )
    print(f"{'':24}{'fresh connections':>22}{'kept alive':>22}")
    print(f"{'':24}{'median':>11}{'min':>11}{'median':>11}{'min':>11}")
    for name, label in (("lean", "ChatClient (lean)"), ("aiohttp", "aiohttp.ClientSession")):
        cells = []
        for mode in ("fresh", "kept"):
            per = [s * 1000 / args.requests for s in cpu_s[(name, mode)]]
            cells += [f"{statistics.median(per):11.3f}", f"{min(per):11.3f}"]
        print(f"{label:24}{''.join(cells)}")

    with tempfile.TemporaryDirectory() as cache:
        # compiled once into a private cache, as an installed package's bytecode is
        bytecode = {**env, "PYTHONPYCACHEPREFIX": cache}
        bytecode.pop("PYTHONDONTWRITEBYTECODE", None)
        print("\nRSS added after `import asyncio`, MiB (median of 3 fresh processes):")
        for label, before, what in IMPORTS:
            print(f"  {label:32}{import_rss(before, what, bytecode):6.1f}")


if __name__ == "__main__":
    main()
