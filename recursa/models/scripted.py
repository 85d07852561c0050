"""A deterministic model for tests and demos: a list of replies or a function.

It ships in the package so users can test their own RLM code against recursa
without a network or a key::

    model = ScriptedModel(["```repl\\nFINAL(len(context))\\n```"])
    RLM(model=model).completion("How long?", context="abc")
    model.calls  # every request it received
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ..errors import ModelError
from ..sampling import Sampling
from .base import BaseModel, Completion, Message, estimate_tokens, message_tokens

Reply = str | Exception
ReplyFunction = Callable[[list[Message]], str | Awaitable[str]]


@dataclass(frozen=True)
class ScriptedCall:
    """One request the scripted model received."""

    messages: list[Message]
    reply: str
    max_tokens: int | None = None  # the output cap the request asked for
    sampling: Sampling = field(default_factory=Sampling)  # how it asked to sample


class ScriptedModel(BaseModel):
    """Plays back replies in order, or asks a function for each reply.

    A list entry that is an exception is raised instead of replied. Token counts
    are estimates (4 characters a token); cost is zero. A reply is cut to
    ``max_tokens`` (4 characters a token), as a provider cuts its output. Any
    sampling is accepted and recorded with the call (:class:`ScriptedCall`).
    """

    provider = "scripted"

    def __init__(
        self,
        replies: Sequence[Reply] | ReplyFunction,
        *,
        name: str = "scripted",
        latency: float = 0.0,
        context_window: int | None = None,
    ) -> None:
        super().__init__(name, context_window=context_window)
        self._replies: list[Reply] | None = None if callable(replies) else list(replies)
        self._function: ReplyFunction | None = replies if callable(replies) else None
        self.latency = latency
        self.calls: list[ScriptedCall] = []

    async def _request(
        self, messages: Sequence[Message], max_tokens: int | None, sampling: Sampling
    ) -> Completion:
        if self.latency:
            await asyncio.sleep(self.latency)
        history = list(messages)
        if self._function is not None:
            result = self._function(history)
            text = await result if isinstance(result, Awaitable) else result
        else:
            assert self._replies is not None
            if not self._replies:
                raise ModelError(f"{self.spec}: no scripted replies left", model=self.spec)
            reply = self._replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            text = reply
        if max_tokens is not None:
            text = text[: max_tokens * 4]  # like a provider: no more output than asked for
        self.calls.append(ScriptedCall(history, text, max_tokens, sampling))
        return Completion(
            text=text,
            model=self.spec,
            input_tokens=message_tokens(history),
            output_tokens=estimate_tokens(text),
            cost_usd=0.0,
        )
