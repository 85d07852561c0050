"""Plain files linked where they lie: never copied, handed to the worker as descriptors
one at a time, refused once they are no longer the file that was checked."""

from __future__ import annotations

import json
import mmap
import os
import socket
import struct
import sys
from pathlib import Path

import pytest

from recursa.context import Context
from recursa.pack import PackWritten, SourceChanged, write_pack, write_standalone
from recursa.repl import isolation
from recursa.repl.runtime import Files
from recursa.sources import Found
from tests.repl.sandboxes import started

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux behaviour")

BIG = "line of plain text\n" * 20_000  # 380,000 bytes


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(3):
        (root / f"plain{i}.txt").write_text(f"{i}: {BIG}", encoding="utf-8")
    (root / "wide.txt").write_bytes("wide é".encode("utf-16"))
    return root


def written(root: Path, out: Path) -> PackWritten:
    items = [Found(p.name, p, p.stat().st_size) for p in sorted(root.iterdir())]
    with out.open("w+b") as fh:
        return write_pack(items, fh)


def test_plain_files_are_linked_not_copied(corpus: Path, tmp_path: Path) -> None:
    result = written(corpus, tmp_path / "ctx.pack")
    assert [s.name for s in result.sources] == ["plain0.txt", "plain1.txt", "plain2.txt"]
    assert (tmp_path / "ctx.pack").stat().st_size < 2_000  # the index and wide.txt's text
    data = (tmp_path / "ctx.pack").read_bytes()
    files = Files(data, lambda n: result.sources[n].open())
    assert files["plain1.txt"] == f"1: {BIG}" and files["wide.txt"] == "wide é"
    assert files.size("plain2.txt") == len(f"2: {BIG}")


@pytest.mark.parametrize(
    "change",
    ["append", "same size", "replaced by a link", "removed"],
)
def test_a_linked_file_that_changed_is_refused_with_why(
    corpus: Path, tmp_path: Path, change: str
) -> None:
    result = written(corpus, tmp_path / "ctx.pack")
    target = corpus / "plain0.txt"
    secret = tmp_path / "secret.txt"
    secret.write_text("s" * target.stat().st_size)  # the same size, another file
    if change == "append":
        with target.open("a") as fh:
            fh.write("more")
    elif change == "same size":
        os.utime(target, ns=(0, 0))  # even the content time put back...
        target.write_text("X" * target.stat().st_size)  # ...the change time moves
    elif change == "replaced by a link":
        target.unlink()
        target.symlink_to(secret)
    else:
        target.unlink()
    files = Files((tmp_path / "ctx.pack").read_bytes(), lambda n: result.sources[n].open())
    with pytest.raises(OSError, match=r"plain0\.txt") as caught:
        files["plain0.txt"]
    assert "sss" not in str(caught.value)
    assert files["plain1.txt"] == f"1: {BIG}"  # the others still read


