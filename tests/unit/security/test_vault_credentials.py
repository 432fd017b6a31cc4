"""The credential seam over the vault, its memory-only variant, and the unlock throttle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.security.vault_support import PASSWORD, FakeClock, make_vault, migrated, sqlite_url
from tokenhub.errors import TooManyRequests
from tokenhub.security.vault import (
    MemoryCredentials,
    UnlockThrottle,
    Vault,
    VaultCredentials,
    VaultLocked,
    WrongPassword,
    provider_key_name,
)
from tokenhub.state.memory import MemoryState
from tokenhub.store.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated(sqlite_url(tmp_path)) as database:
        yield database


@pytest.fixture
async def vault(db: Database) -> Vault:
    v = make_vault(db, FakeClock())
    await v.load()
    return v


async def test_provider_keys_live_in_the_vault_under_their_name(vault: Vault) -> None:
    """put stores provider:{id}:api_key in the vault; lookup reads it back."""
    await vault.init(PASSWORD)
    creds = VaultCredentials(vault)
    await creds.put("openai", "sk-openai-key")
    assert provider_key_name("openai") == "provider:openai:api_key"
    assert vault.get("provider:openai:api_key") == "sk-openai-key"
    assert creds.lookup("openai") == "sk-openai-key" and creds.has("openai")
    assert creds.lookup("other") is None and not creds.has("other")


async def test_keys_given_before_init_are_served_then_adopted(vault: Vault) -> None:
    """Before init keys are held in memory and served; adopt moves them into the vault."""
    creds = VaultCredentials(vault)
    await creds.put("p1", "key-before-init")
    assert creds.lookup("p1") == "key-before-init" and creds.has("p1")
    await vault.init(PASSWORD)
    assert await creds.adopt() == 1
    assert await vault.names() == ["provider:p1:api_key"]
    vault.lock()
    await vault.unlock(PASSWORD)
    assert creds.lookup("p1") == "key-before-init"


async def test_a_locked_vault_hides_keys_and_says_why(vault: Vault) -> None:
    """Locked: lookup is None, has/needs_unlock are True, put raises, drop still works."""
    await vault.init(PASSWORD)
    creds = VaultCredentials(vault)
    await creds.put("p", "sk-locked")
    vault.lock()
    assert creds.lookup("p") is None
    assert creds.has("p") and creds.needs_unlock("p")
    assert not creds.needs_unlock("keyless")
    with pytest.raises(VaultLocked):
        await creds.put("q", "sk-q")
    await creds.drop("p")
    assert not creds.has("p") and not creds.needs_unlock("p")


async def test_memory_credentials_never_touch_the_store(db: Database) -> None:
    """The vault-disabled variant keeps keys in memory only and never needs an unlock."""
    creds = MemoryCredentials()
    await creds.put("p", "sk-mem")
    assert (creds.lookup("p"), creds.has("p"), creds.needs_unlock("p")) == ("sk-mem", True, False)
    await creds.drop("p")
    assert creds.lookup("p") is None and await creds.adopt() == 0


def _throttle(clock: FakeClock) -> UnlockThrottle:
    return UnlockThrottle(MemoryState(clock=clock), clock=clock)


async def _fail(throttle: UnlockThrottle, client: str) -> None:
    with pytest.raises(WrongPassword):
        async with throttle.attempt(client):
            raise WrongPassword()


async def test_failures_back_off_exponentially() -> None:
    """After failures 1, 2, 3 a client waits 1 s, 2 s, 4 s; attempts inside get 429."""
    clock = FakeClock()
    throttle = _throttle(clock)
    for expected in (1.0, 2.0, 4.0):
        await _fail(throttle, "10.0.0.1")
        assert await throttle.retry_after("10.0.0.1") == expected
        with pytest.raises(TooManyRequests) as info:
            async with throttle.attempt("10.0.0.1"):
                pytest.fail("a blocked attempt must not run")
        assert info.value.headers["Retry-After"] == str(round(expected))
        clock.advance(expected)
    assert await throttle.retry_after("10.0.0.1") == 0.0


async def test_back_off_is_capped_and_per_client() -> None:
    """The wait never exceeds 5 minutes, and another client is not slowed down."""
    clock = FakeClock()
    throttle = _throttle(clock)
    for _ in range(20):
        await _fail(throttle, "attacker")
        clock.advance(await throttle.retry_after("attacker"))
    await _fail(throttle, "attacker")
    assert await throttle.retry_after("attacker") == 300.0
    assert await throttle.retry_after("operator") == 0.0


async def test_a_success_resets_the_client() -> None:
    """A right password after the wait clears the count: the next failure waits 1 s again."""
    clock = FakeClock()
    throttle = _throttle(clock)
    await _fail(throttle, "c")
    await _fail_after_wait(throttle, clock, "c")
    clock.advance(await throttle.retry_after("c"))
    async with throttle.attempt("c"):
        pass
    await _fail(throttle, "c")
    assert await throttle.retry_after("c") == 1.0


async def _fail_after_wait(throttle: UnlockThrottle, clock: FakeClock, client: str) -> None:
    clock.advance(await throttle.retry_after(client))
    await _fail(throttle, client)
