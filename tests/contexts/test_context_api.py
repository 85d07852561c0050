"""``Context`` from folders, lists of paths, globs and single files of every kind."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from recursa.context import Context
from recursa.errors import ContextError
from recursa.prompts import system_prompt
from recursa.prompts_compact import compact_system_prompt
from recursa.repl.runtime import Files


def test_a_folder_becomes_files_described_without_their_text(folder: Path) -> None:
    ctx = Context(folder)
    info, files = ctx.info, ctx.value()
    assert info.kind == "files" and isinstance(files, Files)
    assert info.keys == ("a/b.txt", "a/c.md", "notes.txt", "z.log.gz")
    assert info.chars == sum(len(files[n]) for n in info.keys)
    assert dict(info.extensions)[".txt"] == 2
    assert info.largest[0] == ("notes.txt", len("remember the milk\n") * 50)
    assert info.preview == "" and ctx.skipped == []
    assert ctx.info.to_dict() == {"type": "files", "chars": info.chars, "items": 4}


def test_a_list_of_paths_is_sources_a_list_of_str_stays_documents(folder: Path) -> None:
    files = [folder / "a" / "b.txt", folder / "notes.txt"]
    ctx = Context(files)
    assert ctx.info.kind == "files" and ctx.info.keys == tuple(map(str, files))  # as given
    docs = Context([str(folder / "a" / "b.txt"), "two"])
    assert docs.info.kind == "list" and docs.info.item_lengths[1] == 3


def test_a_str_is_text_even_when_it_looks_like_a_glob(folder: Path) -> None:
    ctx = Context(str(folder / "*.txt"))
    assert ctx.info.kind == "str" and ctx.value() == str(folder / "*.txt")


def test_from_paths_globs_and_filters(folder: Path) -> None:
    ctx = Context.from_paths([str(folder / "a" / "*")])
    assert ctx.info.keys == (str(folder / "a" / "b.txt"), str(folder / "a" / "c.md"))
    only_md = Context.from_paths([folder], include=["*.md"])
    assert only_md.info.keys == ("a/c.md",)


def test_a_binary_file_is_skipped_and_kept_on_the_context(folder: Path, binary: Path) -> None:
    ctx = Context(folder)
    assert [(s.name, s.reason) for s in ctx.skipped] == [("blob.bin", "binary (NUL byte)")]
    assert "blob.bin" not in ctx.info.keys and ctx.info.skipped == 1


def test_nothing_readable_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00" * 10)
    (tmp_path / "late.txt").write_bytes(b"a" * 20_000 + b"\x00")  # past what discovery sniffs
    with pytest.raises(
        ContextError, match=r"nothing to read: 2 file\(s\) skipped .*late.txt: binary"
    ):
        Context(tmp_path)
    with pytest.raises(ContextError):
        Context.from_paths([str(tmp_path / "*.nothing")])


def test_one_plain_file_is_read_in_place(folder: Path) -> None:
    ctx = Context(folder / "a" / "b.txt")
    assert ctx.info.kind == "str" and ctx.path == (folder / "a" / "b.txt").resolve()
    assert ctx.file() == ((folder / "a" / "b.txt").resolve(), "text")


@pytest.mark.parametrize(
    ("name", "data", "encoding"),
    [
        ("log.gz", gzip.compress("gzipped text ü\n".encode()), None),
        ("wide.txt", "wide text ü\n".encode("utf-16"), None),  # with its BOM
        ("latin.txt", "latin text ü\n".encode("latin-1"), "latin-1"),
    ],
)
def test_one_file_to_decode_is_streamed_into_a_private_text_file(
    tmp_path: Path, name: str, data: bytes, encoding: str | None
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    ctx = Context.from_paths([path], encoding=encoding)
    assert ctx.info.kind == "str" and ctx.path is None
    text = ctx.value()
    assert isinstance(text, str) and text.endswith("text ü\n") and "\ufeff" not in text
    written, fmt = ctx.file()
    assert fmt == "text" and written.stat().st_mode & 0o777 == 0o600
    assert written.parent.stat().st_mode & 0o777 == 0o700
    ctx.cleanup()
    assert not written.exists()
    again, _ = ctx.file()  # written again on demand
    assert again.read_text(encoding="utf-8") == text
    ctx.cleanup()


def test_one_json_lines_file_becomes_a_list(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    ctx = Context(path)
    assert ctx.info.kind == "list" and ctx.value() == [{"id": 1}, {"id": 2}]


def test_the_pack_is_private_and_written_again_after_cleanup(folder: Path) -> None:
    ctx = Context(folder)
    path, fmt = ctx.file()
    assert fmt == "pack" and path.stat().st_mode & 0o777 == 0o600
    ctx.cleanup()
    assert not path.exists()
    again, _ = ctx.file()
    files = ctx.value()
    assert again.exists() and isinstance(files, Files)
    assert files["a/b.txt"] == "the vault code is 4471\n"
    ctx.cleanup()


def test_both_system_prompts_describe_files_without_their_text(folder: Path) -> None:
    info = Context(folder).info
    full = system_prompt(info, max_depth=1)
    assert "read-only mapping of 4 files" in full and "'a/b.txt'" in full
    assert ".txt 2" in full and "context.size(name)" in full
    compact = compact_system_prompt(info, subcalls=True, max_depth=1)
    assert "maps 4 file names" in compact and "context.values()" in compact
    for prompt in (full, compact):
        assert "vault" not in prompt and "milk" not in prompt


async def test_acompletion_packs_files_off_the_event_loop(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packing a folder is disk work (seconds for a gigabyte): ``acompletion`` does it in
    a thread, so the loop keeps serving other tasks meanwhile. Here the pack waits for a
    task on the loop; done on the loop itself, it would wait forever."""
    import asyncio
    import threading

    from recursa.models.scripted import ScriptedModel
    from recursa.rlm import RLM

    loop_ran = threading.Event()
    real = Context._init_paths

    def waiting(self: Context, *args: object, **kwargs: object) -> None:
        assert loop_ran.wait(10), "the event loop was blocked while the files were packed"
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Context, "_init_paths", waiting)

    async def other_task() -> None:
        await asyncio.sleep(0)
        loop_ran.set()

    model = ScriptedModel(["```repl\nFINAL(str(len(context)))\n```"])
    rlm = RLM(model, sandbox="inprocess")
    result, _ = await asyncio.gather(rlm.acompletion("how many files?", folder), other_task())
    assert result.answer == "4"
