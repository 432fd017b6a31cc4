"""The one exception tree of TokenHub.

    TokenHubError                 status, openai_type, anthropic_type, message, details
    ├── BadRequest                400  invalid_request_error
    ├── Unauthorized              401  authentication_error
    ├── Forbidden                 403  permission_error
    ├── NotFound                  404  not_found_error
    ├── Conflict                  409  invalid_request_error
    ├── PayloadTooLarge           413  request_too_large
    ├── Unprocessable             422  invalid_request_error
    ├── TooManyRequests           429  rate_limit_error (retry_after)
    ├── NoEligibleModel           502  api_error (details: model -> why excluded)
    ├── UpstreamFailed            502  api_error (every attempt failed)
    └── ServiceUnavailable        503  overloaded_error

    ProviderError                 raised by adapters only: error_class, status, retry_after.
                                  The router catches it; it never reaches a client as is.

A surface renders a ``TokenHubError`` in its own dialect: OpenAI
``{"error": {"message", "type", "code"}}``, Anthropic
``{"type": "error", "error": {"type", "message"}}``. Messages never carry secrets.
"""

from __future__ import annotations

from typing import Any

from tokenhub.types import Decision, ErrorClass


class TokenHubError(Exception):
    status = 500
    openai_type = "server_error"
    anthropic_type = "api_error"
    code: str | None = None
    decision: Decision | None = None  # routing errors carry the trace for the request log

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(TokenHubError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class Unauthorized(TokenHubError):
    status = 401
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"


class Forbidden(TokenHubError):
    status = 403
    openai_type = "permission_error"
    anthropic_type = "permission_error"


class NotFound(TokenHubError):
    status = 404
    openai_type = "not_found_error"
    anthropic_type = "not_found_error"


class Conflict(TokenHubError):
    status = 409
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class PayloadTooLarge(TokenHubError):
    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"


class Unprocessable(TokenHubError):
    status = 422
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class TooManyRequests(TokenHubError):
    status = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(max(1, round(retry_after))))


class NoEligibleModel(TokenHubError):
    status = 502
    openai_type = "no_eligible_model"
    anthropic_type = "api_error"
    code = "no_eligible_model"


class UpstreamFailed(TokenHubError):
    status = 502
    openai_type = "upstream_error"
    anthropic_type = "api_error"
    code = "upstream_failed"


class ServiceUnavailable(TokenHubError):
    status = 503
    openai_type = "service_unavailable"
    anthropic_type = "overloaded_error"


class ProviderError(Exception):
    """An upstream call failed; ``error_class`` tells the router what to do next."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.status = status
        self.retry_after = retry_after
