"""The token estimates count a conversation's text without building it: same figure."""

from __future__ import annotations

from typing import Any

import pytest

from recursa.models.base import estimate_tokens, message_chars, message_text, message_tokens

CASES: list[list[Any]] = [
    [],
    [{"role": "user", "content": ""}],
    [{"role": "system", "content": "abc"}, {"role": "user", "content": "de"}],
    [
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url"}]},
        {"role": "assistant", "content": "yz" * 1000},
        {"role": "user", "content": [{"type": "text", "text": "é"}, {"type": "text"}]},
    ],
]


@pytest.mark.parametrize("messages", CASES)
def test_the_estimates_match_the_joined_text(messages: list[Any]) -> None:
    assert message_chars(messages) == len(message_text(messages))
    assert message_tokens(messages) == estimate_tokens(message_text(messages))
