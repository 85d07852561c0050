"""What one completion returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .budget import UsageReport

#: Why a run ended without a plain answer: a budget ran out; the iterations ran out (the
#: answer then comes from one last extraction call, or the REPL's held ``answer``);
#: ``max_errors`` cells in a row failed (the held ``answer``); or it failed (an invalid
#: final answer, an error). ``None``: it answered.
Stopped = Literal["budget", "iterations", "errors", "error"]

#: ``result.isolation`` of a run whose root never needed its sandbox (it answered
#: without code, so the start behind the first turn was cancelled).
NO_SANDBOX = "not started: no code ran"


@dataclass
class Result:
    """The outcome of one completion."""

    answer: str
    usage: UsageReport
    iterations: int
    depth_reached: int
    stopped: Stopped | None
    isolation: str
    duration_s: float
    run_id: str
    trace: Path | None = None
    error: str | None = None
    output: Any = None  # the validated object, when an output_type was given

    @property
    def cost_usd(self) -> float | None:
        """Total cost in USD; ``None`` when some model in the tree is unpriced."""
        return self.usage.cost_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "iterations": self.iterations,
            "depth_reached": self.depth_reached,
            "stopped": self.stopped,
            "trace": str(self.trace) if self.trace else None,
            "isolation": self.isolation,
            "duration_s": round(self.duration_s, 3),
            "run_id": self.run_id,
            "error": self.error,
        }
