"""``recursa.ipynb`` executed on a real Jupyter kernel (nbclient + ipykernel) against a local
scripted OpenAI-compatible server: the blocking API works inside the kernel's event loop,
``await`` works too, a session keeps its REPL, and a result displays as escaped HTML."""

from __future__ import annotations

import json
import threading
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
}


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
    from nbclient import NotebookClient

    from recursa.testing import ScriptedServer

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    release = threading.Event()
    route = http_router(ROOT)

    def reply(body: Any) -> str:
        if "hang until interrupted" in json.dumps(body):
            release.wait(60)  # until the kernel has been interrupted
        return route(body)

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("RECURSA_NOTEBOOK_TRACE_DIR", str(tmp_path))
    with ScriptedServer(reply) as server:
        monkeypatch.setenv("RECURSA_NOTEBOOK_BASE_URL", server.url)
        client = NotebookClient(
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
