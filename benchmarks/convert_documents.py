"""How fast PDFs become text, converted and then again from the conversion cache.

    python benchmarks/convert_documents.py [--files 200] [--pages 10] [--lines 40]

Writes ``--files`` PDFs of ``--pages`` pages each (``--lines`` lines of text a page,
made with the test suite's PDF writer) into a temporary folder, converts them all
with ``recursa.sources.convert`` into a fresh cache folder (first run: pypdf parses
every page), then converts them all again (second run: every file is hashed and its
text read back from the cache). Prints pages/s for both runs and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recursa.sources import convert
from tests.sources.pdfgen import write_pdf

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "recursive",
    "models",
    "read",
    "long",
    "documents",
]


def page_lines(file: int, page: int, lines: int) -> list[str]:
    return [
        f"File {file} page {page} line {n}: "
        + " ".join(WORDS[(file + page + n + k) % len(WORDS)] for k in range(10))
        for n in range(lines)
    ]


def convert_all(paths: list[Path], cache_dir: Path) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, pages, characters) for converting every file once.
    CPU time shows the cost without the noise of a busy machine."""
    start, cpu = time.perf_counter(), time.process_time()
    pages = chars = 0
    for path in paths:
        converted = convert(path, cache_dir=cache_dir)
        pages += len(converted.pages or ())
        chars += len(converted.text)
    return time.perf_counter() - start, time.process_time() - cpu, pages, chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        paths = [
            write_pdf(
                folder / f"doc{i:04d}.pdf",
                [page_lines(i, p, args.lines) for p in range(args.pages)],
            )
            for i in range(args.files)
        ]
        size = sum(p.stat().st_size for p in paths)
        print(f"{len(paths)} PDFs, {len(paths) * args.pages:,} pages, {size / 1e6:.1f} MB")
        cache_dir = folder / "cache"
        first, first_cpu, pages, chars = convert_all(paths, cache_dir)
        second, second_cpu, pages_again, chars_again = convert_all(paths, cache_dir)
        assert (pages_again, chars_again) == (pages, chars), "the cache gave other text"
        runs = (
            ("first run  (pypdf)", first, first_cpu),
            ("second run (cache)", second, second_cpu),
        )
        for label, wall, cpu in runs:
            print(
                f"{label}: {wall:7.2f} s {pages / wall:9,.0f} pages/s"
                f"  (CPU {cpu:6.2f} s {pages / cpu:9,.0f} pages/s)"
            )
        print(
            f"{chars:,} characters; the cache is {first / second:.0f}x faster"
            f" (CPU {first_cpu / second_cpu:.0f}x)"
        )


if __name__ == "__main__":
    main()
