"""Resume a stopped run: replay what its trace recorded, then go on live.

A run stopped by Ctrl-C, a crash or a budget leaves a trace. Resuming starts
the same query over the same context; every model request that the trace
answered is answered from it again (the cells re-run, so the REPL's variables
come back), and the first request it did not record goes to the live model.
Replayed calls cost nothing: they were paid for in the stopped run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from .models.base import Completion, Message, Model, ModelWrapper
from .replay import Recording, ReplayMismatch


class ResumingModel(ModelWrapper):
    """A live model that first answers from a recording, while the run follows it."""

    def __init__(self, live: Model, recording: Recording) -> None:
        super().__init__(live)
        self.recording = recording
        self.replayed = 0

    async def __aenter__(self) -> ResumingModel:
        enter = getattr(self.inner, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        leave = getattr(self.inner, "__aexit__", None)
        if leave is not None:
            await leave(*exc)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        try:
            call = self.recording.take(self.spec, messages)
        except ReplayMismatch:
            call = None
        if call is None or call.cancelled or call.error is not None or call.text is None:
            return await self.inner.complete(
                messages, max_tokens=max_tokens, temperature=temperature
            )
        try:
            recorded = self.recording.completion(call)
        except ReplayMismatch:  # a reply the trace truncated: ask again
            return await self.inner.complete(
                messages, max_tokens=max_tokens, temperature=temperature
            )
        self.replayed += 1
        return dataclasses.replace(recorded, cost_usd=0.0, cache_hit=True)


def load_recording(trace: str | Path) -> Recording:
    """The stopped run's recording, matched leniently (printed output may differ)."""
    return Recording.load(trace, strict=False)
