"""HTTP status codes to recursa errors, the same way for every provider.

A backend pulls the status, the provider's own message and any retry hint out
of its SDK's exception and hands them to :func:`status_error`; what is
retryable and what is permanent is decided here, once.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
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


# What a refused connection or an unknown host says where no exception type tells
# (several addresses tried, an SDK that wraps the error as text).
_REFUSED_TEXT = re.compile(
    rf"connection refused|connect call failed|\[errno {errno.ECONNREFUSED}\]", re.IGNORECASE
)
_UNRESOLVED_TEXT = re.compile(
    r"name or service not known|nodename nor servname|no address associated with hostname"
    r"|getaddrinfo failed|cannot resolve host|could not resolve host",
    re.IGNORECASE,
)


def unreachable(exc: BaseException, *, by_text: bool = True) -> str | None:
    """``"connection refused"``, ``"cannot resolve host"`` or ``"TLS certificate not
    trusted (...)"`` when ``exc`` (or an error it was raised from) says the endpoint is
    not there or cannot be trusted, else ``None`` (a timeout, a reset: worth retrying).
    A DNS failure that may pass (``EAI_AGAIN``) is not one of them.
    ``by_text=False`` trusts only the exceptions' types and errnos, not their messages
    (for an HTTP error, whose body may quote anything)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    texts: list[str] = []
    while stack:
        current = stack.pop()
        if id(current) in seen or len(seen) > 32:
            continue
        seen.add(id(current))
        if isinstance(current, TimeoutError):
            return None  # a connect timeout: the host is there, or may be
        if isinstance(current, ssl.SSLCertVerificationError):
            # the endpoint's certificate is not trusted here: the same on every retry
            return f"TLS certificate not trusted ({current.verify_message or current.reason})"
        if isinstance(current, socket.gaierror):
            if current.errno == socket.EAI_AGAIN:
                return None
            return "cannot resolve host"
        if isinstance(current, ConnectionRefusedError) or (
            isinstance(current, OSError) and current.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        texts.append(str(current))
        for linked in (current.__cause__, current.__context__, getattr(current, "os_error", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
        stack.extend(a for a in getattr(current, "exceptions", ()) if isinstance(a, BaseException))
    if not by_text:
        return None
    text = " ".join(texts)
    if _UNRESOLVED_TEXT.search(text):
        return "cannot resolve host"
    if _REFUSED_TEXT.search(text):
        return "connection refused"
    return None


def connection_error(exc: BaseException, *, spec: str, url: str | None) -> Exception:
    """The exception a backend raises for a request that got no HTTP answer: a refused
    connection or an unknown host is permanent (a :class:`ModelError` naming ``url``,
    the base URL the client used, so the run fails at once); a timeout or a reset is a
    :class:`TransientError`, retried."""
    kind = unreachable(exc)
    if kind is not None:
        where = f"{spec} at {url.rstrip('/')}" if url else spec
        return ModelError(f"{where}: {kind}", model=spec)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return TransientError(f"connection failed: {detail}")


def request_origin(exc: BaseException) -> str | None:
    """``scheme://host[:port]`` of the request an httpx error is about, if it says."""
    try:
        url = exc.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when it has none
        return None
    return f"{url.scheme}://{url.netloc.decode()}" if getattr(url, "netloc", None) else None
