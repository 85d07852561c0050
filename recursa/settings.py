"""One frozen object for everything a run is configured with.

The Python API (:class:`~recursa.rlm.RLM`), the CLI, ``recursa serve`` and
``recursa bench`` all build a :class:`Settings` once and hand it to the
engine; the engine writes it to the trace's ``run_start`` event
(:meth:`Settings.to_record`), and replay and resume read it back from there
(:func:`recorded_settings`). Validation happens here, once, so every front end
refuses the same bad values with the same message.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .budget import Budget
from .config import default_runs_dir, platform_runs_dir
from .errors import ConfigError
from .prompts import check_system_prompt
from .sampling import Sampling
from .trace import DEFAULT_MAX_CHARS, FULL_PROMPTS, RunStart

if TYPE_CHECKING:
    from .models.base import Model
    from .models.cache import CacheOption
    from .repl.base import Sandbox

#: A sandbox by registered name (``recursa.sandboxes`` entry points) or a zero-argument
#: factory that returns a fresh, unstarted sandbox.
SandboxSpec = Union[str, "Callable[[], Sandbox]"]
#: Where ``trace=True`` puts a run's trace unless ``runs_dir`` or ``$RECURSA_RUNS_DIR``
#: says otherwise: ``runs/`` in the user data directory (``recursa runs`` lists them).
DEFAULT_TRACE_DIR = platform_runs_dir()
#: ``trace_prompts``: prompts cut at ``trace_max_chars`` (small traces), or kept whole
#: (training data: ``recursa trace export --format chat-jsonl``).
TRACE_PROMPTS = ("cut", "full")


def default_max_child_sandboxes() -> int:
    """Child sandboxes that may run at once per depth: one per core, at least 2."""
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How every node of a run behaves. Build it once; :meth:`replace` derives variants.

    ``model``/``sub_model`` are ``"provider/name"`` strings or ready
    :class:`~recursa.models.base.Model` objects (``sub_model=None``: the root model).
    ``max_depth=0`` gives the REPL no sub-call functions; ``1`` (the paper's setting)
    ``llm_query``; ``2`` and more let ``rlm_query`` start child RLMs. ``trace`` is a
    JSONL path, ``True`` for a new file in ``runs_dir`` (``None``: ``$RECURSA_RUNS_DIR``,
    else :data:`DEFAULT_TRACE_DIR`), or ``None``. The config file is never read here.

    ``prices`` maps ``"provider/name"`` to ``(input, output)`` USD per million tokens
    (they win over the built-in table; under a USD budget a model with no price is
    refused). ``allowed_models`` are the specs model code may name in
    ``llm_query(..., model=...)`` besides the root and sub models. ``max_child_sandboxes``
    caps the child RLMs (``rlm_query``/``rlm_batch``) running at once at each depth.

    ``model_settings`` is how the root model samples (a :class:`~recursa.sampling.Sampling`
    or a dict of its fields); ``sub_model_settings`` how sub-calls do (``None``: as the
    root). ``max_errors`` stops a node after that many consecutive failed cells
    (``stopped="errors"``; ``None``: never). ``system_prompt`` replaces the built-in
    system prompt; it may use the placeholders of :data:`recursa.prompts.PLACEHOLDERS`.
    ``require_citations`` sends a root answer without a verified citation back to the
    model (a few times), then ends the run with ``stopped="unverified"``.

    ``trace_prompts="full"`` keeps every prompt in the trace whole (``trace_max_chars``
    does not apply), so the trace can be exported as training data.
    ``sub_call_tool_steps`` caps the model requests of one tool-using sub-call
    (``llm_query(..., tools=[...])``).
    """

    model: str | Model
    sub_model: str | Model | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never written anywhere
    request_timeout: float = 300.0
    max_depth: int = 1
    max_iterations: int = 30
    budget: Budget | None = None
    sandbox: SandboxSpec = "subprocess"
    cell_timeout: float = 120.0
    max_output_chars: int = 20_000
    max_concurrency: int = 32
    compact_after_chars: int | None = None
    trace: str | Path | bool | None = None
    runs_dir: str | Path | None = None
    trace_max_chars: int = DEFAULT_MAX_CHARS
    cache: CacheOption = None
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    allowed_models: tuple[str, ...] = ()
    max_child_sandboxes: int = field(default_factory=default_max_child_sandboxes)
    model_settings: Sampling = field(default_factory=Sampling)
    sub_model_settings: Sampling | None = None
    max_errors: int | None = None
    system_prompt: str | None = None
    require_citations: bool = False
    trace_prompts: str = "cut"
    sub_call_tool_steps: int = 8

    def __post_init__(self) -> None:
        if self.trace_prompts not in TRACE_PROMPTS:
            raise ConfigError(
                f"trace_prompts must be one of {', '.join(TRACE_PROMPTS)}, "
                f"got {self.trace_prompts!r}"
            )
        if self.trace_prompts == "full":
            object.__setattr__(self, "trace_max_chars", FULL_PROMPTS)
        object.__setattr__(self, "model_settings", Sampling.of(self.model_settings))
        if self.sub_model_settings is not None:
            object.__setattr__(self, "sub_model_settings", Sampling.of(self.sub_model_settings))
        if self.base_url is not None:
            object.__setattr__(self, "base_url", checked_base_url(self.base_url))
        if self.max_errors is not None and (
            isinstance(self.max_errors, bool)
            or not isinstance(self.max_errors, int)
            or self.max_errors <= 0
        ):
            raise ConfigError(
                f"max_errors must be a positive integer or None, got {self.max_errors!r}"
            )
        if not isinstance(self.require_citations, bool):
            raise ConfigError(
                f"require_citations must be True or False, got {self.require_citations!r}"
            )
        if self.system_prompt is not None and (
            not isinstance(self.system_prompt, str) or not self.system_prompt.strip()
        ):
            raise ConfigError("system_prompt must be non-empty text")
        if self.system_prompt is not None:
            check_system_prompt(self.system_prompt)
        object.__setattr__(self, "prices", _checked_prices(self.prices))
        if isinstance(self.allowed_models, str) or not all(
            isinstance(m, str) and m for m in self.allowed_models
        ):
            raise ConfigError("allowed_models must be a list of provider/name strings")
        object.__setattr__(self, "allowed_models", tuple(self.allowed_models))
        if self.max_depth < 0:
            raise ConfigError(f"max_depth must be >= 0, got {self.max_depth}")
        for name in (
            "max_iterations",
            "cell_timeout",
            "max_output_chars",
            "max_concurrency",
            "request_timeout",
            "trace_max_chars",
            "max_child_sandboxes",
            "sub_call_tool_steps",
        ):
            value = getattr(self, name)
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.compact_after_chars is not None and self.compact_after_chars <= 0:
            raise ConfigError(
                f"compact_after_chars must be positive, got {self.compact_after_chars}"
            )
        if not isinstance(self.sandbox, str) and not callable(self.sandbox):
            raise ConfigError("sandbox must be a registered name or a factory of sandboxes")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def sub_sampling(self) -> Sampling:
        """How sub-calls sample: ``sub_model_settings``, else the root's."""
        sub = self.sub_model_settings
        return sub if sub is not None else self.model_settings

    @property
    def sandbox_name(self) -> str:
        """The sandbox as the trace names it: its registered name, or the factory's."""
        if isinstance(self.sandbox, str):
            return self.sandbox
        return getattr(self.sandbox, "__qualname__", None) or type(self.sandbox).__name__

    def trace_path(self, run_id: str) -> Path | None:
        """Where the trace of run ``run_id`` goes, or ``None`` when not traced."""
        if self.trace is None or self.trace is False:
            return None
        if self.trace is True:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            directory = default_runs_dir() if self.runs_dir is None else Path(self.runs_dir)
            return directory / f"{stamp}-{run_id}.jsonl"
        return Path(self.trace)

    def to_record(self) -> dict[str, Any]:
        """The fields of :class:`~recursa.events.RunStart` that record these settings (no
        key, no base URL, no cache path): what :func:`recorded_settings` reads back."""
        return {
            "max_depth": self.max_depth,
            "max_iterations": self.max_iterations,
            "budget": self.budget,
            "sandbox": self.sandbox_name,
            "cell_timeout": self.cell_timeout,
            "max_output_chars": self.max_output_chars,
            "max_concurrency": self.max_concurrency,
            "request_timeout": self.request_timeout,
            "compact_after_chars": self.compact_after_chars,
            "max_errors": self.max_errors,
            "require_citations": self.require_citations,
            "trace_prompts": None if self.trace_prompts == "cut" else self.trace_prompts,
            "model_settings": _sampling_record(self.model_settings),
            "sub_model_settings": _sampling_record(self.sub_sampling),
        }


