"""`recursa serve` from the command line (wired in cli.py): start, answer, stop on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import openai

from recursa.testing import ScriptedServer, http_router


def test_cli_serve_answers_and_stops_on_interrupt(clean_env: dict[str, str]) -> None:
    turns = ["```repl\nFINAL(f'{len(context)} chars')\n```"]
    with ScriptedServer(http_router(turns)) as backend:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recursa", "serve", "--port", "0", "--model", "openai/root",
             "--base-url", backend.url, "--sandbox", "inprocess", "--api-key", "k"],
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
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
