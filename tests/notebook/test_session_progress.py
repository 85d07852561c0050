"""``rlm.session(ctx)`` on a real Jupyter kernel (nbclient + ipykernel) against a local
scripted server: each question shows its live progress in the cell, as
``RLM.completion`` does (one display per question, redrawn in place, left as a line of
totals), blocking or awaited, and none with ``progress=False``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from recursa.testing import is_root_turn
from tests.helpers import requires
from tests.notebook.test_notebook import outputs, recording_client, tagged

#: Every root turn counts on in the session's REPL and asks a sub-model; every second
#: turn answers, so each question takes two turns and four requests.
COUNT = (
    "```repl\ntry:\n    n += 1\nexcept NameError:\n    n = 1\n"
    "print(llm_query('say hi'), n)\nif n % 2 == 0:\n    FINAL(f'counted {n}')\n```"
)
#: Each request waits this long, so a question's cell has time to redraw.
REQUEST_S = 0.4

SETUP = """\
import os
from recursa import RLM

rlm = RLM("openai/scripted", base_url=os.environ["RECURSA_NOTEBOOK_BASE_URL"],
          sandbox="subprocess")
context = "filler\\n" * 1000
"""
BLOCKING = """\
with rlm.session(context) as session:
    first = session.completion("count on")
    second = session.completion("count on again")
print("blocking:", first.answer, second.answer)
"""
AWAITED = """\
async with rlm.session(context) as session:
    awaited = await session.acompletion("count on")
print("awaited:", awaited.answer)
"""
QUIET = """\
with rlm.session(context) as session:
    quiet = session.completion("count on", progress=False)
print("quiet:", quiet.answer)
"""


def reply(body: dict[str, Any]) -> str:
    time.sleep(REQUEST_S)
    return COUNT if is_root_turn(body["messages"]) else "hi"


def displays(messages: list[tuple[str, str | None, str]]) -> dict[str, list[str]]:
    """Each display a cell made, by display id: the HTML of its updates, in order."""
    shown: dict[str, list[str]] = {
        key: [] for kind, key, _ in messages if kind == "display_data" and key
    }
    for kind, key, html in messages:
        if kind == "update_display_data":
            assert key in shown, messages  # an update of a display the cell made
            shown[key].append(html)
    return shown


def notebook_of(setup: str, **tagged_cells: str) -> Any:
    """A notebook of code cells: ``setup``, then each source tagged with its name."""
    from nbformat.v4 import new_code_cell, new_notebook  # untyped

    cells = [new_code_cell(setup)]  # type: ignore[no-untyped-call]
    for tag, source in tagged_cells.items():
        cells.append(new_code_cell(source, metadata={"tags": [tag]}))  # type: ignore[no-untyped-call]
    return new_notebook(cells=cells)  # type: ignore[no-untyped-call]


@pytest.mark.slow
@requires("nbclient", "ipykernel", "nbformat")
def test_a_sessions_questions_show_their_progress_in_the_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat

    from recursa.testing import ScriptedServer

    notebook = notebook_of(SETUP, blocking=BLOCKING, awaited=AWAITED, quiet=QUIET)
    nbformat.validate(notebook)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    with ScriptedServer(reply) as server:
        monkeypatch.setenv("RECURSA_NOTEBOOK_BASE_URL", server.url)
        client = recording_client(
            notebook, kernel_name="python3", resources={"metadata": {"path": tmp_path}},
            timeout=120,
        )  # fmt: skip
        notebook = client.execute()  # a failing cell raises, with its traceback
    code = [c for c in notebook.cells if c.cell_type == "code"]

    (blocking,) = tagged(code, "blocking")
    assert "blocking: counted 2 counted 4" in outputs(blocking)[0]  # the REPL was kept
    (awaited,) = tagged(code, "awaited")
    assert "awaited: counted 2" in outputs(awaited)[0]
    for cell, questions in ((blocking, 2), (awaited, 1)):
        shown = displays(client.messages[cell.id])
        assert len(shown) == questions, client.messages[cell.id]  # one display per question
        for updates in shown.values():
            assert len(updates) >= 3  # redrawn while it ran (4 requests), then ended
            assert any("running" in html and "<td>n0</td>" in html for html in updates[:-1])
            assert "recursa</b> done" in updates[-1] and "calls 4" in updates[-1]
        finals = [o["data"]["text/html"] for o in cell.outputs if o.output_type == "display_data"]
        assert finals == [updates[-1] for updates in shown.values()]  # as nbclient applied them

    (quiet,) = tagged(code, "quiet")
    assert "quiet: counted 2" in outputs(quiet)[0]
    assert [m for m in client.messages[quiet.id] if m[0] != "stream"] == []
