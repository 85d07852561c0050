"""``recursa mcp`` as a real process, driven by the official MCP SDK's own client over stdio,
its model a local scripted OpenAI-compatible server: the ``ask`` tool answers over files,
folders and text, returns the cost, the stop reason and the trace, refuses paths that leave
the allowed roots, and lets a call only tighten the server's settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from recursa.context import Context
from recursa.errors import ConfigError
from recursa.mcp_server import PathRefused, Roots, context_for, tightened
from recursa.settings import Settings
from recursa.testing import ScriptedServer, http_router
from tests.helpers import requires

REPO = Path(__file__).resolve().parents[2]

#: The root model's one turn: say what the context is.
DESCRIBE = (
    "```repl\n"
    "if not isinstance(context, str):\n"
    "    FINAL('files: ' + ', '.join(sorted(context)))\n"
    "else:\n"
    "    FINAL('text: ' + context.strip()[:60])\n"
    "```"
)
MODEL = "openai/gpt-4o-mini"  # priced, so a USD budget applies


def tree(tmp_path: Path) -> tuple[Path, Path]:
    """An allowed root with files, a folder and links out, and a secret outside it."""
    root = tmp_path / "root"
    (root / "docs" / ".git").mkdir(parents=True)
    (root / "notes.txt").write_text("The code is 7391.\n")
    (root / "docs" / "a.md").write_text("alpha\n")
    (root / "docs" / "b.md").write_text("beta\n")
    (root / "docs" / "blob.bin").write_bytes(b"\x00\xff\x00")
    (root / "docs" / ".git" / "HEAD").write_text("hidden\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("the secret\n")
    (root / "link-out.txt").symlink_to(outside)
    (root / "docs" / "also-out.txt").symlink_to(outside)
    (root / "dir-out").symlink_to(tmp_path)
    return root, outside


async def with_client(
    args: list[str], env: dict[str, str], work: Callable[[Any], Awaitable[None]]
) -> None:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "recursa", "mcp", *args], env=env, cwd=REPO
    )
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await work(session)


def reply_of(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    text = "".join(getattr(block, "text", "") for block in result.content)
    structured = result.structured_content
    return dict(structured) if structured else json.loads(text)


def error_of(result: Any) -> str:
    assert result.is_error, result
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.slow
@requires("mcp")
async def test_ask_over_files_folders_and_text_with_the_sdk_client(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    root, _ = tree(tmp_path)
    traces = tmp_path / "traces"

    async def work(session: Any) -> None:
        tools = await session.list_tools()
        (ask,) = tools.tools
        assert ask.name == "ask"
        assert {"query", "paths", "text", "model", "max_depth", "budget_usd"} <= set(
            ask.input_schema["properties"]
        )

        one = reply_of(await session.call_tool("ask", {"query": "code?", "paths": ["notes.txt"]}))
        assert one["answer"] == "text: The code is 7391."
        assert one["stopped"] is None and one["error"] is None
        assert one["calls"] == 1 and one["cost_usd"] is not None and one["files"] == 1
        assert Path(one["trace"]).is_file() and Path(one["trace"]).parent == traces

        printed = reply_of(
            await session.call_tool("ask", {"query": "noisy", "text": "x"})
        )  # the cell printed to the worker's stdout and fd 1 before answering
        assert printed["answer"] == "quiet"

        folder = reply_of(
            await session.call_tool("ask", {"query": "q", "paths": [str(root / "docs")]})
        )
        # UTF-8 files only; hidden folders and links leaving the root are left out
        assert folder["answer"] == "files: docs/a.md, docs/b.md" and folder["files"] == 2

        text = reply_of(await session.call_tool("ask", {"query": "q", "text": "hello there"}))
        assert text["answer"] == "text: hello there" and text["files"] == 0

        tight = reply_of(
            await session.call_tool(
                "ask", {"query": "q", "text": "x", "max_depth": 5, "budget_usd": 100.0}
            )
        )
        assert (tight["max_depth"], tight["budget_usd"]) == (1, 0.5)  # the server's caps hold
        lower = reply_of(
            await session.call_tool(
                "ask", {"query": "q", "text": "x", "max_depth": 0, "budget_usd": 0.01}
            )
        )
        assert (lower["max_depth"], lower["budget_usd"]) == (0, 0.01)

        refused = error_of(
            await session.call_tool("ask", {"query": "q", "text": "x", "model": "openai/gpt-5"})
        )
        assert "not served here" in refused

    noisy = "```repl\nimport os\nprint('out')\nos.write(1, b'raw\\n')\nFINAL('quiet')\n```"
    with ScriptedServer(http_router({"noisy": [noisy], "": [DESCRIBE]})) as server:
        await with_client(
            # the default sandbox: its worker's output must never reach the protocol's stdout
            ["--root", str(root), "--model", MODEL, "--base-url", server.url,
             "--sandbox", "subprocess", "--budget-usd", "0.5", "--trace-dir", str(traces)],
            clean_env, work,
        )  # fmt: skip


@requires("mcp")
async def test_paths_that_leave_the_roots_are_refused_with_a_tool_error(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    root, outside = tree(tmp_path)

    async def work(session: Any) -> None:
        for escape in [
            "../secret.txt",
            str(outside),
            "link-out.txt",
            "docs/also-out.txt",
            "dir-out/secret.txt",
            "docs/../../secret.txt",
            "/etc/passwd",
        ]:
            message = error_of(await session.call_tool("ask", {"query": "q", "paths": [escape]}))
            assert "outside the allowed roots" in message, (escape, message)
        missing = error_of(await session.call_tool("ask", {"query": "q", "paths": ["nope.txt"]}))
        assert "no such file" in missing
        both = error_of(
            await session.call_tool("ask", {"query": "q", "paths": ["notes.txt"], "text": "x"})
        )
        assert "not both" in both
        assert "the query is empty" in error_of(
            await session.call_tool("ask", {"query": " ", "text": "x"})
        )

    with ScriptedServer(http_router([DESCRIBE])) as server:
        await with_client(
            ["--root", str(root), "--model", MODEL, "--base-url", server.url,
             "--sandbox", "inprocess", "--no-trace"],
            clean_env, work,
        )  # fmt: skip
        assert server.requests == []  # nothing refused reached a model


@pytest.mark.slow
@requires("mcp")
async def test_streamable_http_with_port(tmp_path: Path, clean_env: dict[str, str]) -> None:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    root, _ = tree(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ScriptedServer(http_router([DESCRIBE])) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recursa", "mcp", "--port", str(port), "--root", str(root),
             "--model", MODEL, "--base-url", server.url, "--sandbox", "inprocess", "--no-trace"],
            env=clean_env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.1)
            async with (
                streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                got = reply_of(
                    await session.call_tool("ask", {"query": "q", "paths": ["notes.txt"]})
                )
                assert got["answer"] == "text: The code is 7391."
                assert "outside the allowed roots" in error_of(
                    await session.call_tool("ask", {"query": "q", "paths": ["../secret.txt"]})
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_roots_resolve_relative_paths_against_the_first_root(tmp_path: Path) -> None:
    root, outside = tree(tmp_path)
    assert not Roots.of([root]).contains(outside.resolve())
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x\n")
    roots = Roots.of([root, other])
    assert roots.resolve("notes.txt") == (root / "notes.txt").resolve()
    assert roots.resolve(str(other / "x.txt")) == (other / "x.txt").resolve()
    with pytest.raises(PathRefused, match="outside the allowed roots"):
        roots.resolve("../other/../secret.txt")
    context, files = context_for(roots, ["notes.txt", str(other)], None)
    assert files == 2 and isinstance(context, Context) and context.info.kind == "files"
    assert sorted(context.info.keys) == ["notes.txt", "x.txt"]
    assert context.skipped == []
    context.cleanup()
    with pytest.raises(PathRefused, match=r"UTF-8|NUL|binary"):
        context_for(roots, ["docs/blob.bin", "notes.txt"], None)
    with pytest.raises(ConfigError, match="not a directory"):
        Roots.of([root / "notes.txt"])


def test_call_arguments_only_tighten_the_servers_settings() -> None:
    from recursa.budget import Budget

    server = Settings(model="openai/a", sub_model="openai/b", allowed_models=("openai/c",),
                      max_depth=2, budget=Budget(usd=1.0, calls=10))  # fmt: skip
    assert tightened(server, model=None, max_depth=None, budget_usd=None) is server
    got = tightened(server, model="openai/c", max_depth=9, budget_usd=5.0)
    assert (got.model, got.max_depth, got.budget) == ("openai/c", 2, Budget(usd=1.0, calls=10))
    got = tightened(server, model="openai/b", max_depth=0, budget_usd=0.25)
    assert (got.max_depth, got.budget) == (0, Budget(usd=0.25, calls=10))
    unlimited = Settings(model="openai/a")
    assert tightened(unlimited, model=None, max_depth=None, budget_usd=2.0).budget == Budget(
        usd=2.0
    )
    for bad in ({"model": "openai/z"}, {"max_depth": -1}, {"budget_usd": 0.0}):
        args: dict[str, Any] = {"model": None, "max_depth": None, "budget_usd": None, **bad}
        with pytest.raises(ConfigError):
            tightened(server, **args)


def test_without_the_extra_one_line_names_the_install_and_exits_2(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    fake = tmp_path / "shadow" / "mcp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named mcp')\n")
    env = {**clean_env, "PYTHONPATH": f"{fake.parent}{os.pathsep}{REPO}"}
    proc = subprocess.run(
        [sys.executable, "-m", "recursa", "mcp"], capture_output=True, text=True, env=env,
        timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr
        == "recursa: error: the MCP server needs the mcp package: pip install 'recursa[mcp]'\n"
    )


def test_recursa_help_lists_mcp_without_importing_the_sdk(clean_env: dict[str, str]) -> None:
    code = (
        "import sys; from click.testing import CliRunner; from recursa.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); "
        "print(r.exit_code, ' mcp ' in r.output, any(m.split('.')[0] == 'mcp' for m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env, timeout=60
    )
    assert proc.stdout.split() == ["0", "True", "False"], proc.stderr
