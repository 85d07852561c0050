"""Every exception recursa raises on purpose, in one tree.

RecursaError                 root of everything recursa raises on purpose
│  misuse: the caller asked for something recursa cannot do
├── ConfigError              bad argument, unknown provider, bad input file
│   └── ContextError         the context cannot be used (missing, empty, binary, ...)
│  run failures: a run (or a model call) could not complete
├── ModelError               a model request failed after retries
│   ├── AuthenticationError  401/403, or no API key at all
│   ├── ModelNotFoundError   the provider does not know the model (404)
│   ├── ContextWindowError   the prompt does not fit the model's window
│   └── ReplayMismatch       (recursa.recording) a replayed run diverged from its recording
├── SandboxError             the sandbox could not start or run code (start failure,
│                            dead worker)
└── BudgetExceeded           a Budget ran out; no new call may start

Control flow lives apart from this tree and never reaches the caller as such:

- ``FINAL()``/``FINAL_VAR()`` raise ``_Final`` inside the REPL
  (:mod:`recursa.repl.runtime`, standard library only): a BaseException, so
  ``except Exception:`` in model-written code cannot swallow it.
- :class:`BudgetExceeded` doubles as the engine's stop signal: a ledger raises it
  when a new call may not start, and the engine ends the run with a result whose
  ``stopped`` says why, rather than letting it escape.
- ``ProtocolError`` (:mod:`recursa.repl.protocol`, standard library only) is a
  frame from the worker that does not decode. It is not a RecursaError: it never
  escapes the host, which reports the bad frame and survives.

Other internal exceptions (``TransientError``, retried by the model layer;
``ToolError`` and ``AnswerInvalid``, shown to the model) are translated before
they reach the caller.
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
