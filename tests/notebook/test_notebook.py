"""``recursa.ipynb`` executed on a real Jupyter kernel (nbclient + ipykernel) against a local
scripted OpenAI-compatible server: the blocking API works inside the kernel's event loop,
``await`` works too, a session keeps its REPL, a result displays as escaped HTML, a run
shows its progress live in its cell (one display, updated in place, at most a few times
a second; none with ``progress=False``), and a trace renders with ``TraceView``."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from recursa.testing import http_router
from tests.helpers import requires

NOTEBOOK = Path(__file__).with_name("recursa.ipynb")

ROOT = {
    "What is the code": [
        "```repl\nprint(llm_query('say hi'))\nFINAL(context.split('code is ')[1][:4])\n```"
    ],
    "session": ["```repl\nx = 41\nFINAL('remembered')\n```", "```repl\nFINAL(x + 1)\n```"],
    "script please": ["```repl\nFINAL('<script>alert(1)</script>')\n```"],
    "hang until interrupted": ["```repl\nFINAL('too late')\n```"],
    "count in turns": [
        "```repl\nn = 1\nprint('turn', n)\n```",
        "```repl\nn += 1\nprint(llm_query('say hi'), n)\n```",
        "```repl\nFINAL(f'counted {n + 1}')\n```",
    ],
}
#: Each request of the run of a few turns waits this long, so its cell has time to redraw.
TURN_S = 0.4


def outputs(cell: Any) -> tuple[str, str]:
    """A cell's printed text and its HTML display."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    html = "".join(
        o.get("data", {}).get("text/html", "")
        for o in cell.outputs
        if o.output_type in ("execute_result", "display_data")
    )
    return text, html


@pytest.mark.slow
@requires("nbclient", "ipykernel", "nbformat")
def test_the_notebook_runs_on_a_real_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat

    from recursa.testing import ScriptedServer

    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    release = threading.Event()
    route = http_router(ROOT)

    def reply(body: Any) -> str:
        text = json.dumps(body)
        if "hang until interrupted" in text:
            release.wait(60)  # until the kernel has been interrupted
        if "count in turns" in text or "say hi" in text:
            time.sleep(TURN_S)
        return route(body)

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("RECURSA_NOTEBOOK_TRACE_DIR", str(tmp_path))
    with ScriptedServer(reply) as server:
        monkeypatch.setenv("RECURSA_NOTEBOOK_BASE_URL", server.url)
        client = recording_client(
            notebook,
            kernel_name="python3",
            resources={"metadata": {"path": tmp_path}},
            # the cell tagged "interrupt" is interrupted (as "interrupt kernel" does) after 3 s
            timeout_func=lambda cell: 3 if "interrupt" in cell.metadata.get("tags", []) else 120,
            interrupt_on_timeout=True,
        )
        try:
            notebook = client.execute()  # a failing cell raises, with its traceback
        finally:
            release.set()
    code = [c for c in notebook.cells if c.cell_type == "code"]

    text = "".join(outputs(c)[0] for c in code)
    assert "answer: 7391" in text and "awaited: 7391" in text
    assert "session: remembered 42" in text and "one-shot: 7391" in text

    _, html = outputs(code[1])  # the first result, displayed
    assert "7391" in html and "depth 1:" in html
    assert f"recursa view {tmp_path / 'first.jsonl'}" in html
    _, hostile = outputs(code[5])
    assert "<script>" not in hostile and "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile

    # Interrupting the kernel stops the run as Ctrl-C does: it is cancelled, cleans up (its
    # trace gets run_end), KeyboardInterrupt reaches the cell, and the kernel goes on.
    (interrupted,) = [c for c in code if "interrupt" in c.metadata.get("tags", [])]
    assert [o.get("ename") for o in interrupted.outputs if o.output_type == "error"] == [
        "KeyboardInterrupt"
    ]
    assert "after the interrupt: run_end" in text

    # The run of a few turns: one display in its cell, made by the run, then redrawn in place.
    (live,) = tagged(code, "progress")
    assert "turns: counted 3 3" in outputs(live)[0]
    messages = client.messages[live.id]
    shown = [m for m in messages if m[0] == "display_data" and m[1]]
    assert len(shown) == 1, messages
    display_id = shown[0][1]
    updates = [html for kind, key, html in messages if kind == "update_display_data"]
    assert all(key == display_id for kind, key, _ in messages if kind == "update_display_data")
    assert len(updates) >= 3  # redrawn while it ran (4 requests of TURN_S each), then ended
    timing = live.metadata["execution"]  # nbclient's record of the cell's busy time
    busy = datetime.fromisoformat(timing["iopub.status.idle"]) - datetime.fromisoformat(
        timing["iopub.status.busy"]
    )
    assert len(updates) <= 4 * busy.total_seconds() + 2  # throttled: at most 4 a second
    assert any("running" in html and "<td>n0</td>" in html for html in updates[:-1])
    assert "recursa</b> done" in updates[-1] and "calls 4" in updates[-1]
    # nbclient applied the updates: the cell's display holds the final line
    (final,) = [o for o in live.outputs if o.output_type == "display_data"]
    assert final["data"]["text/html"] == updates[-1]

    (quiet,) = tagged(code, "no-progress")
    assert "quiet: 7391" in outputs(quiet)[0]
    assert [m for m in client.messages[quiet.id] if m[0] != "stream"] == []

    # A trace rendered in the notebook: the tree in brief, and how to open it.
    (viewed,) = tagged(code, "trace-view")
    _, view = outputs(viewed)
    assert "count in turns" in view and "counted 3" in view and "answered" in view
    assert "depth 0: 1 node, 3 iterations (n0 3)" in view
    assert "calls</th><td>4</td>" in view
    assert f"recursa view {tmp_path / 'turns.jsonl'}" in view


def tagged(cells: list[Any], tag: str) -> list[Any]:
    return [c for c in cells if tag in c.metadata.get("tags", [])]


def recording_client(notebook: Any, **options: Any) -> Any:
    """An nbclient that also keeps each cell's output messages as they came, in
    ``client.messages[cell id]``: ``(type, display id, html)`` each."""
    from nbclient import NotebookClient

    class RecordingClient(NotebookClient):
        messages: dict[str, list[tuple[str, str | None, str]]]

        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            kind, content = msg["msg_type"], msg["content"]
            if kind in ("display_data", "update_display_data", "execute_result", "stream"):
                display_id = (content.get("transient") or {}).get("display_id")
                html = content.get("data", {}).get("text/html", "")
                self.messages.setdefault(cell.id, []).append((kind, display_id, html))
            return super().process_message(msg, cell, cell_index)

    client = RecordingClient(notebook, **options)
    client.messages = {}
    return client
