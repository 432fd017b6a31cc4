"""Test helpers: split SSE bytes into events and rebuild upstream chunks."""

from __future__ import annotations

from typing import Any

import orjson


def sse_events(data: bytes) -> list[tuple[str | None, str]]:
    """``(event name or None, data text)`` for each event in ``data``."""
    assert data == b"" or data.endswith(b"\n\n"), "SSE bytes must end with a blank line"
    events: list[tuple[str | None, str]] = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        name = None
        lines: list[str] = []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                lines.append(value)
        events.append((name, "\n".join(lines)))
    return events


def data_event(obj: Any) -> bytes:
    """One OpenAI-style ``data:`` event."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def named_event(name: str, obj: Any) -> bytes:
    """One Anthropic-style ``event:``/``data:`` event."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"