def _sampling_record(sampling: Sampling) -> dict[str, Any] | None:
    """All of a sampling's fields (nested objects keep their nulls), or ``None`` if unset."""
    return dataclasses.asdict(sampling) if sampling else None


#: Where a base URL may point: an HTTP(S) server.
_URL_SCHEMES = ("http://", "https://")


def checked_base_url(url: Any) -> str:
    """``url`` if it is an ``http(s)://host...`` URL; a usage error otherwise (a URL
    without a scheme would be sent as a relative path and fail far from its cause)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"base_url must be an http(s) URL, got {url!r}")
    text = url.strip()
    if not text.lower().startswith(_URL_SCHEMES) or not text.split("://", 1)[1].split("/")[0]:
        raise ConfigError(
            f"base_url {text!r} is not an http(s) URL with a host "
            "(for example http://localhost:8000/v1)"
        )
    return text


def _checked_prices(prices: Any) -> dict[str, tuple[float, float]]:
    if not isinstance(prices, Mapping):
        raise ConfigError("prices must map provider/name to (input, output) USD per million")
    out: dict[str, tuple[float, float]] = {}
    for spec, price in prices.items():
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"prices: {spec!r} is not a provider/name model spec")
        if (
            not isinstance(price, (tuple, list))
            or len(price) != 2
            or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p)
                and p >= 0 for p in price
            )
        ):  # fmt: skip
            raise ConfigError(
                f"prices[{spec!r}] must be (input, output): two non-negative USD per "
                f"million tokens, got {price!r}"
            )
        out[spec] = (float(price[0]), float(price[1]))
    return out


def recorded_settings(start: RunStart) -> dict[str, Any]:
    """The :class:`Settings` fields a ``run_start`` event recorded, as keyword arguments.

    Only fields with a recorded value are returned (older traces lack some), so
    ``Settings(model=..., **recorded_settings(start))`` keeps defaults for the rest.
    """
    recorded: dict[str, Any] = {
        "max_depth": start.max_depth,
        "max_iterations": start.max_iterations,
        "budget": start.budget,
        "sandbox": start.sandbox or None,
        "cell_timeout": start.cell_timeout,
        "max_output_chars": start.max_output_chars,
        "max_concurrency": start.max_concurrency,
        "request_timeout": start.request_timeout,
        "compact_after_chars": start.compact_after_chars,
        "max_errors": start.max_errors,
        "require_citations": start.require_citations or None,
        "trace_prompts": start.trace_prompts,
        "model_settings": Sampling.of(start.model_settings) if start.model_settings else None,
        "sub_model_settings": (
            Sampling.of(start.sub_model_settings) if start.sub_model_settings else None
        ),
    }
    return {k: v for k, v in recorded.items() if v is not None}
