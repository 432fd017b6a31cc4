"""How the FastAPI side renders errors: every ``TokenHubError``, validation failure and
HTTP exception becomes ``{"error": {"message", "type", "code"}}`` (the OpenAI shape)
with its status. The hot routes render through their own surface's codec instead."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokenhub.errors import TokenHubError


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(err: TokenHubError) -> Response:
    body: dict[str, Any] = {"message": err.message, "type": err.openai_type, "code": err.code}
    if err.details:
        body["details"] = err.details
    return json_response({"error": body}, err.status, err.headers)


def install_error_handlers(api: FastAPI) -> None:
    """Make ``api`` answer every error as a JSON ``{"error": ...}`` body, never a 500 page
    for a client's mistake."""

    @api.exception_handler(TokenHubError)
    async def _tokenhub(_: Request, err: TokenHubError) -> Response:
        return error_response(err)

    @api.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> Response:
        problems = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": e.get("msg", "")}
            for e in err.errors()
        ]
        first = problems[0] if problems else {"loc": "body", "msg": "invalid"}
        message = f"{first['loc']}: {first['msg']}"
        body = {"message": message, "type": "invalid_request_error", "details": problems}
        return json_response({"error": body}, 422)

    @api.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> Response:
        body = {"message": str(err.detail), "type": "invalid_request_error", "code": None}
        return json_response({"error": body}, err.status_code, dict(err.headers or {}))
