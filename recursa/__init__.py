"""recursa: Recursive Language Models.

An RLM answers a query over a context far longer than any model's window: the
context lives in a sandboxed Python REPL as ``context``, and a root model
writes code that inspects it and calls sub-models on pieces of it::

    from recursa import RLM
    result = RLM("openai/gpt-5-mini").completion("Who wrote it?", context=Path("book.txt"))
    print(result.answer, result.usage.calls, result.cost_usd)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .budget import Budget, Ledger, Usage, UsageReport
    from .context import Context
    from .errors import (
        AuthenticationError,
        BudgetExceeded,
        ConfigError,
        ContextError,
        ContextWindowError,
        ModelError,
        ModelNotFoundError,
        RecursaError,
        SandboxError,
    )
    from .models.base import Completion, Message, Model
    from .result import Citation
    from .rlm import RLM, Result
    from .sampling import Sampling

#: Where each public name lives. They are imported on first use (PEP 562), so that
#: ``import recursa.cli`` for ``recursa --help`` does not load the engine and the
#: sandboxes; ``from recursa import RLM`` works as before.
_EXPORTS = {
    "Budget": "budget", "Ledger": "budget", "Usage": "budget", "UsageReport": "budget",
    "Context": "context",
    "AuthenticationError": "errors", "BudgetExceeded": "errors", "ConfigError": "errors",
    "ContextError": "errors", "ContextWindowError": "errors", "ModelError": "errors",
    "ModelNotFoundError": "errors", "RecursaError": "errors", "SandboxError": "errors",
    "Completion": "models.base", "Message": "models.base", "Model": "models.base",
    "Citation": "result",
    "RLM": "rlm", "Result": "rlm",
    "Sampling": "sampling",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recursa' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "RLM",
    "AuthenticationError",
    "Budget",
    "BudgetExceeded",
    "Citation",
    "Completion",
    "ConfigError",
    "Context",
    "ContextError",
    "ContextWindowError",
    "Ledger",
    "Message",
    "Model",
    "ModelError",
    "ModelNotFoundError",
    "RecursaError",
    "Result",
    "Sampling",
    "SandboxError",
    "Usage",
    "UsageReport",
    "__version__",
    "acompletion",
    "completion",
]


def completion(
    query: str, context: str | Path | list[str] | dict[str, Any], **options: Any
) -> Result:
    """One-shot: ``RLM(**options).completion(query, context)``."""
    from .rlm import RLM

    return RLM(**options).completion(query, context)


async def acompletion(
    query: str, context: str | Path | list[str] | dict[str, Any], **options: Any
) -> Result:
    """One-shot, async: ``await RLM(**options).acompletion(query, context)``."""
    from .rlm import RLM

    return await RLM(**options).acompletion(query, context)
