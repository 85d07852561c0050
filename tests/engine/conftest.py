"""Shared by the engine tests: runs through real sandboxes, both in-process and subprocess."""

from __future__ import annotations

from typing import Any

import pytest

from recursa import RLM, Result
from recursa.models.scripted import ScriptedModel
from recursa.testing import router

SANDBOXES = ["inprocess", "subprocess"]
CONTEXT = "alpha beta gamma\n" * 200 + "The secret code is 7391.\n" + "delta\n" * 200


@pytest.fixture(params=SANDBOXES)
def sandbox(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def cell(code: str) -> str:
    """A reply that is only one code block."""
    return f"```repl\n{code}\n```"


def complete(
    replies: list[str], sandbox: str, *, query: str = "What is the secret code?", **options: Any
) -> tuple[Result, ScriptedModel]:
    """One completion of the scripted ``replies`` (root turns, by turn index)."""
    output_type = options.pop("output_type", None)
    model = ScriptedModel(router(replies))
    rlm = RLM(model, sandbox=sandbox, **{"cell_timeout": 30, **options})
    return rlm.completion(query, CONTEXT, output_type=output_type), model


def prompt_of(model: ScriptedModel, call: int = -1) -> str:
    """The last message of the ``call``-th request the model got."""
    return str(model.calls[call].messages[-1]["content"])
