"""Idempotency-Key support for POST /v1/*: replay instead of calling a provider twice.

Flow for a request carrying ``Idempotency-Key`` (validated by ``parse_key``)::

    claim = await idem.begin(key_id, key, request_digest(parsed_body))
    Replay   -> answer claim.status / claim.headers / claim.body, call nothing
    Conflict -> raise claim.error()  (422: same key, different body)
    Fresh    -> handle the request, then
                await idem.complete(key_id, key, status, headers, body, token=claim.token)
                or, when it failed in a way a retry may fix (5xx, 429, cancelled),
                await idem.abandon(key_id, key, token=claim.token)

One state entry per (API key id, Idempotency-Key): first an in-flight marker holding
the body digest (set with ``set_nx``, so exactly one concurrent caller wins), then the
stored response, kept ``ttl_s`` (24 h) from completion. The marker has its own lease
(``lease_s``) so that a replica dying mid-request does not block the key for 24 h.

A duplicate that finds the marker waits: it subscribes to the entry's completion
channel (woken at once by ``complete``/``abandon``) and re-reads the entry every
``poll_s`` as a fallback against a lost message or an expired lease. After
``wait_timeout_s`` it raises ``tokenhub.errors.Conflict`` (409). On Redis each waiter
holds one pooled connection for its subscription while it waits.

Streams are stored too, once complete: the replay sends the recorded SSE events in one
block, which a streaming client reads like any other stream. A stream that broke after
its first event, or whose client went away, is abandoned like a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tokenhub import errors
from tokenhub.state.base import SharedState

MAX_KEY_LEN = 255
_PENDING = "pending"
_DONE = "done"

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Fresh:
    """The caller owns the key: handle the request, then ``complete`` or ``abandon``."""

    token: str


@dataclass(frozen=True, slots=True)
class Replay:
    """A stored response to send back as is."""

    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class Conflict:
    """The key was used with a different request body (rendered as 422, not 409)."""

    def error(self) -> errors.Unprocessable:
        return errors.Unprocessable(
            "Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )


Claim = Fresh | Replay | Conflict


@dataclass(frozen=True, slots=True)
class _Entry:
    state: str
    digest: str
    token: str = ""
    status: int = 0
    headers: Headers = ()
    body: bytes = b""


def parse_key(value: str | bytes | None) -> str | None:
    """The Idempotency-Key header's value, None when absent; ``BadRequest`` (400) unless
    it is 1-255 printable ASCII characters."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not 1 <= len(text) <= MAX_KEY_LEN or not all(" " <= c <= "~" for c in text):
        raise errors.BadRequest("Idempotency-Key must be 1-255 printable ASCII characters")
    return text


def body_digest(raw: bytes) -> str:
    """SHA-256 of ``raw`` bytes, hex."""
    return hashlib.sha256(raw).hexdigest()


def request_digest(data: Any) -> str:
    """The request fingerprint: the digest of the parsed body as canonical JSON (keys
    sorted, no whitespace), so the same request sent by two clients that format JSON
    differently (an SDK retry, a curl replay) is recognised as the same."""
    return body_digest(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))


class Idempotency:
    """Idempotency entries in shared state, scoped per API key id (see module docs)."""

    def __init__(
        self,
        state: SharedState,
        *,
        ttl_s: float = 86400.0,
        wait_timeout_s: float = 60.0,
        poll_s: float = 0.05,
        lease_s: float = 600.0,
    ) -> None:
        self._state = state
        self._ttl_s = ttl_s
        self._wait_timeout_s = wait_timeout_s
        self._poll_s = poll_s
        self._lease_s = lease_s

    async def begin(self, api_key_id: str, key: str, body_digest: str) -> Claim:
        """Claim the key, or get its stored response, or wait for the one in flight."""
        slot = _slot(api_key_id, key)
        claim = await self._attempt(slot, body_digest)
        if claim is not None:
            return claim
        return await self._wait(slot, body_digest)

    async def complete(
        self,
        api_key_id: str,
        key: str,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        token: str | None = None,
    ) -> None:
        """Store the response for replay and wake the waiters. A no-op when the marker
        is gone (lease expired) or, given ``token``, belongs to another claim."""
        slot = _slot(api_key_id, key)
        entry = await self._read(slot)
        if entry is None or entry.state != _PENDING or not _owns(entry, token):
            return
        done = _Entry(_DONE, entry.digest, status=status, headers=tuple(headers), body=body)
        await self._state.set(_entry_key(slot), _encode(done), self._ttl_s)
        await self._state.publish(_channel(slot), b"done")

    async def abandon(self, api_key_id: str, key: str, *, token: str | None = None) -> None:
        """Drop the in-flight marker so that a retry (or a waiter) can proceed."""
        slot = _slot(api_key_id, key)
        entry = await self._read(slot)
        if entry is None or entry.state != _PENDING or not _owns(entry, token):
            return
        await self._state.delete(_entry_key(slot))
        await self._state.publish(_channel(slot), b"abandoned")

    async def _attempt(self, slot: str, digest: str) -> Claim | None:
        """One look at the entry: a Claim, or None while another request is in flight."""
        token = secrets.token_hex(8)
        marker = _encode(_Entry(_PENDING, digest, token=token))
        if await self._state.set_nx(_entry_key(slot), marker, self._lease_s):
            return Fresh(token)
        entry = await self._read(slot)
        if entry is None:
            return None  # completed-and-expired or abandoned just now: try again
        if entry.digest != digest:
            return Conflict()
        if entry.state == _DONE:
            return Replay(entry.status, entry.headers, entry.body)
        return None

    async def _wait(self, slot: str, digest: str) -> Claim:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_timeout_s
        async with self._state.subscribe(_channel(slot)) as messages:
            woke = asyncio.Event()
            reader = asyncio.create_task(_signal_each(messages, woke))
            try:
                while True:
                    # Subscribed before this look, so a completion in between still wakes us.
                    claim = await self._attempt(slot, digest)
                    if claim is not None:
                        return claim
                    left = deadline - loop.time()
                    if left <= 0:
                        raise errors.Conflict(
                            "request with this Idempotency-Key is still in progress"
                        )
                    woke.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woke.wait(), min(self._poll_s, left))
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _read(self, slot: str) -> _Entry | None:
        raw = await self._state.get(_entry_key(slot))
        return None if raw is None else _decode(raw)


async def _signal_each(messages: AsyncIterator[bytes], woke: asyncio.Event) -> None:
    async for _ in messages:
        woke.set()


def _owns(entry: _Entry, token: str | None) -> bool:
    return token is None or entry.token == token


def _slot(api_key_id: str, key: str) -> str:
    # Hashed: the header is client text and must not shape state keys or channels.
    return hashlib.sha256(f"{api_key_id}\0{key}".encode()).hexdigest()[:40]


def _entry_key(slot: str) -> str:
    return f"idem:{slot}"


def _channel(slot: str) -> str:
    return f"idem-done:{slot}"


def _encode(entry: _Entry) -> bytes:
    """One JSON line of metadata, a newline, then the body bytes as they are."""
    meta = {
        "s": entry.state,
        "d": entry.digest,
        "t": entry.token,
        "c": entry.status,
        "h": entry.headers,
    }
    return orjson.dumps(meta) + b"\n" + entry.body


def _decode(raw: bytes) -> _Entry:
    head, _, body = raw.partition(b"\n")
    meta = orjson.loads(head)
    headers = tuple((str(k), str(v)) for k, v in meta["h"])
    return _Entry(meta["s"], meta["d"], meta["t"], meta["c"], headers, body)
