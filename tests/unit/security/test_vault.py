"""Vault: encryption, lifecycle (init, unlock, lock, auto-lock, headless) on a real store."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.unit.security.vault_support import (
    PASSWORD,
    FakeClock,
    make_vault,
    migrated,
    raw_rows,
    sqlite_url,
)
from tokenhub.security.vault import (
    KdfParams,
    TamperedSecret,
    Vault,
    VaultAlreadyInitialized,
    VaultLocked,
    VaultNotInitialized,
    WeakPassword,
    WrongPassword,
    derive_key,
    seal,
    unseal,
)
from tokenhub.store.db import Database
from tokenhub.store.vault import SealedSecret, VaultRepo, vault_secrets


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated(sqlite_url(tmp_path)) as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def vault(db: Database, clock: FakeClock) -> Vault:
    v = make_vault(db, clock)
    await v.load()
    await v.init(PASSWORD)
    return v


async def test_a_fresh_vault_is_uninitialized_and_locked(db: Database, clock: FakeClock) -> None:
    """Before init the vault reports not initialized, locked, and reads nothing."""
    v = make_vault(db, clock)
    await v.load()
    assert (v.initialized, v.locked) == (False, True)
    assert v.get("anything") is None
    with pytest.raises(VaultNotInitialized):
        await v.unlock(PASSWORD)


async def test_init_needs_a_password_of_eight_characters(db: Database, clock: FakeClock) -> None:
    """Passwords shorter than 8 characters are refused and nothing is written."""
    v = make_vault(db, clock)
    with pytest.raises(WeakPassword):
        await v.init("short7!")
    assert await raw_rows(db, "vault_meta") == []
    assert not v.initialized


async def test_init_leaves_the_vault_unlocked_and_round_trips(vault: Vault, db: Database) -> None:
    """After init a stored value reads back; the store holds only ciphertext."""
    assert (vault.initialized, vault.locked) == (True, False)
    await vault.put("github:token", "ghp_plaintext_value")
    assert vault.get("github:token") == "ghp_plaintext_value"
    (row,) = await raw_rows(db, "vault_secrets")
    assert b"ghp_plaintext_value" not in bytes(row["ciphertext"])  # type: ignore[arg-type]
    assert len(bytes(row["nonce"])) == 12  # type: ignore[arg-type]


async def test_init_twice_is_refused(vault: Vault) -> None:
    """A second init conflicts instead of replacing the vault."""
    with pytest.raises(VaultAlreadyInitialized):
        await vault.init("another password")


async def test_wrong_password_fails_and_stays_locked(db: Database, vault: Vault) -> None:
    """Unlocking with a wrong password raises WrongPassword and reveals nothing."""
    await vault.put("s", "value-1")
    vault.lock()
    with pytest.raises(WrongPassword) as info:
        await vault.unlock("not the password")
    assert info.value.status == 401 and "password" not in info.value.message
    assert vault.locked and vault.get("s") is None


async def test_lock_drops_values_and_unlock_restores_them(vault: Vault) -> None:
    """Locked: reads give None and writes raise VaultLocked; unlock brings values back."""
    await vault.put("a", "alpha-secret")
    assert vault.lock() is True
    assert vault.lock() is False
    assert vault.get("a") is None and vault.has("a")
    with pytest.raises(VaultLocked) as info:
        await vault.put("b", "beta")
    assert info.value.status == 503 and info.value.message == "vault locked"
    await vault.unlock(PASSWORD)
    assert vault.get("a") == "alpha-secret"


async def test_lock_zeroes_the_key_buffer(vault: Vault) -> None:
    """The derived key is held in one buffer that lock overwrites with zeros."""
    key = vault._key
    assert key is not None and any(key)
    vault.lock()
    assert key == bytearray(len(key))


async def test_a_restarted_vault_loads_locked_and_unlocks(
    db: Database, clock: FakeClock, vault: Vault
) -> None:
    """A new Vault over the same store starts initialized and locked, names known."""
    await vault.put("x", "x-value")
    again = make_vault(db, clock)
    await again.load()
    assert (again.initialized, again.locked, again.has("x")) == (True, True, True)
    await again.unlock(PASSWORD)
    assert again.get("x") == "x-value"


async def test_delete_works_while_locked(vault: Vault) -> None:
    """Deleting needs no key: it works locked, and reports whether the secret existed."""
    await vault.put("gone", "v")
    vault.lock()
    assert await vault.delete("gone") is True
    assert await vault.delete("gone") is False
    assert await vault.names() == []


async def test_names_list_never_values(vault: Vault) -> None:
    """names() returns the sorted names only."""
    await vault.put("b", "value-b")
    await vault.put("a", "value-a")
    assert await vault.names() == ["a", "b"]


def test_tampered_ciphertext_fails_to_open() -> None:
    """Flipping one ciphertext bit, or moving it to another name, fails authentication."""
    aead = AESGCM(os.urandom(32))
    sealed = seal(aead, "name", b"value")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(TamperedSecret):
        unseal(aead, SealedSecret("name", sealed.nonce, flipped))
    with pytest.raises(TamperedSecret):
        unseal(aead, SealedSecret("other", sealed.nonce, sealed.ciphertext))
    assert unseal(aead, sealed) == b"value"


async def test_a_tampered_row_reads_as_absent_after_unlock(db: Database, vault: Vault) -> None:
    """A changed ciphertext in the store is left out at unlock and reported by name."""
    await vault.put("good", "good-value")
    await vault.put("bad", "bad-value")
    vault.lock()
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.update(vault_secrets)
            .where(vault_secrets.c.name == "bad")
            .values(ciphertext=b"\x00" * 32)
        )
    events: list[tuple[str, dict[str, Any]]] = []
    vault.on_event = lambda e, d: events.append((e, d))
    await vault.unlock(PASSWORD)
    assert vault.get("good") == "good-value" and vault.get("bad") is None
    assert ("vault.tampered", {"name": "bad"}) in events


async def test_nonces_never_repeat(db: Database, vault: Vault) -> None:
    """Every seal draws a fresh nonce, even for the same name and value."""
    nonces: list[bytes] = []
    for i in range(50):
        await vault.put(f"n{i}", "same value")
    nonces += [bytes(r["nonce"]) for r in await raw_rows(db, "vault_secrets")]  # type: ignore[arg-type]
    (meta,) = await raw_rows(db, "vault_meta")
    nonces.append(bytes(meta["verifier_nonce"]))  # type: ignore[arg-type]
    aead = AESGCM(os.urandom(32))
    nonces += [seal(aead, "same", b"same").nonce for _ in range(2000)]
    assert len(nonces) == len(set(nonces)) == 2051
    assert all(len(n) == 12 for n in nonces)


async def test_auto_lock_after_idle_time(vault: Vault, clock: FakeClock) -> None:
    """Without credential use for auto_lock_s the vault locks; a use resets the timer."""
    events: list[str] = []
    vault.on_event = lambda e, _d: events.append(e)
    await vault.put("k", "v")
    clock.advance(1700)
    assert vault.get("k") == "v"  # a use: the 30 minutes start again
    clock.advance(1799)
    assert vault.check_auto_lock() is False
    clock.advance(1)
    assert vault.check_auto_lock() is True
    assert vault.locked and events == ["vault.auto-lock"]


async def test_the_background_task_auto_locks(db: Database, clock: FakeClock) -> None:
    """start() runs the check periodically; stop() ends it and is idempotent."""
    v = make_vault(db, clock, auto_lock_s=60.0, tick_s=0.01)
    await v.init(PASSWORD)
    await v.start()
    clock.advance(61)
    for _ in range(100):
        if v.locked:
            break
        await asyncio.sleep(0.01)
    assert v.locked
    await v.stop()
    await v.stop()


async def test_headless_start_initializes_then_unlocks(db: Database, clock: FakeClock) -> None:
    """open_headless inits a new vault, and unlocks an existing one at the next start."""
    first = make_vault(db, clock)
    await first.load()
    await first.open_headless(PASSWORD)
    await first.put("k", "v-headless")
    await first.stop()
    second = make_vault(db, clock)
    await second.load()
    await second.open_headless(PASSWORD)
    assert (second.locked, second.get("k")) == (False, "v-headless")
    third = make_vault(db, clock)
    await third.load()
    with pytest.raises(WrongPassword):
        await third.open_headless("wrong password!")


async def test_default_kdf_parameters_are_the_specified_ones(db: Database) -> None:
    """Defaults: Argon2id time 3, 64 MiB, parallelism 4, 16-byte salt, stored with the vault."""
    assert KdfParams() == KdfParams(time_cost=3, memory_kib=65536, parallelism=4)
    v = Vault(VaultRepo(db))
    await v.init(PASSWORD)
    meta = await VaultRepo(db).get_meta()
    assert meta is not None and meta.kdf == {"time_cost": 3, "memory_kib": 65536, "parallelism": 4}
    assert len(meta.salt) == 16
    key = derive_key(PASSWORD, meta.salt, KdfParams())
    assert len(key) == 32 and AESGCM(key).decrypt(
        meta.verifier_nonce, meta.verifier, b"tokenhub:verifier"
    )


async def test_no_password_or_value_reaches_the_log(
    vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    """Lifecycle logging names states and counts, never a password or a secret."""
    caplog.set_level(logging.DEBUG)
    await vault.put("k", "sk-very-secret-value")
    vault.lock()
    with pytest.raises(WrongPassword):
        await vault.unlock("a wrong guess 123")
    await vault.unlock(PASSWORD)
    assert caplog.records
    for needle in (PASSWORD, "sk-very-secret-value", "a wrong guess 123"):
        assert needle not in caplog.text
