"""Model sources: where a run gets its models (spec -> :class:`Model`).

The engine is handed a source and never decides where a model comes from: a
live source resolves ``"provider/name"`` through the provider registry (and
the response cache); a resumed run wraps a source so recorded calls are
answered from a trace first (:mod:`recursa.resume`). Models that belong
together, such as the replay models of one recording, name their siblings
themselves (:meth:`Sibling.sibling`), so a sub-call that names another model
stays inside the same recording instead of reaching a provider.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .base import Model, ModelOptions
from .cache import ResponseCache, with_cache
from .registry import resolve


class ModelSource(Protocol):
    """The models of one run: the root's, the sub-calls' default, and any other by spec."""

    @property
    def root(self) -> Model: ...

    @property
    def sub(self) -> Model: ...

    def resolve(self, spec: str) -> Model:
        """A model a sub-call names (``llm_query(..., model=spec)``); the engine asks once
        per spec per run and holds its connections until the run ends."""
        ...


@runtime_checkable
class Sibling(Protocol):
    """A model that knows the other models of its kind (the replay models of one trace)."""

    def sibling(self, spec: str) -> Model: ...


class LiveModels:
    """Models resolved through the provider registry, each wrapped in the response cache."""

    def __init__(
        self,
        root: Model,
        sub: Model,
        options: ModelOptions,
        cache: ResponseCache | None = None,
    ) -> None:
        self._root = root
        self._sub = sub
        self.options = options
        self.cache = cache

    @property
    def root(self) -> Model:
        return self._root

    @property
    def sub(self) -> Model:
        return self._sub

    def resolve(self, spec: str) -> Model:
        if isinstance(self._sub, Sibling):
            return self._sub.sibling(spec)
        return with_cache(resolve(spec, self.options), self.cache)
