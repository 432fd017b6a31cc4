"""Idempotency: replay, body conflicts, concurrent duplicates, abandon and expiry,
on MemoryState and RedisState alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
import redis.asyncio as aioredis

from tokenhub import errors
from tokenhub.security.idempotency import (
    Conflict,
    Fresh,
    Idempotency,
    Replay,
    body_digest,
    parse_key,
    request_digest,
)
from tokenhub.state.base import SharedState
from tokenhub.state.memory import MemoryState
from tokenhub.state.redis import RedisState

KEY_ID = "k_0123456789ab"
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
DIGEST = body_digest(BODY)
HEADERS = (("content-type", "application/json"), ("x-tokenhub-model", "m"))


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """A state under test and a way to move its time (None: Redis, real time only)."""

    state: SharedState
    clock: FakeClock | None


async def _drop_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """The shared state under test, on each backend."""
    if request.param == "memory":
        clock = FakeClock()
        yield Backend(MemoryState(clock=clock), clock)
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"tokenhub-test:{uuid.uuid4().hex[:10]}:"
    state = RedisState(url, prefix=prefix)
    try:
        yield Backend(state, None)
    finally:
        await state.close()
        await _drop_prefix(url, prefix)


def make(backend: Backend, **kw: float) -> Idempotency:
    return Idempotency(backend.state, **kw)


async def finish(idem: Idempotency, claim: Fresh, body: bytes = b'{"ok":true}') -> None:
    await idem.complete(KEY_ID, "key-1", 200, HEADERS, body, token=claim.token)


async def test_first_begin_is_fresh_and_replay_follows(backend: Backend) -> None:
    """The first request owns the key; after complete the same key replays the response."""
    idem = make(backend)
    claim = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert isinstance(claim, Fresh)
    body = b'{"ok":true,"raw":"\n\x00bytes"}'
    await finish(idem, claim, body)
    again = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert again == Replay(200, HEADERS, body)


async def test_different_body_with_same_key_is_conflict(backend: Backend) -> None:
    """The same key with another body is a Conflict whose error is a 422, in flight or done."""
    idem = make(backend)
    claim = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert isinstance(claim, Fresh)
    other = body_digest(b"{}")
    in_flight = await idem.begin(KEY_ID, "key-1", other)
    assert isinstance(in_flight, Conflict)
    await finish(idem, claim)
    done = await idem.begin(KEY_ID, "key-1", other)
    assert isinstance(done, Conflict)
    assert done.error().status == 422


async def test_keys_are_scoped_per_api_key(backend: Backend) -> None:
    """The same Idempotency-Key under two API keys gives two independent claims."""
    idem = make(backend)
    first = await idem.begin(KEY_ID, "key-1", DIGEST)
    second = await idem.begin("k_other", "key-1", DIGEST)
    assert isinstance(first, Fresh)
    assert isinstance(second, Fresh)


async def test_concurrent_duplicates_replay_after_complete(backend: Backend) -> None:
    """Of 10 concurrent begins exactly one is Fresh; the 9 others wait, then replay it."""
    idem = make(backend, poll_s=5.0)  # a long poll: the completion message must wake them
    tasks = [asyncio.create_task(idem.begin(KEY_ID, "key-1", DIGEST)) for _ in range(10)]
    await asyncio.sleep(0.2)
    done = [t for t in tasks if t.done()]
    assert len(done) == 1
    owner = done[0].result()
    assert isinstance(owner, Fresh)
    await finish(idem, owner, b"first")
    rest = await asyncio.wait_for(asyncio.gather(*(t for t in tasks if t is not done[0])), 2)
    assert rest == [Replay(200, HEADERS, b"first")] * 9


async def test_abandon_lets_the_next_one_proceed(backend: Backend) -> None:
    """After abandon a retry gets a Fresh claim instead of waiting or replaying."""
    idem = make(backend)
    claim = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert isinstance(claim, Fresh)
    await idem.abandon(KEY_ID, "key-1", token=claim.token)
    retry = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert isinstance(retry, Fresh)
    assert retry.token != claim.token


async def test_abandon_wakes_a_waiter_which_takes_over(backend: Backend) -> None:
    """A waiting duplicate becomes the owner when the first request abandons."""
    idem = make(backend, poll_s=5.0)
    claim = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert isinstance(claim, Fresh)
    waiter = asyncio.create_task(idem.begin(KEY_ID, "key-1", DIGEST))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await idem.abandon(KEY_ID, "key-1", token=claim.token)
    assert isinstance(await asyncio.wait_for(waiter, 2), Fresh)


async def test_wait_times_out_with_409(backend: Backend) -> None:
    """A duplicate waiting longer than wait_timeout_s gets a 409 Conflict error."""
    idem = make(backend, wait_timeout_s=0.2, poll_s=0.05)
    assert isinstance(await idem.begin(KEY_ID, "key-1", DIGEST), Fresh)
    with pytest.raises(errors.Conflict, match="still in progress") as info:
        await idem.begin(KEY_ID, "key-1", DIGEST)
    assert info.value.status == 409


async def test_stale_token_cannot_complete_or_abandon(backend: Backend) -> None:
    """complete/abandon with another claim's token leave the owner's marker alone."""
    idem = make(backend, wait_timeout_s=0.1)
    claim = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert isinstance(claim, Fresh)
    await idem.abandon(KEY_ID, "key-1", token="not-mine")
    await idem.complete(KEY_ID, "key-1", 200, HEADERS, b"x", token="not-mine")
    with pytest.raises(errors.Conflict):  # still in flight: neither took effect
        await idem.begin(KEY_ID, "key-1", DIGEST)
    await finish(idem, claim, b"mine")
    replay = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert isinstance(replay, Replay) and replay.body == b"mine"


async def test_stored_response_expires_after_ttl(backend: Backend) -> None:
    """After ttl_s a stored response is gone and the key is fresh again."""
    if backend.clock is None:
        pytest.skip("time moves only in MemoryState")
    idem = make(backend)
    claim = await idem.begin(KEY_ID, "key-1", DIGEST)
    assert isinstance(claim, Fresh)
    await finish(idem, claim)
    backend.clock.now += 86400 - 1
    assert isinstance(await idem.begin(KEY_ID, "key-1", DIGEST), Replay)
    backend.clock.now += 2
    assert isinstance(await idem.begin(KEY_ID, "key-1", DIGEST), Fresh)


async def test_lease_expiry_frees_a_key_whose_owner_vanished(backend: Backend) -> None:
    """An in-flight marker never completed expires after lease_s, so retries proceed."""
    if backend.clock is None:
        pytest.skip("time moves only in MemoryState")
    idem = make(backend, lease_s=30, wait_timeout_s=0.05)
    assert isinstance(await idem.begin(KEY_ID, "key-1", DIGEST), Fresh)
    backend.clock.now += 31
    assert isinstance(await idem.begin(KEY_ID, "key-1", DIGEST), Fresh)


@pytest.mark.parametrize("value", ["a", "x" * 255, "order 42/retry-1", b"bytes-key"])
def test_parse_key_accepts_printable_ascii(value: str | bytes) -> None:
    """Header values of 1-255 printable ASCII characters are accepted as they are."""
    expected = value.decode() if isinstance(value, bytes) else value
    assert parse_key(value) == expected


@pytest.mark.parametrize("value", ["", "x" * 256, "tab\there", "caf\u00e9", b"\xff"])
def test_parse_key_rejects_other_values_with_400(value: str | bytes) -> None:
    """Empty, too long, control or non-ASCII header values are a 400 BadRequest."""
    with pytest.raises(errors.BadRequest) as info:
        parse_key(value)
    assert info.value.status == 400


def test_parse_key_absent_is_none() -> None:
    """No header means no idempotency handling."""
    assert parse_key(None) is None


def test_body_digest_is_sha256_of_raw_bytes() -> None:
    """The body digest is the hex SHA-256 of the exact request bytes."""
    assert body_digest(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert body_digest(b'{"a":1}') != body_digest(b'{"a": 1}')


def test_request_digest_ignores_json_formatting_not_content() -> None:
    """Key order and whitespace do not make a different request; any value does."""
    a = orjson.loads(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
    b = orjson.loads(b'{"messages":[{"content":"hi","role":"user"}],"model":"m"}')
    c = orjson.loads(b'{"messages":[{"content":"hi!","role":"user"}],"model":"m"}')
    assert request_digest(a) == request_digest(b)
    assert request_digest(a) != request_digest(c)
    assert request_digest({**a, "stream": True}) != request_digest(a)
