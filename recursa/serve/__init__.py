"""``recursa serve``: an RLM behind an OpenAI-compatible HTTP API (Starlette + uvicorn,
from the ``recursa[serve]`` extra).

Any tool that speaks OpenAI's chat-completions protocol can use an RLM::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY")
    client.chat.completions.create(model="recursa", messages=[...])

Routes: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``
(with and without ``stream``), ``GET /health``, and the API's description at
``GET /openapi.json`` (shown by ``GET /docs``).

Each chat completion is one RLM run. The last user message is the query; the
rest of the conversation, joined with ``### role`` headers, is the ``context``
(a conversation of one message is its own context). A query longer than
:data:`QUERY_MAX_CHARS` is shown to the root model cut, with a note, and given
in full at the end of the context. An extension field ``rlm`` in the request
may set ``context`` (str, list[str] or dict; replaces the conversation),
``max_depth``, ``max_iterations`` and ``budget`` (``usd``, ``tokens``,
``calls``, ``seconds``), each of which can only tighten the server's, and
``progress`` (see below). ``response_format`` with a ``json_schema`` (or
``json_object``) makes the schema the run's output type: the answer is JSON that
matches it. ``model`` is ``"recursa"`` (the server's root model); another
``provider/name`` is accepted only if the server allows it.

The reply is a normal ``chat.completion`` (``finish_reason`` ``"length"`` when
the run stopped early on a budget or its turns) whose ``usage`` totals the
whole recursion tree, with an extension field ``rlm``: usage by model and by
depth, cost, iterations, depth reached, why it stopped, the trace path. A
streamed reply sends a role chunk at once, then ``: progress {...}`` comment
lines while the run goes (with ``rlm.progress: true``, chunks with empty
``choices`` and ``rlm.progress`` instead), ``: keep-alive`` when it is quiet,
then the answer, a final chunk with ``finish_reason`` and ``rlm``, an optional
usage chunk (``stream_options.include_usage``) and ``data: [DONE]``.

Limits: at most ``max_concurrent_runs`` runs at once; up to ``max_queued``
more requests wait for a slot (a streamed one is told ``: queued``); past that
a request is refused at once with 429 and ``Retry-After``. A run whose client
disconnects is cancelled. With ``api_key`` every ``/v1`` route needs
``Authorization: Bearer KEY``, checked before the body is read. A body larger
than ``max_body_bytes`` is refused (413), one slower than
``body_timeout_seconds`` too (408); request heads have a deadline and a size
limit, and connections a cap (:class:`Server`). The server binds 127.0.0.1
unless told otherwise. Errors are OpenAI-shaped:
``{"error": {"message", "type", "param", "code"}}``. Each request writes one
line to the ``recursa.serve.access`` logger; ``cors_origins`` turns CORS on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .protocol import QUERY_MAX_CHARS, ChatRequest, HTTPError, conversation, parse_chat
from .runs import RLMFactory, RunOptions, rlm_factory, tighter

if TYPE_CHECKING:
    from .app import (
        BODY_TIMEOUT_SECONDS,
        KEEPALIVE_SECONDS,
        MAX_BODY_BYTES,
        MODEL_NAME,
        App,
        make_app,
    )
    from .server import DEFAULT_HOST, DEFAULT_PORT, BackgroundServer, Server, aserve, serve

MISSING_EXTRA = "recursa serve needs its extra: pip install 'recursa[serve]'"

# What needs the extra's packages (starlette, uvicorn): imported on first use, so that
# the request model above works without them and a missing extra is one clear line.
_SERVING = {
    **dict.fromkeys(
        ("BODY_TIMEOUT_SECONDS", "KEEPALIVE_SECONDS", "MAX_BODY_BYTES", "MODEL_NAME"), "app"
    ),
    "App": "app",
    "make_app": "app",
    **dict.fromkeys(
        ("DEFAULT_HOST", "DEFAULT_PORT", "BackgroundServer", "Server", "aserve", "serve"),
        "server",
    ),
}


def __getattr__(name: str) -> Any:
    module = _SERVING.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        loaded = importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("starlette", "uvicorn"):
            raise
        raise ModuleNotFoundError(MISSING_EXTRA, name=exc.name) from None
    return getattr(loaded, name)


__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "KEEPALIVE_SECONDS",
    "MAX_BODY_BYTES",
    "MISSING_EXTRA",
    "MODEL_NAME",
    "QUERY_MAX_CHARS",
    "App",
    "BackgroundServer",
    "ChatRequest",
    "HTTPError",
    "RLMFactory",
    "RunOptions",
    "Server",
    "aserve",
    "conversation",
    "make_app",
    "parse_chat",
    "rlm_factory",
    "serve",
    "tighter",
]
