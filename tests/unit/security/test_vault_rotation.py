"""Vault password rotation: everything re-encrypted in one transaction, or nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from string import ascii_lowercase

import pytest
import sqlalchemy as sa

from tests.unit.security.vault_support import (
    NEW_PASSWORD,
    PASSWORD,
    FakeClock,
    asyncpg_url,
    make_vault,
    migrated,
    raw_rows,
    sqlite_url,
)
from tokenhub.security.vault import (
    TamperedSecret,
    Vault,
    WeakPassword,
    WrongPassword,
)
from tokenhub.store.db import Database
from tokenhub.store.vault import vault_secrets

NAMES = list(ascii_lowercase)  # the injected failure hits "m", half way through

SQLITE_TRIGGER = (
    "CREATE TRIGGER fail_rotation BEFORE UPDATE ON vault_secrets WHEN NEW.name = 'm' "
    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
)
PG_TRIGGER = (
    "CREATE FUNCTION fail_rotation() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER fail_rotation BEFORE UPDATE ON vault_secrets FOR EACH ROW "
    "WHEN (NEW.name = 'm') EXECUTE FUNCTION fail_rotation()",
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store of each backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return asyncpg_url(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    async with migrated(db_url) as database:
        yield database


@pytest.fixture
async def vault(db: Database) -> Vault:
    v = make_vault(db, FakeClock())
    await v.init(PASSWORD)
    for name in NAMES:
        await v.put(name, f"value-of-{name}")
    return v


async def _fail_updates_of_m(db: Database) -> None:
    """A real database failure in the middle of the rotation's updates."""
    statements = (SQLITE_TRIGGER,) if db.dialect == "sqlite" else PG_TRIGGER
    async with db.engine.begin() as conn:
        for stmt in statements:
            await conn.execute(sa.text(stmt))


async def test_rotation_re_encrypts_everything(db: Database, vault: Vault) -> None:
    """Every nonce, ciphertext, the salt and the verifier change; the new password opens all."""
    before = {r["name"]: r for r in await raw_rows(db, "vault_secrets")}
    (meta_before,) = await raw_rows(db, "vault_meta")
    assert await vault.rotate(PASSWORD, NEW_PASSWORD) == len(NAMES)
    after = {r["name"]: r for r in await raw_rows(db, "vault_secrets")}
    (meta_after,) = await raw_rows(db, "vault_meta")
    assert after.keys() == before.keys()
    for name in NAMES:
        assert bytes(after[name]["nonce"]) != bytes(before[name]["nonce"])  # type: ignore[arg-type]
        assert bytes(after[name]["ciphertext"]) != bytes(before[name]["ciphertext"])  # type: ignore[arg-type]
    for col in ("salt", "verifier", "verifier_nonce"):
        assert bytes(meta_after[col]) != bytes(meta_before[col])  # type: ignore[arg-type]
    fresh = make_vault(db, FakeClock())
    await fresh.load()
    with pytest.raises(WrongPassword):
        await fresh.unlock(PASSWORD)
    await fresh.unlock(NEW_PASSWORD)
    assert [fresh.get(n) for n in NAMES] == [f"value-of-{n}" for n in NAMES]


async def test_rotation_keeps_the_running_vault_usable(vault: Vault) -> None:
    """An unlocked vault stays unlocked under the new key: reads and writes go on."""
    await vault.rotate(PASSWORD, NEW_PASSWORD)
    assert not vault.locked and vault.get("a") == "value-of-a"
    await vault.put("after", "written-after-rotation")
    vault.lock()
    await vault.unlock(NEW_PASSWORD)
    assert vault.get("after") == "written-after-rotation"


async def test_a_failure_mid_rotation_leaves_the_old_state(db: Database, vault: Vault) -> None:
    """A database error half way rolls back: rows, salt and the old password are intact."""
    before = await raw_rows(db, "vault_secrets")
    meta_before = await raw_rows(db, "vault_meta")
    await _fail_updates_of_m(db)
    with pytest.raises(sa.exc.DBAPIError):
        await vault.rotate(PASSWORD, NEW_PASSWORD)
    assert await raw_rows(db, "vault_secrets") == before
    assert await raw_rows(db, "vault_meta") == meta_before
    assert vault.get("z") == "value-of-z"  # the running vault kept its key
    await vault.put("later", "still-old-key")
    vault.lock()
    with pytest.raises(WrongPassword):
        await vault.unlock(NEW_PASSWORD)
    await vault.unlock(PASSWORD)
    assert vault.get("a") == "value-of-a" and vault.get("later") == "still-old-key"


async def test_rotation_with_a_wrong_old_password_changes_nothing(
    db: Database, vault: Vault
) -> None:
    """The old password is checked first: a wrong one raises and writes nothing."""
    meta_before = await raw_rows(db, "vault_meta")
    with pytest.raises(WrongPassword):
        await vault.rotate("wrong old password", NEW_PASSWORD)
    assert await raw_rows(db, "vault_meta") == meta_before


async def test_rotation_to_a_weak_password_is_refused(vault: Vault) -> None:
    """The new password must meet the same 8-character minimum as init."""
    with pytest.raises(WeakPassword):
        await vault.rotate(PASSWORD, "short")


async def test_rotation_keeps_a_locked_vault_locked(db: Database, vault: Vault) -> None:
    """Rotating while locked re-encrypts in the store but does not unlock."""
    vault.lock()
    assert await vault.rotate(PASSWORD, NEW_PASSWORD) == len(NAMES)
    assert vault.locked
    await vault.unlock(NEW_PASSWORD)
    assert vault.get("q") == "value-of-q"


async def test_a_tampered_secret_aborts_rotation(db: Database, vault: Vault) -> None:
    """A secret that fails authentication stops the rotation before anything changes."""
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.update(vault_secrets).where(vault_secrets.c.name == "k").values(nonce=b"\x01" * 12)
        )
    meta_before = await raw_rows(db, "vault_meta")
    with pytest.raises(TamperedSecret):
        await vault.rotate(PASSWORD, NEW_PASSWORD)
    assert await raw_rows(db, "vault_meta") == meta_before
