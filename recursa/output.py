"""Typed answers: the final value must validate against a pydantic type or a JSON Schema.

When it does not, the model is shown the validation error and tries again (a
bounded number of times); ``result.output`` holds the validated object and
``result.answer`` its JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .errors import ConfigError


class AnswerInvalid(Exception):
    """The final answer does not validate; the message is shown to the model."""


@dataclass(frozen=True)
class OutputSpec:
    """What a final answer must be: a Python type (pydantic) or a JSON Schema dict."""

    target: Any

    @property
    def schema(self) -> dict[str, Any]:
        if isinstance(self.target, dict):
            return self.target
        schema: dict[str, Any] = TypeAdapter(self.target).json_schema()
        return schema

    def instructions(self) -> str:
        return (
            "The final answer must be JSON matching this JSON Schema; pass a dict/list to "
            f"FINAL(...) or a JSON string:\n{json.dumps(self.schema, indent=1)}"
        )

    def validate(self, answer: str) -> tuple[Any, str]:
        """Return (typed value, canonical JSON) or raise :class:`AnswerInvalid`."""
        try:
            data = json.loads(answer)
        except json.JSONDecodeError as exc:
            raise AnswerInvalid(f"the final answer is not JSON: {exc}") from None
        if isinstance(self.target, dict):
            import jsonschema

            try:
                jsonschema.validate(data, self.target)
            except jsonschema.ValidationError as exc:
                raise AnswerInvalid(
                    f"the final answer does not match the schema: {exc.message}"
                ) from None
            except jsonschema.SchemaError as exc:
                raise ConfigError(f"invalid JSON Schema: {exc.message}") from None
            return data, json.dumps(data, ensure_ascii=False)
        adapter = TypeAdapter(self.target)
        try:
            value = adapter.validate_python(data)
        except ValidationError as exc:
            raise AnswerInvalid(f"the final answer does not validate:\n{exc}") from None
        return value, adapter.dump_json(value).decode()