def test_the_standalone_copy_needs_no_descriptors(corpus: Path, tmp_path: Path) -> None:
    result = written(corpus, tmp_path / "ctx.pack")
    with (tmp_path / "alone.pack").open("w+b") as out:
        write_standalone(tmp_path / "ctx.pack", result.sources, out)
    with (tmp_path / "alone.pack").open("rb") as fh:
        alone = Files(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
    linked = Files((tmp_path / "ctx.pack").read_bytes(), lambda n: result.sources[n].open())
    assert dict(alone) == dict(linked) and len(alone) == 4
    (corpus / "plain2.txt").write_text("changed")
    with (tmp_path / "again.pack").open("w+b") as out, pytest.raises(SourceChanged):
        write_standalone(tmp_path / "ctx.pack", result.sources, out)


def test_the_in_process_value_reads_linked_files(corpus: Path) -> None:
    ctx = Context.from_paths(corpus)
    try:
        assert len(ctx.sources) == 3
        assert ctx.value()["plain0.txt"] == f"0: {BIG}"  # type: ignore[index]
    finally:
        ctx.cleanup()


READ = """import json
print(json.dumps([context["plain0.txt"][:10], len(context["plain2.txt"]), context["wide.txt"]]))"""


@pytest.mark.parametrize("level", isolation.LEVELS)
async def test_every_isolation_level_reads_linked_files(corpus: Path, level: str) -> None:
    try:
        async with started("subprocess", corpus, isolation=level) as sandbox:
            first = await sandbox.run(READ, timeout=30)
            (corpus / "plain2.txt").write_text("rewritten during the run")
            second = await sandbox.run("context['plain2.txt']", timeout=30)
            third = await sandbox.run("len(context['plain1.txt'])", timeout=30)
    except Exception as exc:
        if "not available" in str(exc) or "could not start" in str(exc):
            pytest.skip(f"{level}: {exc}")
        raise
    assert first.error is None, first.error
    assert json.loads(first.output) == ["0: line of", len(f"2: {BIG}"), "wide é"]
    assert second.error is not None and "plain2.txt changed after the run read it" in second.error
    assert third.error is None and third.output.strip() == str(len(f"1: {BIG}"))


HOSTILE = """
opener = context._open_source  # what code in the REPL can reach: the worker's client
for number in (10_000, -1):
    try:
        opener(number)
    except (OSError, OverflowError, Exception) as exc:
        print(type(exc).__name__, exc)
"""


async def test_a_number_outside_the_pack_is_refused_and_the_channel_goes_on(
    corpus: Path,
) -> None:
    async with started("subprocess", corpus) as sandbox:
        hostile = await sandbox.run(HOSTILE, timeout=30)
        after = await sandbox.run("print(context['plain1.txt'][:2])", timeout=30)
    assert hostile.error is None, hostile.error
    lines = hostile.output.splitlines()
    assert lines[0] == "OSError no linked file 10000 (3 in this pack)"
    assert lines[1].startswith("error ")  # struct.error: never sent
    assert after.error is None and after.output == "1:\n"


async def test_a_garbled_request_ends_only_the_source_channel(corpus: Path) -> None:
    from recursa.repl.source_server import SourceServer

    ctx = Context.from_paths(corpus)
    server = SourceServer(ctx.sources)
    try:
        worker = server.worker_end
        worker.sendall(struct.pack("<II", 1, 7))
        reply, fds, _, _ = socket.recv_fds(worker, 4096, 2)
        assert struct.unpack_from("<HI", reply) == (2, 3)  # two entries; 3 linked files
        assert struct.unpack_from("<IBH", reply, 6) == (1, 0, 0) and len(fds) == 1
        assert struct.unpack_from("<IBH", reply, 13)[:2] == (7, 1)
        assert reply[20:].decode() == "no linked file 7 (3 in this pack)"
        assert os.read(fds[0], 3) == b"1: "
        os.close(fds[0])
        worker.sendall(b"\x01\x02")  # not a request
        assert worker.recv(64) == b""  # the server ended its side
    finally:
        server.close()
        ctx.cleanup()


INTERRUPTED = """client = context._open_source.__self__
client._sock.sendall(__import__("struct").pack("<I", 0))  # asked, never read: a stale reply
print(context["plain1.txt"][:2], context["plain2.txt"][:2])"""


async def test_a_reply_left_by_an_interrupted_read_is_not_taken_for_the_next(
    corpus: Path,
) -> None:
    async with started("subprocess", corpus) as sandbox:
        result = await sandbox.run(INTERRUPTED, timeout=30)
    assert result.error is None, result.error
    assert result.output == "1: 2:\n"


def test_small_plain_files_are_copied_large_ones_linked(tmp_path: Path) -> None:
    from recursa.pack import LINK_FROM

    root = tmp_path / "sizes"
    root.mkdir()
    (root / "small.txt").write_text("s" * (LINK_FROM - 1))
    (root / "large.txt").write_text("l" * LINK_FROM)
    result = written(root, tmp_path / "ctx.pack")
    assert [s.name for s in result.sources] == ["large.txt"]
    linked = {p.name: p.source for p in result.packed}
    assert linked == {"large.txt": 0, "small.txt": None}


MANY = 80


@pytest.fixture
def many(tmp_path: Path) -> Path:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(MANY):
        (root / f"f{i:03d}.txt").write_text(f"{i:03d}" + "x" * 40_000)
    return root


async def test_many_linked_files_read_in_batches_and_a_held_one_is_checked_again(
    many: Path,
) -> None:
    """Reading the first file asks for the next ones too; one of those that changed
    before the code read it is refused, not read as it is now."""
    async with started("subprocess", many) as sandbox:
        first = await sandbox.run("print(context['f000.txt'][:3])", timeout=30)
        (many / "f005.txt").write_text("005" + "y" * 40_000)  # same size, new content
        changed = await sandbox.run("context['f005.txt']", timeout=30)
        rest = await sandbox.run(
            "print(sum(1 for n in context if n != 'f005.txt' and context[n][:3] == n[1:4]))",
            timeout=60,
        )
    assert first.output == "000\n"
    assert changed.error is not None and "f005.txt changed after the run read it" in changed.error
    assert rest.error is None and rest.output == f"{MANY - 1}\n"
