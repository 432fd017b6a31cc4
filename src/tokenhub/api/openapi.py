"""OpenAPI entries for the hot routes, which the raw ASGI dispatcher serves before
FastAPI sees them: documented here so ``/openapi.json`` and ``/docs`` list every route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

_MESSAGES = {"type": "array", "minItems": 1, "items": {"type": "object"}}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]

HOT_ROUTES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "summary": "OpenAI chat completions (any provider serves it)",
        "required": ["messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": _MESSAGES,
            "stream": {"type": "boolean"},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "tools": {"type": "array"},
            "response_format": {"type": "object"},
        },
    },
    "/v1/messages": {
        "summary": "Anthropic messages (any provider serves it)",
        "required": ["messages", "max_tokens"],
        "properties": {
            "model": {"type": "string"},
            "messages": _MESSAGES,
            "max_tokens": {"type": "integer", "minimum": 1},
            "system": {},
            "stream": {"type": "boolean"},
            "tools": {"type": "array"},
        },
    },
    "/v1/chat": {
        "summary": "TokenHub's envelope: a request plus a routing policy",
        "required": ["request"],
        "properties": {
            "request": {"type": "object"},
            "policy": {"type": "object"},
            "capabilities": {"type": "object"},
            "output_format": {},
        },
    },
    "/v1/embeddings": {
        "summary": "OpenAI embeddings, routed to embedding models",
        "required": ["input"],
        "properties": {"model": {"type": "string"}, "input": {}},
    },
}


def _operation(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    body = {"type": "object", "required": doc["required"], "properties": doc["properties"]}
    return {
        "post": {
            "tags": ["public"],
            "summary": doc["summary"],
            "operationId": "hot_" + path.strip("/").replace("/", "_"),
            "security": _AUTH,
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 255},
                },
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "The answer, or an SSE stream when stream is true"},
                "4XX": {"description": "A client error in the surface's own error shape"},
                "502": {"description": "No model could answer"},
            },
        }
    }


def document_hot_routes(api: FastAPI) -> None:
    """Add the hot routes to the app's generated OpenAPI schema."""
    generate: Callable[[], dict[str, Any]] = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = generate()
            for path, doc in HOT_ROUTES.items():
                schema["paths"][path] = _operation(path, doc)
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
            }
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
