"""Every exception recursa raises.

RecursaError                 root of everything recursa raises on purpose
├── ConfigError              misuse: bad argument, unknown provider, bad input file
│   └── ContextError         the context cannot be used (missing, empty, binary, ...)
├── ModelError               a model request failed after retries
│   ├── AuthenticationError  401/403, or no API key at all
│   ├── ModelNotFoundError   the provider does not know the model (404)
│   └── ContextWindowError   the prompt does not fit the model's window
├── BudgetExceeded           a Budget ran out; no new call may start
└── SandboxError             the sandbox could not run code (start failure, dead worker)
    └── WorkerCrashed        the worker process died during a cell

FinalAnswer(BaseException)   control flow inside the REPL: FINAL(...) was called.
                             A BaseException so `except Exception:` in model code
                             cannot swallow it.
"""

from __future__ import annotations


class RecursaError(Exception):
    """Root of all errors raised by recursa."""


class ConfigError(RecursaError, ValueError):
    """The caller asked for something recursa cannot do (bad argument, unknown provider)."""


class ContextError(ConfigError):
    """The context is unusable: missing, unreadable, a directory, empty, or binary."""


class ModelError(RecursaError):
    """A model request failed (after retries, where retrying made sense)."""

    def __init__(self, message: str, *, status: int | None = None, model: str | None = None):
        super().__init__(message)
        self.status = status
        self.model = model


class AuthenticationError(ModelError):
    """The provider refused the credentials (401/403), or none were found."""


class ModelNotFoundError(ModelError):
    """The provider does not serve this model (404)."""


class ContextWindowError(ModelError):
    """The prompt is longer than the model's context window."""


class BudgetExceeded(RecursaError):
    """A budget limit was reached; no new model call may start anywhere in the tree."""

    def __init__(self, limit: str, message: str | None = None):
        super().__init__(message or f"budget exhausted: {limit}")
        self.limit = limit


class SandboxError(RecursaError):
    """The sandbox could not start or run code."""


class WorkerCrashed(SandboxError):
    """The sandbox worker process died while running a cell."""


class FinalAnswer(BaseException):
    """Raised inside the REPL by FINAL()/FINAL_VAR() to end the cell and the run."""

    def __init__(self, value: str):
        super().__init__(value)
        self.value = value
