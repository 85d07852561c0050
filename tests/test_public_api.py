"""The public surface changes only on purpose: this pins it."""

from __future__ import annotations

import recursa


def test_all_is_pinned() -> None:
    assert sorted(recursa.__all__) == sorted(
        [
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
    )
    for name in recursa.__all__:
        assert hasattr(recursa, name), name


def test_errors_form_one_tree() -> None:
    for name in ("ConfigError", "ModelError", "BudgetExceeded", "SandboxError"):
        assert issubclass(getattr(recursa, name), recursa.RecursaError)
    assert issubclass(recursa.ContextError, recursa.ConfigError)
    assert issubclass(recursa.AuthenticationError, recursa.ModelError)
