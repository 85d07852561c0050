"""recursa: Recursive Language Models.

An RLM answers a query over a context far longer than any model's window: the
context lives in a sandboxed Python REPL as ``context``, and a root model
writes code that inspects it and calls sub-models on pieces of it::

    from recursa import RLM
    result = RLM("openai/gpt-5-mini").completion("Who wrote it?", context=Path("book.txt"))
    print(result.answer, result.usage.calls, result.cost_usd)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._version import __version__
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
    return RLM(**options).completion(query, context)


async def acompletion(
    query: str, context: str | Path | list[str] | dict[str, Any], **options: Any
) -> Result:
    """One-shot, async: ``await RLM(**options).acompletion(query, context)``."""
    return await RLM(**options).acompletion(query, context)
