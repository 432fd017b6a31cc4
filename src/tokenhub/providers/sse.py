"""An incremental Server-Sent-Events parser over an aiohttp response body.

Events are cut at the blank line that ends them, whatever the network chunking, with
``\\n`` or ``\\r\\n`` line endings. ``raw`` keeps the exact bytes of each event (its
``event:``/``data:`` lines and the terminating blank line) so that a surface speaking
the provider's dialect can write them through untouched.

Comment lines (``: ping``) are ignored; a block of only comments dispatches nothing,
as the SSE specification says, and its bytes are not part of any event's ``raw``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True, frozen=True)
class SSEEvent:
    """One dispatched event: its type (if named), its data lines joined, its bytes."""

    event: str | None
    data: str
    raw: bytes


class _Body(Protocol):
    def iter_any(self) -> AsyncIterable[bytes]: ...


class _Response(Protocol):
    @property
    def content(self) -> _Body: ...


class SSEDecoder:
    """Feed bytes in, get complete events out; keeps the partial tail between feeds."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first line not yet consumed
        self._event_start = 0  # start of the current event's raw bytes in _buf
        self._event: str | None = None
        self._data: list[str] = []
        self._has_fields = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Add ``data`` and return the events it completed (possibly none)."""
        self._buf += data
        events: list[SSEEvent] = []
        while True:
            nl = self._buf.find(b"\n", self._pos)
            if nl < 0:
                break
            line = bytes(self._buf[self._pos : nl]).removesuffix(b"\r")
            self._pos = nl + 1
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._compact()
        return events

    def flush(self) -> SSEEvent | None:
        """At end of body: the last event if it carried data but no blank line.

        Some servers end the body right after ``data: [DONE]\\n``; the event is still
        dispatched, and its ``raw`` gets the missing blank line so it stays well framed.
        """
        tail = bytes(self._buf[self._pos :])
        if tail.strip():
            self.feed(b"\n")
        if not self._data:
            return None
        raw = bytes(self._buf[self._event_start :])
        raw = raw if raw.endswith(b"\n") else raw + b"\n"
        event = self._dispatch(raw + b"\n")
        self._buf.clear()
        self._pos = self._event_start = 0
        return event

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._end_block()
        if line.startswith(b":"):
            if not self._has_fields:
                # a comment before any field: not part of the next event's bytes
                self._event_start = self._pos
            return None
        self._has_fields = True
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        return None  # id/retry/unknown fields only matter to browsers

    def _end_block(self) -> SSEEvent | None:
        raw = bytes(self._buf[self._event_start : self._pos])
        self._event_start = self._pos
        if not self._data:
            self._reset()
            return None
        return self._dispatch(raw)

    def _dispatch(self, raw: bytes) -> SSEEvent:
        event = SSEEvent(event=self._event, data="\n".join(self._data), raw=raw)
        self._reset()
        return event

    def _reset(self) -> None:
        self._event = None
        self._data = []
        self._has_fields = False

    def _compact(self) -> None:
        # drop bytes no pending event needs, so the buffer stays small on long streams
        cut = min(self._event_start, self._pos)
        if cut:
            del self._buf[:cut]
            self._pos -= cut
            self._event_start -= cut


async def iter_sse(resp: _Response) -> AsyncIterator[SSEEvent]:
    """Yield the events of an aiohttp ``ClientResponse`` body as they complete.

    Transport errors (``aiohttp.ClientPayloadError`` on a dropped connection, timeouts)
    propagate unchanged; the adapter translates them at its boundary.
    """
    decoder = SSEDecoder()
    async for data in resp.content.iter_any():
        for event in decoder.feed(data):
            yield event
    last = decoder.flush()
    if last is not None:
        yield last
