"""HTTP status codes to recursa errors, the same way for every provider.

A backend pulls the status, the provider's own message and any retry hint out
of its SDK's exception and hands them to :func:`status_error`; what is
retryable and what is permanent is decided here, once.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import AuthenticationError, ContextWindowError, ModelError, ModelNotFoundError
from .base import TransientError

# 408 request timeout, 409 conflict (Anthropic: retry), 425 too early, 429 rate limited;
# every 5xx, Anthropic's 529 "overloaded" included.
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})

# Words providers use when a prompt is longer than the model's window.
_OVERFLOW_HINTS = (
    "context length",
    "context window",
    "context_length",
    "prompt is too long",
    "maximum context",
    "exceeds the maximum number of tokens",
    "too many tokens",
)


def status_error(
    *,
    spec: str,
    where: str,
    status: int,
    detail: str,
    retry_after: float | None = None,
) -> Exception:
    """The exception a backend raises for an HTTP error ``status``.

    ``where`` names the model and endpoint for the message (``spec`` or
    ``"spec at URL"``); ``detail`` is the provider's one-line explanation.
    """
    detail = " ".join(detail.split()) or "no detail"
    if status in (401, 403):
        return AuthenticationError(
            f"{where}: authentication failed ({status}): {detail}", status=status, model=spec
        )
    if status == 404:
        return ModelNotFoundError(
            f"{where}: model not found (404): {detail}", status=status, model=spec
        )
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientError(f"HTTP {status}: {detail}", status=status, retry_after=retry_after)
    if status in (400, 413, 422) and is_context_overflow(detail):
        return ContextWindowError(f"{where}: {detail}", status=status, model=spec)
    return ModelError(f"{where}: HTTP {status}: {detail}", status=status, model=spec)


def is_context_overflow(detail: str) -> bool:
    """Whether a provider's error message says the prompt did not fit."""
    lowered = detail.lower()
    return any(hint in lowered for hint in _OVERFLOW_HINTS)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's retry hint in seconds (``retry-after-ms`` or ``retry-after``), if any."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
        if seconds >= 0:
            return seconds
    return None


def where(spec: str, base_url: str | None) -> str:
    """``spec``, plus the endpoint when it is not the provider's default."""
    return f"{spec} at {base_url}" if base_url else spec
