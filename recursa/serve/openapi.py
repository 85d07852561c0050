"""The OpenAPI description of the server (``/openapi.json``) and a page that shows it
(``/docs``), written by hand: the OpenAI protocol's parts the server speaks, and the
``rlm`` extension."""

from __future__ import annotations

from typing import Any

from .._version import __version__


def _error() -> dict[str, Any]:
    return {
        "description": "an OpenAI-shaped error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_schema(model_name: str, keyed: bool) -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"bearer": []}] if keyed else []
    errors = {str(code): _error() for code in (400, 401, 404, 408, 413, 429, 500, 503)}
    budget = {
        "type": "object",
        "description": "limits that can only tighten the server's",
        "properties": {
            name: {"type": "number", "exclusiveMinimum": 0}
            for name in ("usd", "tokens", "calls", "seconds")
        },
        "additionalProperties": False,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "recursa serve",
            "version": __version__,
            "description": (
                "An RLM behind OpenAI's chat-completions protocol. Each chat completion is "
                f"one RLM run; the model is {model_name!r}. The 'rlm' field of a request "
                "sets the run's context and may only lower the server's limits; the 'rlm' "
                "field of a reply tells the run's usage by model and depth, cost and trace."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": ["string", "null"]},
                                "code": {"type": ["string", "null"]},
                            },
                        }
                    },
                },
                "RlmRequest": {
                    "type": "object",
                    "properties": {
                        "context": {
                            "description": "replaces the conversation as the run's context",
                            "oneOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}},
                                {"type": "object"},
                            ],
                        },
                        "max_depth": {"type": "integer", "minimum": 0},
                        "max_iterations": {"type": "integer", "minimum": 1},
                        "budget": budget,
                        "progress": {
                            "type": "boolean",
                            "description": "stream progress as chunks with empty choices and "
                            "rlm.progress, instead of SSE comments",
                        },
                    },
                    "additionalProperties": False,
                },
                "ChatCompletionRequest": {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {
                        "model": {"type": "string", "default": model_name},
                        "messages": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["role"],
                                "properties": {
                                    "role": {"type": "string"},
                                    "content": {"type": ["string", "array", "null"]},
                                },
                            },
                        },
                        "stream": {"type": "boolean"},
                        "stream_options": {
                            "type": "object",
                            "properties": {"include_usage": {"type": "boolean"}},
                        },
                        "n": {"const": 1},
                        "response_format": {
                            "type": "object",
                            "description": "json_schema: the answer must match the schema",
                            "properties": {
                                "type": {"enum": ["text", "json_object", "json_schema"]},
                                "json_schema": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string"},
                                        "schema": {"type": "object"},
                                        "strict": {"type": "boolean"},
                                    },
                                },
                            },
                        },
                        "rlm": {"$ref": "#/components/schemas/RlmRequest"},
                    },
                },
            },
        },
        "paths": {
            "/health": {
                "get": {
                    "summary": "liveness, and the runs going and waiting (no key needed)",
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/v1/models": {
                "get": {
                    "summary": "the models a request may name",
                    "security": secured,
                    "responses": {"200": {"description": "a list of models"}, **errors},
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "summary": "one model",
                    "security": secured,
                    "parameters": [
                        {
                            "name": "model",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": {"description": "the model"}, **errors},
                }
            },
            "/v1/chat/completions": {
                "post": {
                    "summary": "answer the last user message with one RLM run",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "a chat.completion, or with stream an event stream "
                            "of chat.completion.chunk objects ending in data: [DONE]",
                            "content": {
                                "application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        **errors,
                    },
                }
            },
        },
    }


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>recursa serve: API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:1rem;overflow:auto}
h2{margin-top:2rem}.m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}</style>
</head><body><h1>recursa serve</h1>
<p>OpenAI-compatible: point any OpenAI client at <code>/v1</code>.
The machine-readable description is <a href="openapi.json">/openapi.json</a>.</p>
<div id="api">loading /openapi.json ...</div>
<script>
fetch("openapi.json").then(r => r.json()).then(spec => {
  const api = document.getElementById("api");
  api.textContent = "";
  const p = document.createElement("p");
  p.textContent = spec.info.description;
  api.append(p);
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const h = document.createElement("h2");
      const m = document.createElement("span");
      m.className = "m"; m.textContent = method;
      h.append(m, path);
      const s = document.createElement("p");
      s.textContent = op.summary + (op.security && op.security.length ? " (API key)" : "");
      api.append(h, s);
    }
  }
  const h = document.createElement("h2");
  h.textContent = "Schemas";
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(spec.components.schemas, null, 2);
  api.append(h, pre);
});
</script></body></html>
"""
