"""Anthropic's Messages API (``anthropic/<model>``), with prompt caching.

Built on the official ``anthropic`` SDK with its retries turned off (retries
are recursa's). System messages go to the ``system`` parameter. A root RLM
conversation only ever grows by appending, so everything before the newest
user turn is a stable prefix: it is marked as a cache breakpoint, as are the
system prompt and the newest user turn itself (which the next turn then reads
back at a tenth of the price). One-shot prompts (``llm_query``) are not marked:
a cache write costs 1.25x and would never be read.

Costs are computed here, not from the shared table alone, because Anthropic
bills three kinds of input: uncached (input price), cache writes (1.25x input
for the 5-minute cache, 2x for the 1-hour one) and cache reads (``cached``
price, 0.1x input).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..sampling import Sampling
from . import pricing
from ._http import connection_error, retry_after_seconds, status_error, where
from .base import (
    Completion,
    Message,
    SDKModel,
    ToolRequest,
    ToolSchema,
    offered_tools,
    refuse,
)
from .registry import ModelOptions

if TYPE_CHECKING:
    import anthropic

# Anthropic requires max_tokens on every request; every current model allows this many.
DEFAULT_MAX_TOKENS = 8192
CACHE_WRITE_5M = 1.25
CACHE_WRITE_1H = 2.0
EPHEMERAL: dict[str, str] = {"type": "ephemeral"}
# The API rejects empty text blocks; an empty turn (a model that said nothing) becomes this.
EMPTY_TURN = "(empty)"
# reasoning_effort as extended thinking's budget_tokens (1024 is the API's minimum; the
# others are LiteLLM's defaults for the same mapping, all below DEFAULT_MAX_TOKENS, which
# max_tokens must exceed). "none" leaves thinking off, the API's default.
THINKING_BUDGETS: dict[str, int | None] = {
    "none": None,
    "minimal": 1024,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
}


class AnthropicModel(SDKModel["anthropic.AsyncAnthropic"]):
    """Claude models over the Messages API."""

    provider = "anthropic"
    sdk = "anthropic"
    #: ``tools`` and ``tool_use`` / ``tool_result`` blocks
    supports_tools = True

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        options: ModelOptions | None = None,
    ) -> None:
        options = options or ModelOptions()
        super().__init__(name, options=options)
        api_key = api_key or options.api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not api_key:
            raise ConfigError(f"no API key for {self.spec}: set ANTHROPIC_API_KEY")
        # None: the SDK's default endpoint (it honours ANTHROPIC_BASE_URL).
        self.base_url = base_url or options.base_url
        self.max_tokens = max_tokens
        self._api_key = api_key

    def _make_client(self) -> anthropic.AsyncAnthropic:
        import anthropic

        return anthropic.AsyncAnthropic(
            api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0
        )

    @property
    def max_output_tokens(self) -> int:
        """The output a request asks for unless told otherwise (what a budget reserves)."""
        return self.max_tokens

    def sampling_params(self, max_tokens: int | None, sampling: Sampling) -> dict[str, Any]:
        """``max_tokens`` and the body's sampling fields (``extra_body``: recent SDKs
        dropped some arguments that the API still takes); a :class:`ConfigError` for
        what the Messages API has no field for (``seed``) or refuses with extended
        thinking (a temperature; a ``top_p`` under 0.95; ``max_tokens`` not above the
        thinking budget)."""
        if sampling.seed is not None:
            raise refuse(self.spec, "seed", sampling.seed, "the Messages API has no seed")
        cap = max_tokens or self.max_tokens
        body: dict[str, Any] = {}
        effort = sampling.reasoning_effort
        budget = THINKING_BUDGETS.get(effort) if effort is not None else None
        if budget is not None:
            if sampling.temperature is not None:
                raise refuse(
                    self.spec,
                    "temperature",
                    sampling.temperature,
                    f"extended thinking (reasoning_effort={effort!r}) takes no temperature",
                )
            if sampling.top_p is not None and sampling.top_p < 0.95:
                raise refuse(
                    self.spec,
                    "top_p",
                    sampling.top_p,
                    f"extended thinking (reasoning_effort={effort!r}) takes a top_p "
                    "in [0.95, 1] only",
                )
            if cap <= budget:
                raise ConfigError(
                    f"{self.spec}: reasoning_effort={effort!r} thinks for up to {budget} "
                    f"tokens, which must be less than max_tokens ({cap}); raise max_tokens "
                    "or lower reasoning_effort"
                )
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if sampling.temperature is not None:
            body["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            body["top_p"] = sampling.top_p
        params: dict[str, Any] = {"max_tokens": cap}
        if body:
            params["extra_body"] = body
        return params

    async def _request(
        self, messages: Sequence[Message], max_tokens: int | None, sampling: Sampling
    ) -> Completion:
        params = self.sampling_params(max_tokens, sampling)
        system, turns = to_anthropic(messages)
        if system:
            params["system"] = system
        tools = offered_tools()
        if tools:
            params["tools"] = [anthropic_tool(t) for t in tools]
        client = await self._sdk()  # first: it imports the SDK off the event loop
        import anthropic

        try:
            response = await client.messages.create(
                model=self.name,
                messages=turns,  # type: ignore[arg-type]
                **params,
            )
        except anthropic.APIStatusError as exc:
            raise self._translate(exc) from exc
        except anthropic.APIConnectionError as exc:  # APITimeoutError included
            # refused or no such host: at once; a timeout or a reset: retried
            raise connection_error(exc, spec=self.spec, url=str(client.base_url)) from exc
        text = "".join(block.text for block in response.content if block.type == "text")
        calls = tuple(
            ToolRequest(block.id, block.name, block.input)
            for block in response.content
            if block.type == "tool_use"
        )
        usage = response.usage
        fresh = usage.input_tokens
        written = usage.cache_creation_input_tokens or 0
        read = usage.cache_read_input_tokens or 0
        # Older SDKs keep the 5-minute/1-hour breakdown as an untyped extra (a dict).
        breakdown = getattr(usage, "cache_creation", None)
        written_1h = (
            breakdown.get("ephemeral_1h_input_tokens")
            if isinstance(breakdown, dict)
            else getattr(breakdown, "ephemeral_1h_input_tokens", None)
        ) or 0
        return Completion(
            text=text,
            model=self.spec,
            input_tokens=fresh + written + read,
            output_tokens=usage.output_tokens,
            cached_tokens=read,
            cost_usd=anthropic_cost(
                self.spec,
                uncached=fresh,
                cache_write=written - written_1h,
                cache_write_1h=written_1h,
                cache_read=read,
                output=usage.output_tokens,
            ),
            tool_calls=calls if tools else (),
        )

    def _translate(self, exc: anthropic.APIStatusError) -> Exception:
        return status_error(
            spec=self.spec,
            where=where(self.spec, self.base_url),
            status=exc.status_code,
            detail=_error_message(exc),
            retry_after=retry_after_seconds(exc.response.headers),
        )


def anthropic_cost(
    spec: str,
    *,
    uncached: int,
    cache_write: int,
    cache_read: int,
    output: int,
    cache_write_1h: int = 0,
) -> float | None:
    """USD for one call; ``None`` when the model is not in the price table."""
    price = pricing.lookup(spec)
    if price is None:
        return None
    # the table's cache-write prices where it has them, else Anthropic's multipliers
    write_5m = price.cache_write if price.cache_write is not None else CACHE_WRITE_5M * price.input
    write_1h = (
        price.cache_write_1h if price.cache_write_1h is not None else CACHE_WRITE_1H * price.input
    )
    input_usd = price.input * uncached + write_5m * cache_write + write_1h * cache_write_1h
    return (input_usd + price.cached * cache_read + price.output * output) / 1e6


def to_anthropic(
    messages: Sequence[Message],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI-shaped messages to Anthropic's ``system`` blocks and ``messages``,
    with cache breakpoints on the system prompt, the stable history prefix and
    the newest turn (at most 3 of the 4 Anthropic allows)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":  # a function result: a tool_result block of a user turn
            role = "user"
            blocks = [{"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""),
                       "content": message["content"]}]  # fmt: skip
        else:
            blocks = _blocks(message["content"]) + _tool_use_blocks(message)
        if role == "system":
            system.extend(blocks)
        elif turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # the API wants roles to alternate
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if not turn["content"]:
            turn["content"] = [{"type": "text", "text": EMPTY_TURN}]
    if system:
        _mark(system)
    if system or len(turns) > 1:  # a conversation that will be continued, not a one-shot
        newest_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=0)
        if newest_user > 0:
            _mark(turns[newest_user - 1]["content"])
        if turns:
            _mark(turns[-1]["content"])
    return system, turns


def anthropic_tool(tool: ToolSchema) -> dict[str, Any]:
    """A tool in the Messages API's ``tools`` list."""
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def _tool_use_blocks(message: Message) -> list[dict[str, Any]]:
    """An assistant message's OpenAI-shaped ``tool_calls`` as ``tool_use`` blocks."""
    blocks: list[dict[str, Any]] = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        raw = function.get("arguments")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            arguments = None
        blocks.append({"type": "tool_use", "id": call.get("id", ""),
                       "name": function.get("name", ""),
                       "input": arguments if isinstance(arguments, dict) else {}})  # fmt: skip
    return blocks


def _mark(blocks: list[dict[str, Any]]) -> None:
    blocks[-1] = {**blocks[-1], "cache_control": dict(EPHEMERAL)}


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Message content as Anthropic content blocks; empty text is dropped."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            text = str(part.get("text", ""))
            if text.strip():
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image_block(part))
        else:
            blocks.append(dict(part))  # already an Anthropic block (image, document, ...)
    return blocks


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = str(image.get("url", "") if isinstance(image, dict) else image or "")
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[len("data:") :].partition(";base64,")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
    return exc.message


def create(name: str, options: ModelOptions) -> AnthropicModel:
    """Registry entry point for ``anthropic/<model>``."""
    return AnthropicModel(name, options=options)
