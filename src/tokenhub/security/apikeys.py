"""Client API keys: generation, authentication with an in-memory cache, and CRUD.

A key is ``tokenhub_`` + 64 hex digits (256 random bits). Only its SHA-256 digest is
stored: a key that random needs no slow hash, and a per-request bcrypt would hand
attackers a cheap CPU denial of service. Authentication looks the digest up in memory
first, so a key seen in the last ``cache_ttl_s`` seconds costs no database read; unknown
digests are remembered briefly (in a bounded cache) so a flood of bad keys does not turn
into a flood of queries.

Changes made through this ``KeyRing`` invalidate its cache at once. With several
replicas, other processes learn of a change through ``SharedState.publish("keys", id)``
when a state is given (the subscriber runs between ``start()`` and ``stop()``); without
one, ``cache_ttl_s`` bounds how long another replica may accept a revoked key.

``last_used_at`` is kept in memory by ``touch`` and written in batches by a background
flusher, so no request ever awaits a database write.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from tokenhub.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from tokenhub.state.base import SharedState
from tokenhub.store.apikeys import MICRO, ApiKeyRepo, KeyRecord

__all__ = [
    "SCOPES",
    "KeyRecord",
    "KeyRing",
    "digest_of",
    "generate_key",
    "parse_duration",
    "parse_scopes",
    "presented_key",
]

log = logging.getLogger("tokenhub.security")

KEY_PREFIX = "tokenhub_"
SCOPES = ("chat", "plan", "embeddings", "feedback")
INVALID_KEY = "missing or invalid api key"
KEYS_CHANNEL = "keys"

_KEY_RE = re.compile(r"tokenhub_[0-9a-f]{64}")
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_DURATION_S = 100 * 365 * 86400
_AUTH_BEARER = b"bearer "


def generate_key() -> tuple[str, str, str]:
    """A fresh key, its SHA-256 hex digest, and the short prefix shown in lists."""
    key = KEY_PREFIX + secrets.token_hex(32)
    return key, digest_of(key), key[: len(KEY_PREFIX) + 8]


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key a client sent, from raw ASGI headers (lower-case names): OpenAI SDKs send
    ``Authorization: Bearer <key>``, Anthropic SDKs ``x-api-key: <key>``."""
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _AUTH_BEARER:
                return value[7:].strip().decode("latin-1")
        elif name == b"x-api-key":
            return value.strip().decode("latin-1")
    return None


def parse_duration(text: str) -> float:
    """Seconds in ``"720h"``, ``"30d"``, ``"90m"``, ``"2w"`` or ``"45s"``."""
    m = _DURATION_RE.fullmatch(text)
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)] if m else 0.0
    if not 0 < seconds <= _MAX_DURATION_S:
        raise BadRequest("expires_in: expected a positive duration like 720h or 30d")
    return seconds


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated scopes in canonical order; empty means every scope."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise BadRequest(f"scopes: unknown scope {unknown[0]!r}; expected some of {SCOPES}")
    return tuple(s for s in SCOPES if s in wanted)


def budget_micro(usd: float | None) -> int | None:
    if usd is None:
        return None
    if not 0 <= usd <= 1e9:
        raise BadRequest("monthly_budget_usd: expected 0 to 1e9")
    return round(usd * MICRO)


