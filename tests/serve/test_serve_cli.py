"""`recursa serve` from the command line (wired in cli.py): start, answer, stop on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import openai
import pytest

from recursa.testing import ScriptedServer, http_router


def test_cli_serve_answers_and_stops_on_interrupt(clean_env: dict[str, str]) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    turns = ["```repl\nFINAL(f'{len(context)} chars')\n```"]
    with ScriptedServer(http_router(turns)) as backend:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recursa", "serve", "--port", "0", "--model", "openai/root",
             "--base-url", backend.url, "--sandbox", "inprocess", "--api-key", "k",
             "--cors-origin", "http://page.example", "--max-body-mb", "1", "--body-timeout", "5",
             "--header-timeout", "5", "--max-connections", "50"],
            stderr=subprocess.PIPE, text=True, env=clean_env,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            found = re.search(r"serving on (http://127\.0\.0\.1:\d+/v1)", line)
            assert found, line
            with openai.OpenAI(base_url=found[1], api_key="k", max_retries=0) as client:
                reply = client.chat.completions.create(
                    model="recursa", messages=[{"role": "user", "content": "count me"}]
                )
            assert reply.choices[0].message.content == "8 chars"
            big = {"messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
            headers = {"authorization": "Bearer k", "origin": "http://page.example"}
            r = httpx.post(f"{found[1]}/chat/completions", json=big, headers=headers)
            assert r.status_code == 413  # --max-body-mb 1
            assert r.headers["access-control-allow-origin"] == "http://page.example"
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err


def test_cli_serve_without_its_extra_says_how_to_install_it(clean_env: dict[str, str]) -> None:
    code = (
        "import sys; sys.modules['starlette'] = sys.modules['uvicorn'] = None; "
        "from recursa.cli import entry; sys.argv = ['recursa', 'serve', '--model', 'openai/x']; "
        "entry()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env, timeout=60
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'recursa[serve]'" in lines[0], done.stderr
