"""What reading a folder's files costs in the sandbox when they are linked (a descriptor
from the host per file, ``recursa.repl.source_server``) against copied into the pack.

For each file size, a generated folder of ``--files`` plain UTF-8 files is packed twice:
as ``recursa`` packs it (files of ``recursa.pack.LINK_FROM`` bytes or more linked) and
with every plain file linked (``link_from=0``), and each pack is read whole by code in a
real subprocess sandbox (``sum(len(context[n]) for n in context)``, timed inside the
REPL, best of ``--rounds``); the copied figure is the same code over the standalone copy
(``write_standalone``: every text in the pack, as Docker gets it). It prints the time to
read everything, the cost per file over the copy, and the time packing took on the host
(where copying costs and linking does not). This is the measurement behind
``LINK_FROM``.

    .venv/bin/python benchmarks/linked_reads.py [--files 2000] [--sizes 1k,32k,100k] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import mmap
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from recursa.pack import LINK_FROM, write_pack, write_standalone  # noqa: E402
from recursa.repl.base import SandboxConfig  # noqa: E402
from recursa.repl.runtime import Files  # noqa: E402
from recursa.repl.subprocess import SubprocessSandbox  # noqa: E402
from recursa.sources import Found  # noqa: E402

READ_ALL = (
    "import time\nt = time.perf_counter()\nn = sum(len(context[k]) for k in context)\n"
    "print(n, time.perf_counter() - t)"
)


class _NoHost:
    async def __call__(self, request: Any) -> Any:
        raise RuntimeError("no host calls in this benchmark")


class _PackContext:
    """Just what a sandbox asks of a context, over a pack written here."""

    def __init__(self, path: Path, sources: tuple[Any, ...]) -> None:
        self._path, self.sources = path, sources

    async def afile(self, *, standalone: bool = False) -> tuple[Path, str]:
        return self._path, "pack"


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def make_folder(root: Path, files: int, size: int) -> list[Found]:
    found = []
    for i in range(files):
        path = root / f"f{i:05d}.txt"
        line = f"file {i:05d}: the quick brown fox jumps over the lazy dog.\n"
        path.write_text((line * (size // len(line) + 1))[:size], encoding="ascii")
        found.append(Found(path.name, path, size))
    return found


def pack(found: list[Found], out: Path, link_from: int | None) -> tuple[float, tuple[Any, ...]]:
    started = time.perf_counter()
    with out.open("w+b") as fh:
        written = write_pack(found, fh, link_from=link_from)
    return time.perf_counter() - started, tuple(written.sources)


async def read_all(path: Path, sources: tuple[Any, ...], rounds: int) -> float:
    sandbox = SubprocessSandbox()
    context: Any = _PackContext(path, sources)
    await sandbox.start(SandboxConfig(context=context, host=_NoHost(), tools=()))
    best = float("inf")
    try:
        for _ in range(rounds):
            result = await sandbox.run(READ_ALL, timeout=300)
            if result.error:
                raise RuntimeError(result.error)
            best = min(best, float(result.output.split()[1]))
    finally:
        await sandbox.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--sizes", default="1k,32k,100k")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    title = f"reading all (best of {args.rounds})"
    print(f"{'size':>6}  {'packing':>26}  {title:>44}")
    print(f"{'':>6}  {'default':>8} {'all linked':>10} {'copy':>6}  "
          f"{'default':>8} {'all linked':>10} {'copied':>8} {'linked - copied':>16}")  # fmt: skip
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "src").mkdir()
            found = make_folder(root / "src", args.files, size)
            default_s, default_sources = pack(found, root / "default.pack", LINK_FROM)
            linked_s, linked_sources = pack(found, root / "linked.pack", 0)
            started = time.perf_counter()
            with (root / "copied.pack").open("w+b") as out:
                write_standalone(root / "linked.pack", linked_sources, out)
            copy_s = time.perf_counter() - started
            with (root / "copied.pack").open("rb") as fh:  # check the copy reads back
                assert len(Files(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))) == len(found)
            default = asyncio.run(read_all(root / "default.pack", default_sources, args.rounds))
            linked = asyncio.run(read_all(root / "linked.pack", linked_sources, args.rounds))
            copied = asyncio.run(read_all(root / "copied.pack", (), args.rounds))
        per_file = (linked - copied) / args.files * 1e6
        print(f"{size // 1024:>5}K  {default_s:>7.2f}s {linked_s:>9.2f}s {copy_s:>5.2f}s  "
              f"{default:>7.3f}s {linked:>9.3f}s {copied:>7.3f}s {per_file:>10.1f} µs/file")  # fmt: skip


if __name__ == "__main__":
    main()
