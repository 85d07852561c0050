"""What a request may choose for its run, and how an RLM is made for it.

A request can only tighten the server's limits: its ``budget`` limit by limit
(:func:`tighter`), its ``max_depth`` and ``max_iterations`` at most the server's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..budget import Budget
from ..rlm import RLM

BUDGET_FIELDS = ("usd", "tokens", "calls", "seconds")


@dataclass(frozen=True)
class RunOptions:
    """A request's choices for its run; ``None`` keeps the server's setting."""

    model: str | None = None
    max_depth: int | None = None
    max_iterations: int | None = None
    budget: Budget | None = None


RLMFactory = Callable[[RunOptions], RLM]


def tighter(server: Budget | None, requested: Budget | None) -> Budget | None:
    """The stricter of two budgets, limit by limit (a request cannot raise the server's)."""
    if requested is None:
        return server
    if server is None:
        return requested
    limits: dict[str, Any] = {}
    for name in BUDGET_FIELDS:
        a, b = getattr(server, name), getattr(requested, name)
        limits[name] = a if b is None else b if a is None else min(a, b)
    return Budget(**limits)


def rlm_factory(
    template: RLM,
    *,
    trace_dir: str | Path | None = None,
    allowed_models: Collection[str] = (),
) -> RLMFactory:
    """Runs configured like ``template``, with each request's :class:`RunOptions` applied.

    Each run is ``template.with_settings(...)``: it shares the template's tools, cache
    and (unless the request names another model) its model objects, whose connections
    the server holds open across runs. The budget is the stricter of the template's and
    the request's (:func:`tighter`); ``max_depth`` and ``max_iterations`` are the
    request's only where they are lower than the template's. Traces: one file per run
    under ``trace_dir`` when given; with ``template.trace=True`` the RLM's own per-run
    files; otherwise none (one fixed trace path would be overwritten by concurrent runs).

    ``allowed_models`` (the server's ``--allow-model`` list) join the template's
    ``Settings.allowed_models``: a model the server lets a request choose as its root
    is also one that the run's code may call in ``llm_query(model=...)``.
    """
    directory = Path(trace_dir) if trace_dir is not None else None
    allowed = tuple(dict.fromkeys((*template.settings.allowed_models, *sorted(allowed_models))))

    def make(options: RunOptions) -> RLM:
        changes: dict[str, Any] = {"budget": tighter(template.budget, options.budget)}
        if allowed != template.settings.allowed_models:
            changes["allowed_models"] = allowed
        if options.model is not None:
            changes["model"] = options.model
        if options.max_depth is not None:
            changes["max_depth"] = min(options.max_depth, template.max_depth)
        if options.max_iterations is not None:
            changes["max_iterations"] = min(options.max_iterations, template.max_iterations)
        if directory is not None:  # a new file per run, named by the run's id
            changes["trace"] = True
            changes["runs_dir"] = directory
        elif template.trace is not True:
            changes["trace"] = None
        return template.with_settings(**changes)

    return make
