"""How fast the subprocess sandbox starts, answers and loads a big context.

    python benchmarks/sandbox_speed.py [--levels bubblewrap,unshare,process] [--big]

Prints, per isolation level: the median worker start (small context, until the
REPL is ready), the median round trip of a one-line cell, the time a 40 MB context
takes to load in the worker, the whole start with it, and the worker's memory after
loading it (RSS now, peak RSS, anonymous RSS: the str itself; the peak also counts
the memory-mapped file's page-cache pages, shared and reclaimable). The REPL
process's own CPU time to ready shows the start-up cost without the noise of a
busy machine (at the unshare level it counts only what follows the last fork). ``--big`` adds a 400 MB context. Targets: start <= 0.3 s plus the context's read time; round trip
<= 5 ms; 40 MB ready in < 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recursa.context import Context
from recursa.repl.base import SandboxConfig
from recursa.repl.inprocess import InProcessSandbox
from recursa.repl.protocol import HostRequest
from recursa.repl.subprocess import SubprocessSandbox

MB = 1_000_000


async def host(request: HostRequest) -> Any:
    return "ok"


def text_of(size: int) -> str:
    line = "The quick brown fox jumps over the lazy dog; naïve café, 12345.\n"
    return (line * (size // len(line) + 1))[:size]


def memory_of(pid: int) -> dict[str, float]:
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024  # MiB
    return fields


def cpu_ms(pid: int) -> float:
    """Time the process has spent on a CPU (ns precision; independent of machine load)."""
    with open(f"/proc/{pid}/schedstat") as fh:
        return int(fh.read().split()[0]) / 1e6


async def start(level: str, ctx: Context) -> tuple[SubprocessSandbox, float]:
    sb = SubprocessSandbox(isolation=level)
    t0 = time.perf_counter()
    await sb.start(SandboxConfig(context=ctx, host=host))
    return sb, time.perf_counter() - t0


async def bench_level(level: str, big: bool) -> dict[str, Any]:
    small = Context("a small context")
    small.file()  # written once, as in a real run
    starts, cpus = [], []
    isolation = ""
    for _ in range(7):
        sb, seconds = await start(level, small)
        isolation = sb.isolation
        starts.append(seconds)
        assert sb._worker is not None
        cpus.append(cpu_ms(sb._worker.pid))
        await sb.close()
    sb, _ = await start(level, small)
    trips = []
    for _ in range(200):
        t0 = time.perf_counter()
        await sb.run("x = 1", timeout=10)
        trips.append(time.perf_counter() - t0)
    trips_call = []
    for _ in range(100):
        t0 = time.perf_counter()
        await sb.run("llm_query('hi')", timeout=10)
        trips_call.append(time.perf_counter() - t0)
    await sb.close()
    small.cleanup()
    row: dict[str, Any] = {
        "level": level,
        "isolation": isolation,
        "start_ms": statistics.median(starts) * 1000,
        "start_cpu_ms": statistics.median(cpus),
        "roundtrip_ms": statistics.median(trips) * 1000,
        "subcall_roundtrip_ms": statistics.median(trips_call) * 1000,
    }
    sizes = [("40MB", 40 * MB)] + ([("400MB", 400 * MB)] if big else [])
    for label, size in sizes:
        ctx = Context(text_of(size))
        ctx.file()
        loads, totals = [], []
        memory: dict[str, float] = {}
        for _ in range(3):
            sb, seconds = await start(level, ctx)
            totals.append(seconds)
            loads.append(sb.context_load_s)
            assert sb._worker is not None
            memory = memory_of(sb._worker.pid)
            await sb.close()
        ctx.cleanup()
        row[f"{label}_load_ms"] = statistics.median(loads) * 1000
        row[f"{label}_start_ms"] = statistics.median(totals) * 1000
        row[f"{label}_rss_mib"] = memory.get("VmRSS", 0.0)
        row[f"{label}_peak_mib"] = memory.get("VmHWM", 0.0)
        row[f"{label}_anon_mib"] = memory.get("RssAnon", 0.0)
    return row


async def bench_inprocess() -> float:
    ctx = Context("a small context")
    sb = InProcessSandbox()
    await sb.start(SandboxConfig(context=ctx, host=host))
    trips = []
    for _ in range(200):
        t0 = time.perf_counter()
        await sb.run("x = 1", timeout=10)
        trips.append(time.perf_counter() - t0)
    await sb.close()
    return statistics.median(trips) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="auto,bubblewrap,unshare,process")
    parser.add_argument("--big", action="store_true", help="also load a 400 MB context")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs")
    for level in args.levels.split(","):
        try:
            row = await bench_level(level, args.big)
        except Exception as exc:
            print(f"\n{level}: not available here ({exc})")
            continue
        print(f"\n{level}: {row['isolation']}")
        print(f"  worker start (small context)   {row['start_ms']:8.1f} ms   (target <= 300)")
        print(f"  REPL process CPU time to ready {row['start_cpu_ms']:8.1f} ms")
        print(f"  one-line cell round trip       {row['roundtrip_ms']:8.2f} ms   (target <= 5)")
        print(f"  cell with one llm_query        {row['subcall_roundtrip_ms']:8.2f} ms")
        for label in ("40MB", "400MB"):
            if f"{label}_load_ms" not in row:
                continue
            print(f"  {label} context load in worker  {row[f'{label}_load_ms']:8.1f} ms")
            print(f"  start with {label} context      {row[f'{label}_start_ms']:8.1f} ms")
            print(
                f"  worker RSS after {label}: {row[f'{label}_rss_mib']:.0f} MiB "
                f"(peak {row[f'{label}_peak_mib']:.0f}, anonymous {row[f'{label}_anon_mib']:.0f})"
            )
    print(f"\ninprocess one-line round trip   {await bench_inprocess():8.2f} ms (reference)")


if __name__ == "__main__":
    asyncio.run(main())
