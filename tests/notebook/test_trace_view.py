"""``recursa.notebook`` outside a kernel: a trace shown as HTML (finished, interrupted, or
holding hostile text), and a run outside a notebook that neither imports IPython nor
shows anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from recursa.models.scripted import ScriptedModel
from recursa.notebook import TraceView, cell_progress, in_kernel
from recursa.rlm import RLM
from recursa.testing import router

CONTEXT = "filler\n" * 100 + "The code is 7391.\n"
TREE = {
    "outer": [
        "```repl\nparts = rlm_batch(['inner a', 'inner b'], contexts=[context[:50], context[50:]])"
        "\nprint(parts)\n```",
        "```repl\nFINAL('<script>x</script> ' + ' '.join(parts))\n```",
    ],
    "inner": ["```repl\nprint(1)\n```", "```repl\nFINAL('child')\n```"],
}


def traced_run(tmp_path: Path) -> Path:
    trace = tmp_path / "tree.jsonl"
    rlm = RLM(ScriptedModel(router(TREE)), max_depth=2, sandbox="inprocess", trace=trace)
    rlm.completion("outer <b>query</b>", CONTEXT)
    return trace


def test_a_trace_renders_with_its_tree_by_depth(tmp_path: Path) -> None:
    trace = traced_run(tmp_path)
    view = TraceView.load(trace)
    assert (view.status, view.answer) == ("answered", "<script>x</script> child child")
    assert [(row.depth, len(row.nodes), row.iterations) for row in view.tree] == [
        (0, 1, 2),
        (1, 2, 4),
    ]
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert view.calls == sum(e["type"] == "model_call" for e in events) == 6
    html = view._repr_html_()
    assert "<script>" not in html and "<b>query</b>" not in html  # the text is escaped
    assert "outer &lt;b&gt;query&lt;/b&gt;" in html and "&lt;script&gt;x" in html
    assert "depth 0: 1 node, 2 iterations (n0 2)" in html
    assert "depth 1: 2 nodes, 4 iterations (n1 2, n2 2)" in html
    assert f"recursa view {trace}" in html


def test_an_interrupted_trace_renders_as_incomplete(tmp_path: Path) -> None:
    trace = traced_run(tmp_path)
    lines = trace.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    root_end = next(i for i, e in enumerate(events) if e["type"] == "node_end" and not e["depth"])
    trace.write_text("\n".join(lines[:root_end]) + "\n")  # as if killed before the root ended
    view = TraceView.load(trace)
    assert view.answer is None and view.status.startswith("running?")
    assert view.tree[0].nodes == (("n0", 2),)  # its turns so far, counted from the events
    html = view._repr_html_()
    assert "incomplete (running or killed)" in html and "(no answer yet)" in html


def test_a_result_shows_its_trace_as_a_trace_view_does(tmp_path: Path) -> None:
    trace = tmp_path / "one.jsonl"
    rlm = RLM(
        ScriptedModel(router(["```repl\nFINAL('ok')\n```"])), sandbox="inprocess", trace=trace
    )
    result = rlm.completion("q", CONTEXT)
    line = f"recursa.notebook.TraceView.load(&#x27;{trace}&#x27;)"
    assert line in result._repr_html_() and line in TraceView.load(trace)._repr_html_()


def test_outside_a_kernel_nothing_is_shown_and_ipython_is_not_imported() -> None:
    import IPython  # imported, yet no shell runs: still no kernel

    assert IPython.get_ipython() is None and not in_kernel()
    with cell_progress(True) as sinks:
        assert sinks == []
    script = (
        "import sys\n"
        "from recursa.models.scripted import ScriptedModel\n"
        "from recursa.rlm import RLM\n"
        "from recursa.testing import router\n"
        "rlm = RLM(ScriptedModel(router(['```repl\\nFINAL(1)\\n```'])), sandbox='inprocess')\n"
        "print(rlm.completion('q', 'text').answer, 'IPython' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["1", "False"] and out.stderr == ""
