"""The Recursive Language Model, as users call it: a thin facade over :mod:`recursa.engine`.

:class:`RLM` holds a frozen :class:`~recursa.settings.Settings`, the resolved
models and the tools, and hands them to the engine for each completion. A
completion is a tree: the root node's model writes code against ``context``
in a sandbox; ``llm_query`` in that code is one model request one level down,
``rlm_query`` a child node with its own sandbox and loop (until ``max_depth``).
Every request anywhere is charged to one :class:`~recursa.budget.Ledger`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .budget import Budget
from .context import Context, ContextInput
from .engine import Node, Run
from .errors import ConfigError
from .guards import check_query, run_blocking
from .models.base import Model, ModelOptions
from .models.cache import CacheOption, ResponseCache, open_cache, with_cache
from .models.registry import resolve
from .models.source import LiveModels, ModelSource
from .notebook import cell_progress
from .repl import sandbox_names
from .result import NO_SANDBOX, Result, Stopped
from .sampling import Sampling, SamplingInput
from .session import Session
from .settings import DEFAULT_TRACE_DIR, SandboxSpec, Settings
from .tools import Tool, ToolSet
from .trace import DEFAULT_MAX_CHARS, Sink

__all__ = ["DEFAULT_TRACE_DIR", "NO_SANDBOX", "RLM", "Result", "Stopped"]

#: Settings fields that shape how every model is reached: changing one re-resolves both.
_CONNECTION_FIELDS = frozenset({"base_url", "api_key", "request_timeout"})


class RLM:
    """A configured Recursive Language Model; call :meth:`completion` as often as you like.

    ``model`` and ``sub_model`` are ``"provider/name"`` strings or :class:`Model`
    objects; the keyword arguments are the fields of :class:`~recursa.settings.Settings`
    (see there). ``tools`` are host functions shown in the root's REPL (``sub_tools``
    in children's); ``sub_call_tools`` are host functions that model code may grant a
    sub-model, ``llm_query(prompt, tools=["name"])``, and never callables in any REPL.
    :meth:`from_settings` builds one from a ready ``Settings``.
    """

    def __init__(
        self,
        model: str | Model,
        sub_model: str | Model | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_depth: int = 1,
        max_iterations: int = 30,
        budget: Budget | None = None,
        sandbox: SandboxSpec = "subprocess",
        cell_timeout: float = 120.0,
        max_output_chars: int = 20_000,
        max_concurrency: int = 32,
        tools: Mapping[str, Tool] | None = None,
        sub_tools: Mapping[str, Tool] | None = None,
        sub_call_tools: Mapping[str, Tool] | None = None,
        trace: str | Path | bool | None = None,
        trace_max_chars: int = DEFAULT_MAX_CHARS,
        request_timeout: float = 300.0,
        compact_after_chars: int | None = None,
        cache: CacheOption = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        allowed_models: Sequence[str] = (),
        max_child_sandboxes: int | None = None,
        model_settings: SamplingInput = None,
        sub_model_settings: SamplingInput = None,
        max_errors: int | None = None,
        system_prompt: str | None = None,
        require_citations: bool = False,
        trace_prompts: str = "cut",
        sub_call_tool_steps: int = 8,
    ) -> None:
        extra: dict[str, Any] = {}
        if max_child_sandboxes is not None:
            extra["max_child_sandboxes"] = max_child_sandboxes
        settings = Settings(
            model=model, sub_model=sub_model, base_url=base_url, api_key=api_key,
            max_depth=max_depth, max_iterations=max_iterations, budget=budget,
            sandbox=sandbox, cell_timeout=cell_timeout, max_output_chars=max_output_chars,
            max_concurrency=max_concurrency, trace=trace, trace_max_chars=trace_max_chars,
            request_timeout=request_timeout, compact_after_chars=compact_after_chars,
            cache=cache, prices=dict(prices or {}), allowed_models=tuple(allowed_models),
            model_settings=Sampling.of(model_settings),
            sub_model_settings=(
                None if sub_model_settings is None else Sampling.of(sub_model_settings)
            ),
            max_errors=max_errors, system_prompt=system_prompt,
            require_citations=require_citations, trace_prompts=trace_prompts,
            sub_call_tool_steps=sub_call_tool_steps,
            **extra,
        )  # fmt: skip
        self._configure(settings, *tool_sets(tools, sub_tools, sub_call_tools))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        tools: Mapping[str, Tool] | None = None,
        sub_tools: Mapping[str, Tool] | None = None,
        sub_call_tools: Mapping[str, Tool] | None = None,
    ) -> RLM:
        """An RLM for ready ``settings`` (what the CLI, serve and bench build)."""
        rlm = cls.__new__(cls)
        rlm._configure(settings, *tool_sets(tools, sub_tools, sub_call_tools))
        return rlm

    def _configure(
        self,
        settings: Settings,
        tools: ToolSet,
        sub_tools: ToolSet,
        *,
        cache: ResponseCache | None = None,
        models: LiveModels | None = None,
    ) -> None:
        if isinstance(settings.sandbox, str) and settings.sandbox not in sandbox_names():
            known = ", ".join(sandbox_names())
            raise ConfigError(f"unknown sandbox {settings.sandbox!r} (choose one of: {known})")
        self.settings = settings
        self.tools = tools
        self.sub_tools = sub_tools
        self.cache = cache if cache is not None else open_cache(settings.cache)
        self._models = models or _live_models(settings, self.cache)

    def with_settings(self, **changes: Any) -> RLM:
        """A new RLM with ``settings.replace(**changes)``, sharing the tools and the open
        cache; models are resolved again only when a model field changed."""
        settings = self.settings.replace(**changes)
        models = self._models
        if _CONNECTION_FIELDS & changes.keys():
            models = _live_models(settings, self.cache)
        elif {"model", "sub_model"} & changes.keys():
            # only what changed is resolved again (a sub-model left unset follows the root)
            root = models.root
            if "model" in changes:
                root = with_cache(resolve(settings.model, models.options), self.cache)
            sub = root
            if settings.sub_model is not None:
                sub = models.sub
                if "sub_model" in changes:
                    sub = with_cache(resolve(settings.sub_model, models.options), self.cache)
            models = LiveModels(root, sub, models.options, self.cache)
        rlm = type(self).__new__(type(self))
        rlm._configure(settings, self.tools, self.sub_tools, cache=self.cache, models=models)
        return rlm

    # -- reading the settings ------------------------------------------------------------
    @property
    def model(self) -> Model:
        """The root model, resolved."""
        return self._models.root

    @property
    def sub_model(self) -> Model:
        """The default ``llm_query`` model, resolved (the root model unless set)."""
        return self._models.sub

    @property
    def options(self) -> ModelOptions:
        return self._models.options

    @property
    def max_depth(self) -> int:
        return self.settings.max_depth

    @property
    def max_iterations(self) -> int:
        return self.settings.max_iterations

    @property
    def budget(self) -> Budget | None:
        return self.settings.budget

    @property
    def trace(self) -> str | Path | bool | None:
        return self.settings.trace

    # -- completions -----------------------------------------------------------------
    def completion(
        self,
        query: str,
        context: ContextInput,
        *,
        output_type: Any = None,
        sinks: Sequence[Sink] = (),
        resume: str | Path | None = None,
        progress: bool = True,
    ) -> Result:
        """Answer ``query`` over ``context``. Blocks; see :meth:`acompletion`.

        Inside a running event loop (a notebook) the run goes on a private loop in a
        worker thread; ``await rlm.acompletion(...)`` runs it on the caller's loop.
        """
        return run_blocking(
            self.acompletion(
                query,
                context,
                output_type=output_type,
                sinks=sinks,
                resume=resume,
                progress=progress,
            )
        )

    async def acompletion(
        self,
        query: str,
        context: ContextInput,
        *,
        output_type: Any = None,
        sinks: Sequence[Sink] = (),
        resume: str | Path | None = None,
        progress: bool = True,
    ) -> Result:
        """Answer ``query`` over ``context`` (a str, Path, list[str] or dict).

        With ``output_type`` (a pydantic model or any type pydantic validates, or a
        JSON Schema dict) the final answer must validate; ``result.output`` holds it.
        ``resume`` is the trace of a stopped run of the same query and context: what it
        recorded is replayed at no cost (rebuilding the REPL), then the run goes on live.
        In a Jupyter kernel the cell shows the run's live progress (:mod:`recursa.notebook`)
        unless ``progress=False``; elsewhere ``progress`` changes nothing (the CLI draws its
        own, ``--progress``).
        """
        check_query(query)
        if isinstance(context, Context):
            ctx = context
        elif isinstance(context, str | dict):
            ctx = Context(context)
        else:  # files to find, check and pack (a 1 GB folder: seconds): off the event loop
            ctx = await asyncio.to_thread(Context, context)
        models: ModelSource = self._models
        if resume is not None:
            from .resume import resuming  # reads traces: imported only when resuming

            models = resuming(self._models, resume)
        output = None
        if output_type is not None:
            from .output import OutputSpec  # imports pydantic: only for typed answers

            output = OutputSpec(output_type)
        with cell_progress(progress) as shown:
            run = self.new_run([*sinks, *shown], models=models)
            root = Node.root(run, query, ctx)
            try:
                return await run.execute(root, lambda: root.solve(output))
            finally:
                ctx.cleanup()

    def new_run(self, sinks: Sequence[Sink] = (), *, models: ModelSource | None = None) -> Run:
        """The engine's state for one completion with these settings, models and tools."""
        return Run(
            self.settings,
            models or self._models,
            tools=self.tools,
            sub_tools=self.sub_tools,
            sinks=sinks,
        )

    def session(self, context: ContextInput) -> Session:
        """A conversation over one REPL: many queries, variables kept between them."""
        return Session(self, context)


def tool_sets(
    tools: Mapping[str, Tool] | None,
    sub_tools: Mapping[str, Tool] | None,
    sub_call_tools: Mapping[str, Tool] | None,
) -> tuple[ToolSet, ToolSet]:
    """The root's and the children's tools, each carrying the tools their sub-calls may
    be granted (``sub_call_tools``: never callables in a REPL)."""
    sub_call = ToolSet(sub_call_tools)
    return ToolSet(tools, sub_call=sub_call), ToolSet(sub_tools, sub_call=sub_call)


def _live_models(settings: Settings, cache: ResponseCache | None) -> LiveModels:
    options = ModelOptions(
        base_url=settings.base_url, api_key=settings.api_key, timeout=settings.request_timeout
    )
    root = with_cache(resolve(settings.model, options), cache)
    sub = root
    if settings.sub_model is not None:
        sub = with_cache(resolve(settings.sub_model, options), cache)
    return LiveModels(root, sub, options, cache)
