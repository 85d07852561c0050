"""Child sandboxes are bounded: at most ``max_child_sandboxes`` children run at once per
depth, and a spent budget starts no child at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recursa import RLM, Budget
from recursa.models.scripted import ScriptedModel
from recursa.testing import router

CHILD = ["```repl\nimport time\ntime.sleep(0.2)\nFINAL('leaf')\n```"]


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _peak_children(events: list[dict[str, object]], depth: int) -> int:
    running = peak = 0
    for e in events:
        if e.get("depth") == depth and e["type"] in ("node_start", "node_end"):
            running += 1 if e["type"] == "node_start" else -1
            peak = max(peak, running)
    return peak


@pytest.mark.parametrize("sandbox", ["inprocess", "subprocess"])
def test_a_wide_rlm_batch_runs_at_most_max_children_at_once(sandbox: str, tmp_path: Path) -> None:
    root = ["```repl\nout = rlm_batch([f'child {i}' for i in range(8)])\nFINAL(str(out))\n```"]
    model = ScriptedModel(router({"child": CHILD, "": root}))
    trace = tmp_path / "t.jsonl"
    rlm = RLM(model, max_depth=2, sandbox=sandbox, max_child_sandboxes=2, trace=trace)
    result = rlm.completion("q", context="c")
    assert result.answer == str(["leaf"] * 8)
    events = _events(trace)
    assert sum(e["type"] == "node_start" and e["depth"] == 1 for e in events) == 8
    assert _peak_children(events, 1) == 2


def test_nested_children_cannot_deadlock_on_the_limit(tmp_path: Path) -> None:
    middle = ["```repl\nFINAL(rlm_query('grandchild please'))\n```"]
    root = ["```repl\nFINAL(str(rlm_batch(['middle 1', 'middle 2', 'middle 3'])))\n```"]
    model = ScriptedModel(router({"grandchild": CHILD, "middle": middle, "": root}))
    rlm = RLM(model, max_depth=3, sandbox="inprocess", max_child_sandboxes=1)
    assert rlm.completion("q", context="c").answer == str(["leaf"] * 3)


@pytest.mark.parametrize("sandbox", ["inprocess", "subprocess"])
def test_a_spent_call_budget_starts_no_child(sandbox: str, tmp_path: Path) -> None:
    root = [
        "```repl\nanswer['content'] = 'root partial'\n"
        "out = rlm_batch([f'child {i}' for i in range(24)])\nprint(out[0])\n```"
    ]
    model = ScriptedModel(router({"child": CHILD, "": root}))
    trace = tmp_path / "t.jsonl"
    rlm = RLM(model, max_depth=2, sandbox=sandbox, budget=Budget(calls=1), trace=trace)
    result = rlm.completion("q", context="c")
    assert (result.answer, result.stopped) == ("root partial", "budget")
    events = _events(trace)
    assert [e for e in events if e["type"] == "node_start" and e["depth"] == 1] == []
    cells = [e for e in events if e["type"] == "cell"]
    assert "budget exhausted: calls" in str(cells[0]["output"])


def test_max_children_flag(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from recursa.cli_options import rlm_options, settings_from_options

    seen: dict[str, object] = {}

    import click

    @click.command()
    @rlm_options()
    def probe(**options: object) -> None:
        seen["settings"] = settings_from_options(options, model="scripted/x")

    result = CliRunner().invoke(
        probe, ["--max-children", "3", "--request-timeout", "7", "--allow-model", "a/b",
                "--allow-model", "c/d", "--price", "a/b=1,2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    s = seen["settings"]
    assert s.max_child_sandboxes == 3 and s.request_timeout == 7.0  # type: ignore[attr-defined]
    assert s.allowed_models == ("a/b", "c/d")  # type: ignore[attr-defined]
    assert s.prices == {"a/b": (1.0, 2.0)}  # type: ignore[attr-defined]