class KeyRing:
    """Authenticates presented keys and manages them for the admin API.

    ``clock`` is wall-clock epoch seconds (expiry, last use, cache ages).
    """

    def __init__(
        self,
        repo: ApiKeyRepo,
        *,
        clock: Callable[[], float] = time.time,
        cache_ttl_s: float = 300.0,
        negative_ttl_s: float = 30.0,
        negative_max: int = 10_000,
        state: SharedState | None = None,
        flush_interval_s: float = 5.0,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self._ttl = cache_ttl_s
        self._neg_ttl = negative_ttl_s
        self._neg_max = negative_max
        self._state = state
        self._flush_interval = flush_interval_s
        self._cache: dict[str, tuple[KeyRecord, float]] = {}  # digest -> (record, fetched)
        self._unknown: OrderedDict[str, float] = OrderedDict()  # digest -> fetched
        self._inflight: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._generation = 0  # bumped on every invalidation; stale reads are not cached
        self._touched: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- the hot path --------------------------------------------------------------

    async def authenticate(self, presented: str | None) -> KeyRecord:
        """The enabled, unexpired key ``presented``; Unauthorized otherwise (one message
        for every failure, so a caller learns nothing about which check failed)."""
        if not presented or _KEY_RE.fullmatch(presented) is None:
            raise Unauthorized(INVALID_KEY)
        digest = digest_of(presented)
        rec = await self._lookup(digest)
        now = self._clock()
        if rec is None or not rec.enabled or rec.expired(now):
            raise Unauthorized(INVALID_KEY)
        if not hmac.compare_digest(rec.digest, digest):
            raise Unauthorized(INVALID_KEY)
        return rec

    def check_scope(self, rec: KeyRecord, scope: str | None) -> None:
        """Forbidden unless ``rec`` may use ``scope`` (None: any valid key will do)."""
        if scope is not None and rec.scopes and scope not in rec.scopes:
            raise Forbidden("scope not allowed")

    def touch(self, rec: KeyRecord) -> None:
        """Note a use of ``rec``; the flusher writes it later."""
        now = self._clock()
        rec.last_used_at = now
        self._touched[rec.id] = now

    async def _lookup(self, digest: str) -> KeyRecord | None:
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[1] < self._ttl:
            return hit[0]
        seen = self._unknown.get(digest)
        if seen is not None and now - seen < self._neg_ttl:
            return None
        task = self._inflight.get(digest)
        if task is None:  # one query serves every concurrent miss of a digest
            task = asyncio.ensure_future(self._load(digest))
            self._inflight[digest] = task
            task.add_done_callback(lambda t: self._loaded(digest, t))
        # Shielded: a client hanging up must not cancel the query others wait on.
        return await asyncio.shield(task)

    async def _load(self, digest: str) -> KeyRecord | None:
        generation = self._generation
        try:
            rec = await self._repo.get_by_digest(digest)
        except Exception as exc:
            log.warning("key lookup failed: %s", type(exc).__name__)
            raise ServiceUnavailable("api key store unavailable") from None
        if generation == self._generation:  # no change raced the read: safe to cache
            self._remember(digest, rec)
        return rec

    def _loaded(self, digest: str, task: asyncio.Future[KeyRecord | None]) -> None:
        if self._inflight.get(digest) is task:
            del self._inflight[digest]
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is not reported

    def _remember(self, digest: str, rec: KeyRecord | None) -> None:
        now = self._clock()
        if rec is not None:
            self._cache[digest] = (rec, now)
            self._unknown.pop(digest, None)
            return
        self._unknown[digest] = now
        self._unknown.move_to_end(digest)
        while len(self._unknown) > self._neg_max:
            self._unknown.popitem(last=False)

    # -- management ----------------------------------------------------------------

    async def create(
        self,
        name: str,
        *,
        scopes: Iterable[str] = (),
        expires_in: str | None = None,
        rotation_days: int | None = None,
        monthly_budget_usd: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key: its record and the key itself (shown to the caller once)."""
        if not name.strip():
            raise BadRequest("name: must not be empty")
        key, digest, prefix = generate_key()
        now = self._clock()
        rec = KeyRecord(
            id=secrets.token_hex(8),
            digest=digest,
            prefix=prefix,
            name=name,
            scopes=parse_scopes(scopes),
            created_at=now,
            expires_at=None if expires_in is None else now + parse_duration(expires_in),
            rotation_days=rotation_days,
            budget_micro=budget_micro(monthly_budget_usd),
            rpm=rpm,
            tpm=tpm,
        )
        await self._repo.insert(rec)
        return rec, key

    async def get(self, id: str) -> KeyRecord:
        rec = await self._repo.get(id)
        if rec is None:
            raise NotFound("api key not found")
        return self._with_last_use(rec)

    async def list(self) -> builtins.list[KeyRecord]:
        """Every key, with last-use times not yet flushed folded in."""
        return [self._with_last_use(r) for r in await self._repo.list()]

    async def update(self, id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Apply admin changes (name, scopes, enabled, expires_in, rotation_days,
        monthly_budget_usd, rpm, tpm); they hold from the next request on."""
        rec = await self._repo.update(id, self._columns(changes))
        if rec is None:
            raise NotFound("api key not found")
        await self._changed(id)
        return self._with_last_use(rec)

    async def delete(self, id: str) -> None:
        """Revoke a key for good; the next request with it gets a 401."""
        if not await self._repo.delete(id):
            raise NotFound("api key not found")
        self._touched.pop(id, None)
        await self._changed(id)

    async def rotate(self, id: str) -> tuple[KeyRecord, str]:
        """Replace a key's secret: the old key stops working at once, the new one is
        returned once. Everything else (scopes, budget, spend) stays with the id."""
        key, digest, prefix = generate_key()
        values = {"digest": digest, "prefix": prefix, "rotated_at": self._clock()}
        rec = await self._repo.update(id, values)
        if rec is None:
            raise NotFound("api key not found")
        await self._changed(id)
        return self._with_last_use(rec), key

    def now(self) -> float:
        """The ring's clock (wall-clock epoch seconds)."""
        return self._clock()

    def invalidate(self, id: str) -> None:
        """Forget cached state of key ``id`` so the next request reads the store."""
        self._generation += 1
        for digest in [d for d, (r, _) in self._cache.items() if r.id == id]:
            del self._cache[digest]

    async def _changed(self, id: str) -> None:
        self.invalidate(id)
        if self._state is not None:
            try:
                await self._state.publish(KEYS_CHANNEL, id.encode())
            except Exception as exc:  # the TTL still bounds staleness elsewhere
                log.warning("could not publish key change: %s", type(exc).__name__)

    def _columns(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field, value in changes.items():
            if value is None and field in ("name", "scopes", "enabled"):
                raise BadRequest(f"{field}: must not be null")
            if field == "name":
                if not str(value).strip():
                    raise BadRequest("name: must not be empty")
                out["name"] = value
            elif field == "scopes":
                out["scopes"] = list(parse_scopes(value))
            elif field == "expires_in":
                out["expires_at"] = None if value is None else self._clock() + parse_duration(value)
            elif field == "monthly_budget_usd":
                out["monthly_budget_micro"] = budget_micro(value)
            elif field in ("enabled", "rotation_days", "rpm", "tpm"):
                out[field] = value
            else:
                raise BadRequest(f"{field}: cannot be changed")
        return out

    def _with_last_use(self, rec: KeyRecord) -> KeyRecord:
        seen = self._touched.get(rec.id)
        if seen is not None and (rec.last_used_at is None or seen > rec.last_used_at):
            return replace(rec, last_used_at=seen)
        return rec

    # -- background work -------------------------------------------------------------

    async def start(self) -> None:
        """Start the last-use flusher and, with a shared state, the change subscriber."""
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._flush_loop()))
        if self._state is not None:
            ready = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._listen(self._state, ready)))
            await ready.wait()

    async def stop(self) -> None:
        """Stop background work and write the last-use times still held; idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def flush(self) -> None:
        """Write pending last-use times in one batch (kept for the next try on failure)."""
        batch, self._touched = self._touched, {}
        try:
            await self._repo.touch_many(batch)
        except Exception as exc:
            log.warning("could not record key last use: %s", type(exc).__name__)
            for id, ts in batch.items():
                self._touched[id] = max(ts, self._touched.get(id, ts))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()

    async def _listen(self, state: SharedState, ready: asyncio.Event) -> None:
        try:
            async with state.subscribe(KEYS_CHANNEL) as messages:
                ready.set()
                async for message in messages:
                    self.invalidate(message.decode(errors="replace"))
        except Exception as exc:  # the cache TTL still bounds staleness
            log.warning("key change subscription ended: %s", type(exc).__name__)
        finally:
            ready.set()
