"""Turning upstream failures into ``ProviderError`` with the right ``ErrorClass``.

Every adapter translates at its boundary with these helpers, so the classes mean the
same thing for every provider:

- ``CONTEXT_OVERFLOW``: 413, or a body saying the prompt does not fit the model.
- ``RATE_LIMITED``: 429 (with ``retry_after`` when the upstream said how long).
- ``TRANSIENT``: 5xx (529 overloaded included), 408, timeouts, refused or dropped
  connections, a stream that ends before its end marker.
- ``FATAL``: any other 4xx (bad key, bad request).

Messages carry the status and a short excerpt of the upstream's own message, scrubbed
of anything that looks like a key; never request headers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import orjson

from tokenhub.errors import ProviderError
from tokenhub.types import ErrorClass

_OVERFLOW_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "context limit",
    "maximum model length",
    "prompt is too long",
    "prompt too long",
    "input is too long",
    "too many tokens",
    "too many input tokens",
)

# Upstreams echo part of a rejected key ("Incorrect API key provided: sk-ab***yz").
_KEY_PATTERN = re.compile(r"\b(?:sk|key|api|tok)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)
_MAX_EXCERPT = 300

_ANTHROPIC_TYPES = {
    "overloaded_error": ErrorClass.TRANSIENT,
    "api_error": ErrorClass.TRANSIENT,
    "timeout_error": ErrorClass.TRANSIENT,
    "server_error": ErrorClass.TRANSIENT,  # OpenAI / vLLM mid-stream failures
    "InternalServerError": ErrorClass.TRANSIENT,
    "rate_limit_error": ErrorClass.RATE_LIMITED,
    "request_too_large": ErrorClass.CONTEXT_OVERFLOW,
}


def is_context_overflow(text: str) -> bool:
    """Whether an error text says the prompt does not fit the model's context."""
    low = text.lower()
    return any(marker in low for marker in _OVERFLOW_MARKERS)


def classify(status: int, body_text: str) -> ErrorClass:
    """The error class of an upstream HTTP failure.

    429 is checked first: a rate-limit message that talks about tokens per minute is
    still a rate limit, not an overflow.
    """
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status == 413 or is_context_overflow(body_text):
        return ErrorClass.CONTEXT_OVERFLOW
    if status >= 500 or status == 408:
        return ErrorClass.TRANSIENT
    return ErrorClass.FATAL


def classify_error_type(error_type: str, message: str) -> ErrorClass:
    """The class of an error reported inside a 200 stream (Anthropic ``error`` event)."""
    if is_context_overflow(message):
        return ErrorClass.CONTEXT_OVERFLOW
    return _ANTHROPIC_TYPES.get(error_type, ErrorClass.FATAL)


def parse_retry_after(header: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date."""
    if not header or not header.strip():
        return None
    value = header.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (OpenAI) wins over ``Retry-After``; None when neither parses."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the given secrets and anything key-shaped replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


def upstream_message(body_text: str) -> str:
    """The upstream's own error message when the body is a known JSON shape."""
    try:
        body = orjson.loads(body_text)
    except orjson.JSONDecodeError:
        return body_text
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(body.get("detail"), str):  # vLLM / FastAPI style
            return str(body["detail"])
    return body_text


def http_error(
    status: int,
    body_text: str,
    headers: Mapping[str, str],
    *,
    provider: str,
    secrets: tuple[str, ...] = (),
) -> ProviderError:
    """The ``ProviderError`` for a non-2xx upstream answer."""
    excerpt = redact(upstream_message(body_text), secrets)[:_MAX_EXCERPT]
    return ProviderError(
        classify(status, body_text),
        f"{provider}: upstream status {status}: {excerpt}".rstrip(": "),
        status=status,
        retry_after=retry_after_from_headers(headers),
    )


def transport_error(exc: BaseException, *, provider: str, during: str) -> ProviderError:
    """A ``TRANSIENT`` error for a timeout or connection failure.

    Only the exception type goes into the message: aiohttp messages may quote the URL,
    and a URL may carry credentials.
    """
    kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
    return ProviderError(ErrorClass.TRANSIENT, f"{provider}: {kind} during {during}")


def stream_error(
    error_type: str, message: str, *, provider: str, secrets: tuple[str, ...] = ()
) -> ProviderError:
    """A ``ProviderError`` for an error event received inside a stream."""
    excerpt = redact(message, secrets)[:_MAX_EXCERPT]
    return ProviderError(
        classify_error_type(error_type, message),
        f"{provider}: stream error {error_type}: {excerpt}",
    )
