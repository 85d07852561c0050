"""``recursa chat`` on a real pseudo-terminal: the prompt_toolkit line reader shows its
prompt, answers /commands and ends on /exit."""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux pty")


def test_the_terminal_prompt_reads_commands(tmp_path: Path, clean_env: dict[str, str]) -> None:
    import pty

    context = tmp_path / "c.txt"
    context.write_text("hello world")
    env = {**clean_env, "XDG_STATE_HOME": str(tmp_path / "state")}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real CLI on the terminal
        os.execve(sys.executable, [sys.executable, "-m", "recursa", "chat", "-c", str(context),
                  "--model", "openai/x", "--base-url", "http://127.0.0.1:9/v1"], env)  # fmt: skip
    seen = b""

    def read_until(marker: bytes, seconds: float = 30) -> None:
        nonlocal seen
        end = time.monotonic() + seconds
        while marker not in seen and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    return

    read_until(b"you>")
    os.write(fd, b"/help\r")
    read_until(b"commands:")
    os.write(fd, b"/exit\r")
    _, status = os.waitpid(pid, 0)
    text = seen.decode(errors="replace")
    assert "you>" in text and "/vars" in text
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "state" / "recursa" / "chat_history").is_file()  # history kept
