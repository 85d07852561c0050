"""Whatever a sandbox backend returns, the model is shown at most ``max_output_chars`` of it."""

from __future__ import annotations

from typing import Any

from recursa import RLM
from recursa.models.scripted import ScriptedModel
from recursa.repl.base import CellResult, SandboxConfig
from recursa.testing import router


class FloodingSandbox:
    """A backend whose cells report megabytes of output and error (as a forged frame could)."""

    isolation = "none: test backend"

    async def start(self, config: SandboxConfig) -> None:
        pass

    async def run(self, code: str, *, timeout: float) -> CellResult:
        return CellResult("o" * 3_000_000, error="e" * 3_000_000)

    async def close(self) -> None:
        pass


def test_a_flood_of_output_is_cut_before_the_model_sees_it() -> None:
    seen: list[Any] = []
    route = router(["```repl\nprint(1)\n```", "FINAL(done)"])

    def reply(messages: list[Any]) -> str:
        seen.append(messages)
        return route(messages)

    rlm = RLM(ScriptedModel(reply), sandbox=FloodingSandbox, max_output_chars=5_000)
    result = rlm.completion("q", "ctx")
    assert result.answer == "done"
    feedback = str(seen[-1][-1]["content"])
    assert len(feedback) < 20_000
    assert "more characters]" in feedback
