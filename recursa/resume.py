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
from .models.source import ModelSource
from .recording import Recording, ReplayMismatch
from .sampling import Sampling


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
        sampling: Sampling | None = None,
    ) -> Completion:
        try:
            call = self.recording.take(self.spec, messages)
        except ReplayMismatch:
            call = None
        if call is None or call.cancelled or call.error is not None or call.text is None:
            return await self.inner.complete(messages, max_tokens=max_tokens, sampling=sampling)
        try:
            recorded = self.recording.completion(call)
        except ReplayMismatch:  # a reply the trace truncated: ask again
            return await self.inner.complete(messages, max_tokens=max_tokens, sampling=sampling)
        self.replayed += 1
        return dataclasses.replace(recorded, cost_usd=0.0, cache_hit=True)


def load_recording(trace: str | Path) -> Recording:
    """The stopped run's recording, matched leniently (printed output may differ)."""
    return Recording.load(trace, strict=False)


class ResumingModels:
    """A model source whose every model answers from the stopped run's recording first.

    Built per run (a recording is used up as the run follows it), around the source the
    run would have used: the engine sees just another :class:`ModelSource`.
    """

    def __init__(self, live: ModelSource, recording: Recording) -> None:
        self.live = live
        self.recording = recording
        self._root = ResumingModel(live.root, recording)
        self._sub = self._root if live.sub is live.root else ResumingModel(live.sub, recording)

    @property
    def root(self) -> Model:
        return self._root

    @property
    def sub(self) -> Model:
        return self._sub

    def resolve(self, spec: str) -> Model:
        return ResumingModel(self.live.resolve(spec), self.recording)


def resuming(live: ModelSource, trace: str | Path) -> ResumingModels:
    """``live``, answering first from the trace of the stopped run ``trace``."""
    return ResumingModels(live, load_recording(trace))
