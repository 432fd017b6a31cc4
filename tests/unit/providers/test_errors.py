"""Error classification, Retry-After parsing and secret scrubbing."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from tokenhub.providers.errors import (
    classify,
    classify_error_type,
    http_error,
    parse_retry_after,
    redact,
    retry_after_from_headers,
    transport_error,
)
from tokenhub.types import ErrorClass


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (413, "", ErrorClass.CONTEXT_OVERFLOW),
        (400, '{"error": {"code": "context_length_exceeded"}}', ErrorClass.CONTEXT_OVERFLOW),
        (400, "This model's maximum context length is 4096 tokens", ErrorClass.CONTEXT_OVERFLOW),
        (400, "prompt is too long: 210000 tokens > 200000 maximum", ErrorClass.CONTEXT_OVERFLOW),
        (422, "Too many tokens in input", ErrorClass.CONTEXT_OVERFLOW),
        (500, "maximum context length exceeded", ErrorClass.CONTEXT_OVERFLOW),
        (429, "", ErrorClass.RATE_LIMITED),
        (429, "too many tokens per minute", ErrorClass.RATE_LIMITED),
        (500, "", ErrorClass.TRANSIENT),
        (503, "", ErrorClass.TRANSIENT),
        (529, '{"type":"error","error":{"type":"overloaded_error"}}', ErrorClass.TRANSIENT),
        (408, "", ErrorClass.TRANSIENT),
        (400, "bad json", ErrorClass.FATAL),
        (401, "", ErrorClass.FATAL),
        (403, "", ErrorClass.FATAL),
        (404, "model not found", ErrorClass.FATAL),
    ],
)
def test_classify(status: int, body: str, expected: ErrorClass) -> None:
    """Statuses and overflow wording map to the documented error classes."""
    assert classify(status, body) == expected


def test_classify_stream_error_types() -> None:
    """In-stream Anthropic error types map like their HTTP statuses."""
    assert classify_error_type("overloaded_error", "Overloaded") == ErrorClass.TRANSIENT
    assert classify_error_type("rate_limit_error", "") == ErrorClass.RATE_LIMITED
    assert classify_error_type("invalid_request_error", "prompt is too long") == (
        ErrorClass.CONTEXT_OVERFLOW
    )
    assert classify_error_type("invalid_request_error", "bad") == ErrorClass.FATAL


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    """Delta-seconds parse as floats, garbage as None."""
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP date becomes the seconds until then (never negative)."""
    later = parse_retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 27 <= later <= 31
    assert parse_retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0


def test_retry_after_ms_wins() -> None:
    """OpenAI's retry-after-ms is preferred over Retry-After."""
    assert retry_after_from_headers({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5


def test_http_error_scrubs_keys_and_keeps_facts() -> None:
    """The message has the status and upstream text, but not the key."""
    body = '{"error": {"message": "Incorrect API key provided: sk-proj-abcdef123456"}}'
    err = http_error(401, body, {}, provider="openai", secrets=("sk-proj-abcdef123456",))
    assert "sk-proj" not in err.message and "401" in err.message
    assert err.error_class == ErrorClass.FATAL and err.status == 401


def test_redact_masks_key_shaped_tokens() -> None:
    """Known secrets and key-like tokens are masked even when only partly echoed."""
    assert redact("key sk-ab***yz12345 bad", ()) == "key *** bad"
    assert redact("the secret is hunter2hunter2", ("hunter2hunter2",)) == "the secret is ***"


def test_transport_error_is_transient_and_vague() -> None:
    """Timeouts and connection errors become transient errors naming only their kind."""
    err = transport_error(TimeoutError(), provider="p", during="connect")
    assert err.error_class == ErrorClass.TRANSIENT
    assert err.message == "p: timeout during connect"
    conn = transport_error(ConnectionResetError("http://user:pw@host"), provider="p", during="read")
    assert "pw" not in conn.message
