"""Host memory is bounded in total per sandbox (issue 14): a cell that sends many large
prompts at once from threads, against a slow model, cannot make the host hold more than
the in-flight limit (``recursa.repl.channel.MAX_INFLIGHT_BYTES``); calls over it are
refused with an error the REPL sees, and the run goes on.

The host is a fresh interpreter, so its peak resident memory (``VmHWM`` in
``/proc/self/status``) is this scenario's alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, Linux sandbox")

HOST = textwrap.dedent(
    """
    import json, sys
    import recursa.repl.channel as channel
    from recursa import RLM
    from recursa.models.scripted import ScriptedModel
    from recursa.testing import router

    limit, threads, size = (int(a) for a in sys.argv[1:4])
    channel.MAX_INFLIGHT_BYTES = limit

    def peak():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    cell = f'''```repl
    import threading
    out = []
    def go():
        try:
            out.append(len(llm_query("x" * {size})))
        except Exception as exc:
            out.append("refused" if "refused" in str(exc) else repr(exc)[:200])
    pool = [threading.Thread(target=go) for _ in range({threads})]
    for t in pool: t.start()
    for t in pool: t.join()
    FINAL(json.dumps(out))
    ```'''
    model = ScriptedModel(router([cell], sub=lambda prompt: "ok"), latency=1.0)
    rlm = RLM(model, sandbox="subprocess")
    # warm up first: the imports and bytecode compiles of a first run (a fresh clone has
    # no .pyc files) must not count as memory the prompts made the host hold
    RLM(ScriptedModel(["```repl\\nFINAL('w')\\n```"]), sandbox="subprocess").completion("w", "w")
    before = peak()
    result = rlm.completion("q", "some context")
    print(json.dumps({"before": before, "after": peak(), "answer": result.answer}))
    """
)


def host_peak(limit: int, threads: int, size: int) -> tuple[int, list[object]]:
    """How much the host's peak memory grew, and what each thread's call returned."""
    proc = subprocess.run(
        [sys.executable, "-c", HOST, str(limit), str(threads), str(size)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["after"] - report["before"], json.loads(report["answer"])


@pytest.mark.slow  # about 6 s: hundreds of megabytes of prompts
def test_many_large_prompts_at_once_stay_within_the_in_flight_limit() -> None:
    limit, threads, size = 48 * 1024 * 1024, 16, 20_000_000  # 320 MB sent, 48 MiB allowed
    grown, outcomes = host_peak(limit, threads, size)
    answered = [o for o in outcomes if o == 2]  # len("ok")
    refused = [o for o in outcomes if o == "refused"]
    assert len(answered) + len(refused) == threads, outcomes
    assert answered and refused  # served what fits, refused the rest with an error
    # the host held what it admitted (plus the frame being decoded and the model call's
    # own copies), not all 320 MB: without the limit the peak grows by about 350 MB,
    # with it by about 60-100 MB
    assert grown < 3 * limit, f"the host's peak grew by {grown:,} bytes"
