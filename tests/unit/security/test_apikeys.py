"""KeyRing against a real SQLite store: authentication, cache, expiry, scopes, CRUD."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tokenhub.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from tokenhub.security.apikeys import (
    KeyRecord,
    KeyRing,
    digest_of,
    generate_key,
    parse_duration,
    presented_key,
)
from tokenhub.state.memory import MemoryState
from tokenhub.store.apikeys import ApiKeyRepo
from tokenhub.store.db import Database

INVALID = "missing or invalid api key"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingRepo(ApiKeyRepo):
    """The real repository, counting digest lookups (the queries the cache saves)."""

    lookups = 0

    async def get_by_digest(self, digest: str) -> KeyRecord | None:
        self.lookups += 1
        await asyncio.sleep(0.01)  # let concurrent callers pile up
        return await super().get_by_digest(digest)


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    """These tests are about their subject, not the store: SQLite only."""
    return sqlite_db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo(db: Database) -> CountingRepo:
    return CountingRepo(db)


@pytest.fixture
def ring(repo: CountingRepo, clock: Clock) -> KeyRing:
    return KeyRing(repo, clock=clock, cache_ttl_s=300, negative_ttl_s=30)


async def _unauthorized(ring: KeyRing, presented: str | None) -> str:
    with pytest.raises(Unauthorized) as info:
        await ring.authenticate(presented)
    return info.value.message


def test_generated_keys_have_the_documented_format() -> None:
    """Keys are tokenhub_ + 64 hex; the digest is SHA-256 hex; the prefix starts the key."""
    key, digest, prefix = generate_key()
    assert key.startswith("tokenhub_") and len(key) == 73
    int(key[9:], 16)
    assert digest == digest_of(key) and len(digest) == 64 and digest not in key
    assert key.startswith(prefix) and len(prefix) == 17
    assert generate_key()[0] != key


def test_presented_key_reads_bearer_and_x_api_key() -> None:
    """OpenAI-style Authorization: Bearer and Anthropic-style x-api-key are both accepted."""
    assert presented_key([(b"authorization", b"Bearer tokenhub_x")]) == "tokenhub_x"
    assert presented_key([(b"authorization", b"bearer  tokenhub_y ")]) == "tokenhub_y"
    assert presented_key([(b"host", b"h"), (b"x-api-key", b"tokenhub_z")]) == "tokenhub_z"
    assert presented_key([(b"authorization", b"Basic abc")]) is None
    assert presented_key([(b"host", b"h")]) is None


def test_parse_duration_accepts_hours_days_and_refuses_nonsense() -> None:
    """expires_in takes 720h / 30d style durations; anything else is a 400."""
    assert parse_duration("720h") == 720 * 3600
    assert parse_duration("30d") == parse_duration("720h")
    assert parse_duration("90m") == 5400
    for bad in ("", "abc", "0d", "-1h", "10y", "1e9d"):
        with pytest.raises(BadRequest):
            parse_duration(bad)


async def test_valid_key_authenticates_and_bad_ones_get_one_message(ring: KeyRing) -> None:
    """A created key works; missing, malformed and unknown keys all get the same 401."""
    rec, key = await ring.create("ci")
    assert (await ring.authenticate(key)).id == rec.id
    other, _, _ = generate_key()
    for bad in (None, "", "sk-123", key.upper(), key + "0", other):
        assert await _unauthorized(ring, bad) == INVALID


async def test_a_recently_seen_key_costs_no_database_read(
    ring: KeyRing, repo: CountingRepo, clock: Clock
) -> None:
    """Within the cache TTL repeated requests never query; after it, one query refreshes."""
    _, key = await ring.create("ci")
    for _ in range(20):
        await ring.authenticate(key)
    assert repo.lookups == 1
    clock.now += 301
    await ring.authenticate(key)
    assert repo.lookups == 2


async def test_concurrent_misses_share_one_query(ring: KeyRing, repo: CountingRepo) -> None:
    """Fifty simultaneous first requests with one key cause one lookup."""
    _, key = await ring.create("ci")
    recs = await asyncio.gather(*(ring.authenticate(key) for _ in range(50)))
    assert repo.lookups == 1 and len({r.id for r in recs}) == 1


async def test_unknown_keys_are_negatively_cached_briefly(
    ring: KeyRing, repo: CountingRepo, clock: Clock
) -> None:
    """A bad key queries once per negative TTL, not once per request."""
    bad, digest, prefix = generate_key()
    for _ in range(10):
        await _unauthorized(ring, bad)
    assert repo.lookups == 1
    await repo.insert(KeyRecord(id="f" * 16, digest=digest, prefix=prefix, name="late"))
    await _unauthorized(ring, bad)  # still remembered as unknown
    clock.now += 31
    assert (await ring.authenticate(bad)).name == "late"


async def test_negative_cache_is_bounded(repo: CountingRepo, clock: Clock) -> None:
    """The unknown-key cache forgets its oldest entries beyond its size."""
    ring = KeyRing(repo, clock=clock, negative_max=2)
    keys = [generate_key() for _ in range(3)]
    for key, _, _ in keys:
        await _unauthorized(ring, key)
    first, digest, prefix = keys[0]
    await repo.insert(KeyRecord(id="f" * 16, digest=digest, prefix=prefix, name="evicted"))
    assert (await ring.authenticate(first)).name == "evicted"  # evicted, so looked up again


async def test_expired_key_is_refused(ring: KeyRing, clock: Clock) -> None:
    """A key with expires_in stops working once the clock passes it, cached or not."""
    rec, key = await ring.create("temp", expires_in="1h")
    assert rec.expires_at == clock.now + 3600
    await ring.authenticate(key)
    clock.now += 3600
    assert await _unauthorized(ring, key) == INVALID


async def test_scopes_restrict_and_empty_means_all(ring: KeyRing) -> None:
    """A scoped key may use its scopes only; an unscoped key may use every scope."""
    scoped, _ = await ring.create("chat only", scopes=["chat"])
    anything, _ = await ring.create("all")
    ring.check_scope(scoped, "chat")
    ring.check_scope(scoped, None)
    with pytest.raises(Forbidden, match="scope not allowed"):
        ring.check_scope(scoped, "plan")
    for scope in ("chat", "plan", "embeddings", "feedback"):
        ring.check_scope(anything, scope)
    with pytest.raises(BadRequest, match="admin"):
        await ring.create("bad", scopes=["chat", "admin"])


async def test_rotation_invalidates_the_old_key_at_once(ring: KeyRing) -> None:
    """After rotate() the old key is refused on the next request and the new one works."""
    rec, old = await ring.create("ci", scopes=["chat"], monthly_budget_usd=5)
    await ring.authenticate(old)  # now cached
    rotated, new = await ring.rotate(rec.id)
    assert new != old and rotated.id == rec.id and rotated.prefix == new[:17]
    assert rotated.scopes == ("chat",) and rotated.monthly_budget_usd == 5
    assert await _unauthorized(ring, old) == INVALID
    assert (await ring.authenticate(new)).id == rec.id
    with pytest.raises(NotFound):
        await ring.rotate("0" * 16)


async def test_revoked_key_is_refused_on_the_next_request(ring: KeyRing) -> None:
    """delete() takes effect at once, even for a cached key; deleting twice is a 404."""
    rec, key = await ring.create("ci")
    await ring.authenticate(key)
    await ring.delete(rec.id)
    assert await _unauthorized(ring, key) == INVALID
    with pytest.raises(NotFound):
        await ring.delete(rec.id)


async def test_disabled_key_is_refused_until_enabled(ring: KeyRing) -> None:
    """Disabling a key refuses it on the next request; enabling it restores it."""
    rec, key = await ring.create("ci")
    await ring.authenticate(key)
    assert (await ring.update(rec.id, {"enabled": False})).enabled is False
    assert await _unauthorized(ring, key) == INVALID
    await ring.update(rec.id, {"enabled": True})
    assert (await ring.authenticate(key)).enabled is True


async def test_update_validates_and_applies_fields(ring: KeyRing, clock: Clock) -> None:
    """update() maps expires_in and budgets to stored values and refuses bad input."""
    rec, key = await ring.create("ci", monthly_budget_usd=1.5, rpm=10)
    new = await ring.update(rec.id, {"expires_in": "30d", "monthly_budget_usd": None, "rpm": 5})
    assert new.expires_at == clock.now + 30 * 86400
    assert new.monthly_budget_usd is None and new.rpm == 5
    assert (await ring.authenticate(key)).rpm == 5  # the cache saw the change
    for bad in ({"name": " "}, {"scopes": ["x"]}, {"enabled": None}, {"digest": "x"}):
        with pytest.raises(BadRequest):
            await ring.update(rec.id, bad)
    with pytest.raises(NotFound):
        await ring.update("0" * 16, {"rpm": 1})
    with pytest.raises(BadRequest):
        await ring.create(" ")


async def test_last_use_is_flushed_in_the_background(
    ring: KeyRing, repo: CountingRepo, clock: Clock
) -> None:
    """touch() keeps last use in memory (visible in list) and stop() writes it."""
    rec, _ = await ring.create("ci")
    await ring.start()
    ring.touch(rec)
    assert (await repo.get(rec.id)).last_used_at is None  # type: ignore[union-attr]
    assert (await ring.list())[0].last_used_at == clock.now
    await ring.stop()
    await ring.stop()  # idempotent
    assert (await repo.get(rec.id)).last_used_at == clock.now  # type: ignore[union-attr]


async def test_changes_reach_other_replicas_through_the_state(
    repo: CountingRepo, clock: Clock
) -> None:
    """A key revoked through one KeyRing is refused at once by another sharing the state."""
    state = MemoryState()
    here = KeyRing(repo, clock=clock, state=state)
    there = KeyRing(repo, clock=clock, state=state)
    await here.start()
    await there.start()
    try:
        rec, key = await here.create("ci")
        await there.authenticate(key)  # cached over there
        await here.delete(rec.id)
        await asyncio.sleep(0.01)  # let the subscriber run
        assert await _unauthorized(there, key) == INVALID
    finally:
        await here.stop()
        await there.stop()


async def test_store_failure_is_a_503_without_secrets(
    ring: KeyRing, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """When the store is down an uncached key gets a 503, and no log line holds the key."""
    key, _, _ = generate_key()
    await db.close()
    with caplog.at_level(logging.DEBUG), pytest.raises(ServiceUnavailable) as info:
        await ring.authenticate(key)
    assert key not in info.value.message
    assert all(key not in r.getMessage() for r in caplog.records)


async def test_records_never_show_the_key(ring: KeyRing) -> None:
    """A record's repr (what a log line would show) holds neither the key nor its digest."""
    rec, key = await ring.create("ci")
    assert rec.digest == digest_of(key)
    assert key not in repr(rec) and rec.digest not in repr(rec) and rec.prefix in repr(rec)
