"""A 1 GB folder of 10,000 text files as the context of ``recursa run``, against the same
text concatenated into one file.

The folder is written to a temporary directory (deleted afterwards). Each run is the
real CLI (``python -m recursa run -c FOLDER --trace ...``) in its own process, with the
default sandbox, against a local scripted OpenAI-compatible server
(:class:`recursa.testing.ScriptedServer`) whose one reply is code that reads 10 of the
files by name (the single-file run reads 10 slices of the string instead). Each is
run ``--rounds`` times, alternating, the inputs synced to disk first. For each run it
prints: the time from the command's start to ``run_start`` (the CLI up, the context
found, checked and packed) and to the first cell (the trace's ``cell.t0``: the
sandbox is up and the context readable), the whole run's wall time, and the peak RSS
summed over the process tree (sampled from /proc every 10 ms, the helper of
``benchmarks/vs_official.py``). Targets for the folder: median first cell <= 3 s,
tree RSS <= 400 MiB.

    .venv/bin/python benchmarks/folder_context.py [--files 10000] [--total-mb 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vs_official import TreeSample, clean_env, sample_tree  # noqa: E402

from recursa.testing import ScriptedServer, http_router  # noqa: E402

SAMPLE_INTERVAL = 0.010
READ_FILES = 10
FOLDER_CELL = f"""```repl
names = list(context)
picked = names[:: max(1, len(names) // {READ_FILES})][:{READ_FILES}]
FINAL(str(sum(len(context[n]) for n in picked)))
```"""
SINGLE_CELL = f"""```repl
step = max(1, len(context) // {READ_FILES})
FINAL(str(sum(len(context[i : i + 100_000]) for i in range(0, len(context), step)[:{READ_FILES}])))
```"""
LINE = "Line {n:08d} of file {f:05d}: the quick brown fox jumps over the lazy dog.\n"


@dataclass
class Measured:
    label: str
    run_start_s: float  # the CLI started, the context read (packed) and checked
    first_cell_s: float
    wall_s: float
    peak_rss_mib: float
    answer: str


def write_folder(root: Path, files: int, total_bytes: int) -> None:
    """``files`` text files of about ``total_bytes / files`` bytes each, in 100 folders."""
    per_file = total_bytes // files
    for f in range(files):
        folder = root / f"d{f % 100:02d}"
        folder.mkdir(exist_ok=True)
        line = LINE.format(n=0, f=f)
        body = (line * (per_file // len(line) + 1))[:per_file]
        (folder / f"f{f:05d}.txt").write_text(body, encoding="ascii")


def concatenate(root: Path, into: Path) -> None:
    with into.open("wb") as out:
        for path in sorted(root.rglob("*.txt")):
            with path.open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)


def run(label: str, context: Path, url: str, workdir: Path) -> Measured:
    trace = workdir / f"{label}.jsonl"
    cmd = [sys.executable, "-m", "recursa", "run", "Sum the lengths", "-c", str(context),
           "--model", "openai/bench", "--base-url", url, "--trace", str(trace), "--json",
           "--no-progress"]  # fmt: skip
    tree = TreeSample()
    env = clean_env()
    env["PYTHONPATH"] = str(HERE.parent)
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    done = threading.Event()
    outputs: list[bytes] = []

    def wait() -> None:
        outputs.extend(proc.communicate())
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    while not done.is_set():
        sample_tree(proc.pid, tree)
        done.wait(SAMPLE_INTERVAL)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"{label}: exit {proc.returncode}: {outputs[1].decode()[-600:]}")
    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    run_start = next(e["t"] for e in events if e["type"] == "run_start")
    first_cell = min(e["t0"] for e in events if e["type"] == "cell")
    answer = json.loads(outputs[0].decode().splitlines()[-1])["answer"]
    return Measured(
        label, run_start - started, first_cell - started, wall, tree.peak_rss_kib / 1024, answer
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--total-mb", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="recursa-folder-bench-"))
    try:
        folder = workdir / "folder"
        folder.mkdir()
        t = time.perf_counter()
        write_folder(folder, args.files, args.total_mb * 1_000_000)
        single = workdir / "all.txt"
        concatenate(folder, single)
        os.sync()  # the inputs at rest, as a user's files are: no writeback during the runs
        print(
            f"wrote {args.files:,} files, {args.total_mb:,} MB in {time.perf_counter() - t:.1f} s"
        )
        results: dict[str, list[Measured]] = {"folder": [], "one file": []}
        for _ in range(args.rounds):
            for label, context, cell in (("folder", folder, FOLDER_CELL),
                                         ("one file", single, SINGLE_CELL)):  # fmt: skip
                with ScriptedServer(http_router([cell])) as server:
                    results[label].append(run(label, context, server.url, workdir))
                os.sync()  # the folder's pack, written and removed, is not flushed in the next
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'context':<10} {'run_start':>10} {'first cell':>11} {'wall':>8} {'tree RSS':>10}")
    for r in (*results["folder"], *results["one file"]):
        print(f"{r.label:<10} {r.run_start_s:>8.2f} s {r.first_cell_s:>9.2f} s {r.wall_s:>6.2f} s "
              f"{r.peak_rss_mib:>6.0f} MiB  answer {r.answer}")  # fmt: skip
    first_cell = statistics.median(r.first_cell_s for r in results["folder"])
    peak = max(r.peak_rss_mib for r in results["folder"])
    print(f"folder: median first cell {first_cell:.2f} s, peak tree RSS {peak:.0f} MiB")
    ok = first_cell <= 3.0 and peak <= 400
    print(f"targets (folder: first cell <= 3 s, tree RSS <= 400 MiB): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
