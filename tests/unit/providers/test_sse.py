"""The incremental SSE parser: framing, line endings, chunk splits, comments."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from tokenhub.providers.sse import SSEDecoder, SSEEvent, iter_sse

STREAM = (
    b'event: message_start\ndata: {"a": 1}\n\n'
    b": keep-alive comment\n\n"
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b"data: line one\ndata: line two\n\n"
    b"data: [DONE]\n\n"
)


def parse(*pieces: bytes) -> list[SSEEvent]:
    """Feed ``pieces`` in order, then flush."""
    decoder = SSEDecoder()
    events = [e for p in pieces for e in decoder.feed(p)]
    last = decoder.flush()
    return [*events, last] if last else events


def test_events_fields_and_raw() -> None:
    """Each event has its name, joined data lines and its exact bytes."""
    events = parse(STREAM)
    assert [(e.event, e.data) for e in events] == [
        ("message_start", '{"a": 1}'),
        ("ping", '{"type": "ping"}'),
        (None, "line one\nline two"),
        (None, "[DONE]"),
    ]
    assert events[0].raw == b'event: message_start\ndata: {"a": 1}\n\n'
    assert events[-1].raw == b"data: [DONE]\n\n"


def test_comment_only_block_dispatches_nothing() -> None:
    """A comment block is skipped and its bytes are in no event's raw."""
    events = parse(b": ping\n\n: another\n\ndata: x\n\n")
    assert [e.raw for e in events] == [b"data: x\n\n"]


def test_crlf_line_endings() -> None:
    """\\r\\n endings parse like \\n; raw keeps the \\r\\n bytes."""
    crlf = STREAM.replace(b"\n", b"\r\n")
    events = parse(crlf)
    assert [(e.event, e.data) for e in events] == [(e.event, e.data) for e in parse(STREAM)]
    assert events[0].raw == b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
    assert b"".join(e.raw for e in events) == crlf.replace(b": keep-alive comment\r\n\r\n", b"")


def test_crlf_split_between_cr_and_lf() -> None:
    """A chunk boundary between \\r and \\n does not end the event early."""
    events = parse(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n")
    assert [e.data for e in events] == ["a", "b"]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_same_events(cuts: list[int]) -> None:
    """However the bytes are split across network reads, the events are identical."""
    bounds = [0, *sorted(cuts), len(STREAM)]
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert parse(*pieces) == parse(STREAM)


def test_one_byte_at_a_time() -> None:
    """Feeding single bytes still yields every event exactly once."""
    assert parse(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == parse(STREAM)


def test_field_without_space_and_unknown_fields() -> None:
    """'data:x' works; id/retry fields are ignored but kept in raw."""
    events = parse(b"id: 7\nretry: 100\ndata:x\n\n")
    assert [(e.data, e.raw) for e in events] == [("x", b"id: 7\nretry: 100\ndata:x\n\n")]


def test_unterminated_last_event_flushed_with_blank_line() -> None:
    """A body ending without the blank line still dispatches, framed properly."""
    assert [e.raw for e in parse(b"data: a\n\ndata: [DONE]")] == [
        b"data: a\n\n",
        b"data: [DONE]\n\n",
    ]
    assert parse(b"data: a\n\n: trailing comment") == parse(b"data: a\n\n")


def test_event_without_data_not_dispatched() -> None:
    """An event name with no data line dispatches nothing, per the SSE spec."""
    assert parse(b"event: lonely\n\ndata: y\n\n")[0].data == "y"
    assert len(parse(b"event: lonely\n\ndata: y\n\n")) == 1


@pytest.fixture
async def chunked_server() -> AsyncIterator[str]:
    """A loopback server that writes STREAM in awkward pieces with pauses."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for start in range(0, len(STREAM), 7):
            await resp.write(STREAM[start : start + 7])
            await asyncio.sleep(0.001)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def test_iter_sse_over_real_socket(chunked_server: str) -> None:
    """iter_sse on a live aiohttp response yields the same events as one-shot parsing."""
    async with aiohttp.ClientSession() as session, session.get(chunked_server) as resp:
        events = [e async for e in iter_sse(resp)]
    assert events == parse(STREAM)
