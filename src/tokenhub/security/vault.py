"""The vault: provider credentials and other secrets, encrypted at rest.

Each value is sealed with AES-256-GCM under a fresh 96-bit nonce, its name bound in as
associated data (a ciphertext moved to another name fails to open). The key is derived
from the vault password with Argon2id (time 3, 64 MiB, parallelism 4, a random 16-byte
salt per vault). A verifier (the marker below sealed with the key) proves a password
right or wrong without opening a secret.

States::

    not initialized --init(password)--> unlocked <--unlock / lock, auto-lock--> locked

While unlocked the key and the decrypted values live in memory only, so ``get`` is a
dict lookup on the request path; ``lock`` drops them and zeroes the key buffer (Python
cannot promise to erase every copy of an immutable ``str``, so the vault keeps as few
references as it can). Nothing here logs or raises with a password or a value in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokenhub.errors import (
    Conflict,
    ServiceUnavailable,
    TokenHubError,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from tokenhub.state.base import SharedState
from tokenhub.store.vault import SealedSecret, VaultMeta, VaultRepo
from tokenhub.types import Clock, monotonic

log = logging.getLogger("tokenhub.vault")

NONCE_BYTES = 12
KEY_BYTES = 32
SALT_BYTES = 16
MIN_PASSWORD_CHARS = 8
MAX_NAME_CHARS = 300
MARKER = b"tokenhub-vault-verifier-v1"
_VERIFIER_AAD = b"tokenhub:verifier"

VaultListener = Callable[[str, dict[str, Any]], None]
"""Told of ``vault.init``, ``vault.unlock``, ``vault.lock``, ``vault.auto-lock``,
``vault.rotate`` and ``vault.tampered`` with a small dict that never holds a secret."""


class VaultError(TokenHubError):
    """Base of every vault failure; each subclass also carries an HTTP status."""

    default_message = "vault error"

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        super().__init__(message or self.default_message, **kw)


class VaultNotInitialized(VaultError, Conflict):
    default_message = "vault not initialized"
    code = "vault_not_initialized"


class VaultAlreadyInitialized(VaultError, Conflict):
    default_message = "vault already initialized"
    code = "vault_already_initialized"


class VaultDisabled(VaultError, Conflict):
    default_message = "vault disabled (TOKENHUB_VAULT_ENABLED=false)"
    code = "vault_disabled"


class VaultLocked(VaultError, ServiceUnavailable):
    default_message = "vault locked"
    code = "vault_locked"


class WrongPassword(VaultError, Unauthorized):
    # Deliberately no detail: the caller learns only that it did not work.
    default_message = "unauthorized"


class WeakPassword(VaultError, Unprocessable):
    default_message = f"password: must be at least {MIN_PASSWORD_CHARS} characters"


class TamperedSecret(VaultError, Conflict):
    """A ciphertext failed authentication: changed, truncated or moved to another name."""

    default_message = "a secret failed its integrity check"
    code = "vault_integrity"


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters (memory in KiB). The defaults are the specified ones;
    tests pass lighter ones. They are stored with the vault, so unlock uses whatever
    the vault was sealed with."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> KdfParams:
        return cls(int(d["time_cost"]), int(d["memory_kib"]), int(d["parallelism"]))


def derive_key(password: str, salt: bytes, kdf: KdfParams) -> bytes:
    """The 256-bit AES key for ``password`` (Argon2id; slow on purpose, run in a thread)."""
    return hash_secret_raw(
        password.encode(),
        salt,
        time_cost=kdf.time_cost,
        memory_cost=kdf.memory_kib,
        parallelism=kdf.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


def seal(aead: AESGCM, name: str, value: bytes) -> SealedSecret:
    """Encrypt ``value`` for ``name`` under a fresh random nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return SealedSecret(name, nonce, aead.encrypt(nonce, value, _aad(name)))


def unseal(aead: AESGCM, secret: SealedSecret) -> bytes:
    """Decrypt ``secret``; ``TamperedSecret`` when it fails authentication."""
    try:
        return aead.decrypt(secret.nonce, secret.ciphertext, _aad(secret.name))
    except InvalidTag:
        raise TamperedSecret() from None


def _aad(name: str) -> bytes:
    return b"tokenhub:secret:" + name.encode()


def _new_meta(key: bytes, salt: bytes, kdf: KdfParams) -> VaultMeta:
    nonce = os.urandom(NONCE_BYTES)
    verifier = AESGCM(key).encrypt(nonce, MARKER, _VERIFIER_AAD)
    return VaultMeta(salt=salt, kdf=kdf.to_dict(), verifier_nonce=nonce, verifier=verifier)


def _verifies(key: bytes, meta: VaultMeta) -> bool:
    try:
        plain = AESGCM(key).decrypt(meta.verifier_nonce, meta.verifier, _VERIFIER_AAD)
    except InvalidTag:
        return False
    return plain == MARKER


def _check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise WeakPassword()


class Vault:
    """Encrypted secrets with an in-memory cache while unlocked.

    ``clock`` is monotonic seconds for the auto-lock timer; ``auto_lock_s`` is how long
    the vault stays unlocked without a credential being used; ``kdf`` is used when the
    vault is initialized or rotated; ``tick_s`` paces the background auto-lock check.
    Mutations are serialized by one lock; ``get`` never waits.
    """

    def __init__(
        self,
        repo: VaultRepo,
        *,
        clock: Clock = monotonic,
        auto_lock_s: float = 1800.0,
        kdf: KdfParams | None = None,
        tick_s: float = 5.0,
        on_event: VaultListener | None = None,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self.auto_lock_s = auto_lock_s
        self._kdf = kdf or KdfParams()
        self._tick_s = tick_s
        self.on_event = on_event
        self._meta: VaultMeta | None = None
        self._key: bytearray | None = None
        self._aead: AESGCM | None = None
        self._cache: dict[str, str] = {}
        self._names: set[str] = set()
        self._last_use = 0.0
        self._mutex = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- state ----------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self._meta is not None

    @property
    def locked(self) -> bool:
        """True whenever secrets cannot be read (also before initialization)."""
        return self._aead is None

    async def load(self) -> None:
        """Read the vault's metadata and secret names at start-up (stays locked)."""
        self._meta = await self._repo.get_meta()
        self._names = set(await self._repo.names())

    async def init(self, password: str) -> None:
        """Create the vault with ``password`` and leave it unlocked."""
        _check_strength(password)
        async with self._mutex:
            if self._meta is not None:
                raise VaultAlreadyInitialized()
            salt = os.urandom(SALT_BYTES)
            key = await asyncio.to_thread(derive_key, password, salt, self._kdf)
            meta = _new_meta(key, salt, self._kdf)
            if not await self._repo.create_meta(meta):
                await self.load()  # another replica got there first
                raise VaultAlreadyInitialized()
            self._meta = meta
            self._names = set(await self._repo.names())
            self._open(key, {})
        log.info("vault initialized")
        self._emit("vault.init", {})

    async def unlock(self, password: str) -> None:
        """Derive the key, check it against the verifier, decrypt every secret."""
        async with self._mutex:
            # Re-read: another replica may have rotated the password.
            meta = await self._repo.get_meta()
            if meta is None:
                raise VaultNotInitialized()
            key = await asyncio.to_thread(derive_key, password, meta.salt, _kdf_of(meta))
            if not _verifies(key, meta):
                raise WrongPassword()
            sealed = await self._repo.all_secrets()
            self._meta = meta
            self._names = {s.name for s in sealed}
            self._open(key, self._decrypt_all(AESGCM(key), sealed))
        log.info("vault unlocked")
        self._emit("vault.unlock", {})

    async def open_headless(self, password: str) -> None:
        """Start-up with ``TOKENHUB_VAULT_PASSWORD``: initialize if new, else unlock."""
        if self.initialized:
            await self.unlock(password)
        else:
            await self.init(password)

    def lock(self, reason: str = "manual") -> bool:
        """Drop the key and every decrypted value; False when already locked."""
        if self._aead is None:
            return False
        self._wipe()
        log.info("vault locked (%s)", reason)
        event = "vault.auto-lock" if reason == "auto" else "vault.lock"
        self._emit(event, {"reason": reason})
        return True

    async def rotate(self, old_password: str, new_password: str) -> int:
        """Re-encrypt every secret under ``new_password`` in one transaction.

        A failure anywhere leaves the stored vault and this object as they were, so
        the old password keeps working. The lock state is kept. Returns the number of
        secrets re-encrypted.
        """
        _check_strength(new_password)
        async with self._mutex:
            meta = await self._repo.get_meta()
            if meta is None:
                raise VaultNotInitialized()
            old_key = await asyncio.to_thread(derive_key, old_password, meta.salt, _kdf_of(meta))
            if not _verifies(old_key, meta):
                raise WrongPassword()
            salt = os.urandom(SALT_BYTES)
            new_key = await asyncio.to_thread(derive_key, new_password, salt, self._kdf)
            new_meta = _new_meta(new_key, salt, self._kdf)
            old_aead, new_aead = AESGCM(old_key), AESGCM(new_key)

            def reseal(s: SealedSecret) -> SealedSecret:
                return seal(new_aead, s.name, unseal(old_aead, s))

            count = await self._repo.rotate(new_meta, reseal)
            self._meta = new_meta
            if self._aead is not None:
                self._open(new_key, self._cache)
        log.info("vault password rotated (%d secrets re-encrypted)", count)
        self._emit("vault.rotate", {"secrets": count})
        return count

    # -- secrets --------------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """The decrypted value, or None when absent or locked. Counts as a use for the
        auto-lock timer. Synchronous and O(1): it runs on the request path."""
        if self._aead is None:
            return None
        self._last_use = self._clock()
        return self._cache.get(name)

    def has(self, name: str) -> bool:
        """Whether a secret of that name is stored (known while locked too)."""
        return name in self._names

    async def put(self, name: str, value: str) -> None:
        """Seal and store ``value``; ``VaultLocked`` while locked."""
        if not name or len(name) > MAX_NAME_CHARS:
            raise Unprocessable(f"name: must be 1 to {MAX_NAME_CHARS} characters")
        async with self._mutex:
            aead = self._require_open()
            await self._repo.put_secret(seal(aead, name, value.encode()))
            self._cache[name] = value
            self._names.add(name)
            self._last_use = self._clock()

    async def delete(self, name: str) -> bool:
        """Remove a secret (allowed while locked: it needs no key). False if absent."""
        async with self._mutex:
            removed = await self._repo.delete_secret(name)
            self._cache.pop(name, None)
            self._names.discard(name)
        return removed

    async def names(self) -> list[str]:
        """Every stored secret's name, sorted; never a value."""
        self._names = set(await self._repo.names())
        return sorted(self._names)

    async def updated_at(self, name: str) -> float | None:
        """When the secret was last written (epoch seconds), or None if absent."""
        sealed = await self._repo.get_secret(name)
        return None if sealed is None else sealed.updated_at

    # -- auto-lock ------------------------------------------------------------------

    def check_auto_lock(self) -> bool:
        """Lock when no credential was used for ``auto_lock_s``; True if it locked."""
        if self._aead is None or self._clock() - self._last_use < self.auto_lock_s:
            return False
        return self.lock("auto")

    async def start(self) -> None:
        """Start the background auto-lock check."""
        if self._task is None:
            self._task = asyncio.create_task(self._tick(), name="vault-auto-lock")

    async def stop(self) -> None:
        """Stop the background check and drop the key (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wipe()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.check_auto_lock()

    # -- internals ------------------------------------------------------------------

    def _open(self, key: bytes, cache: dict[str, str]) -> None:
        old = self._key
        self._key = bytearray(key)
        self._aead = AESGCM(bytes(self._key))
        self._cache = dict(cache)
        self._last_use = self._clock()
        if old is not None:
            old[:] = bytes(len(old))

    def _wipe(self) -> None:
        if self._key is not None:
            self._key[:] = bytes(len(self._key))
        self._key = None
        self._aead = None
        self._cache.clear()

    def _require_open(self) -> AESGCM:
        if self._meta is None:
            raise VaultNotInitialized()
        if self._aead is None:
            raise VaultLocked()
        return self._aead

    def _decrypt_all(self, aead: AESGCM, sealed: list[SealedSecret]) -> dict[str, str]:
        cache: dict[str, str] = {}
        for s in sealed:
            try:
                cache[s.name] = unseal(aead, s).decode()
            except TamperedSecret:
                # The vault still opens (the verifier passed); the bad entry reads as
                # absent and is reported by name, which is not a secret.
                log.warning("vault secret %r failed its integrity check", s.name)
                self._emit("vault.tampered", {"name": s.name})
        return cache

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event, data)
        except Exception:
            log.exception("vault event listener failed on %s", event)


def _kdf_of(meta: VaultMeta) -> KdfParams:
    return KdfParams.from_dict(meta.kdf)


# -- the credential seam ------------------------------------------------------------


def provider_key_name(provider_id: str) -> str:
    """The vault name of a provider's API key."""
    return f"provider:{provider_id}:api_key"


class Credentials(Protocol):
    """Provider API keys as the control plane and the adapters see them."""

    def lookup(self, provider_id: str) -> str | None: ...

    async def put(self, provider_id: str, key: str) -> None: ...

    async def drop(self, provider_id: str) -> None: ...

    def has(self, provider_id: str) -> bool: ...

    def needs_unlock(self, provider_id: str) -> bool: ...

    async def adopt(self) -> int: ...


class VaultCredentials:
    """Provider keys kept in the vault as ``provider:{id}:api_key``.

    ``lookup`` is the adapters' ``CredentialLookup``: a dict read, None while locked.
    Before the vault is initialized keys are held in memory (today's behaviour, so a
    fresh install works without a password); ``adopt`` moves them into the vault once
    it is initialized. Once initialized, ``put`` while locked raises ``VaultLocked``.
    """

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._pending: dict[str, str] = {}

    def lookup(self, provider_id: str) -> str | None:
        if not self._vault.initialized:
            return self._pending.get(provider_id)
        return self._vault.get(provider_key_name(provider_id))

    async def put(self, provider_id: str, key: str) -> None:
        if not self._vault.initialized:
            self._pending[provider_id] = key
            return
        await self._vault.put(provider_key_name(provider_id), key)

    async def drop(self, provider_id: str) -> None:
        self._pending.pop(provider_id, None)
        if self._vault.initialized:
            await self._vault.delete(provider_key_name(provider_id))

    def has(self, provider_id: str) -> bool:
        return provider_id in self._pending or self._vault.has(provider_key_name(provider_id))

    def needs_unlock(self, provider_id: str) -> bool:
        """A key is stored for this provider but the vault is locked: skip it, saying so."""
        return self._vault.locked and self._vault.has(provider_key_name(provider_id))

    async def adopt(self) -> int:
        """Move keys held before initialization into the (unlocked) vault."""
        if not self._vault.initialized or self._vault.locked:
            return 0
        moved = 0
        for provider_id, key in list(self._pending.items()):
            await self._vault.put(provider_key_name(provider_id), key)
            del self._pending[provider_id]
            moved += 1
        return moved


class MemoryCredentials:
    """Provider keys in memory only: ``TOKENHUB_VAULT_ENABLED=false`` (keys come from
    the environment or the credentials file and never reach the store)."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    def lookup(self, provider_id: str) -> str | None:
        return self._keys.get(provider_id)

    async def put(self, provider_id: str, key: str) -> None:
        self._keys[provider_id] = key

    async def drop(self, provider_id: str) -> None:
        self._keys.pop(provider_id, None)

    def has(self, provider_id: str) -> bool:
        return provider_id in self._keys

    def needs_unlock(self, provider_id: str) -> bool:
        return False

    async def adopt(self) -> int:
        return 0


# -- brute-force slow-down ------------------------------------------------------------


class UnlockThrottle:
    """Exponential back-off per client after wrong vault passwords.

    After the n-th consecutive failure a client waits ``base_s * 2**(n-1)`` seconds
    (capped at ``cap_s``) before its next attempt counts; attempts inside that window are
    refused with 429 and Retry-After, even with the right password. A success resets
    the client. State lives in ``SharedState`` so replicas share it; ``clock`` is wall
    time (the deadline is compared across replicas). Attempts are serialized in this
    process so parallel guesses cannot slip in before a failure is counted.
    """

    def __init__(
        self,
        state: SharedState,
        *,
        clock: Clock = time.time,
        base_s: float = 1.0,
        cap_s: float = 300.0,
        memory_s: float = 86400.0,
    ) -> None:
        self._state = state
        self._clock = clock
        self.base_s = base_s
        self.cap_s = cap_s
        self._memory_s = memory_s
        self._serial = asyncio.Lock()

    async def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0.0 when it may now)."""
        raw = await self._state.get(_block_key(client))
        if raw is None:
            return 0.0
        return max(0.0, float(raw) - self._clock())

    async def failure(self, client: str) -> float:
        """Count a failure; returns the back-off now in force."""
        n = await self._state.incr(_fail_key(client), 1, ttl_s=self._memory_s)
        delay = min(self.cap_s, self.base_s * 2.0 ** min(n - 1, 32))
        deadline = self._clock() + delay
        await self._state.set(_block_key(client), repr(deadline).encode(), ttl_s=delay)
        return delay

    async def success(self, client: str) -> None:
        await self._state.delete(_fail_key(client))
        await self._state.delete(_block_key(client))

    @contextlib.asynccontextmanager
    async def attempt(self, client: str) -> AsyncIterator[None]:
        """Guard one password attempt: 429 while backing off, a ``WrongPassword``
        inside counts as a failure, a clean exit as a success."""
        async with self._serial:
            wait = await self.retry_after(client)
            if wait > 0:
                raise TooManyRequests("too many failed attempts; retry later", retry_after=wait)
            try:
                yield
            except WrongPassword:
                await self.failure(client)
                raise
            await self.success(client)


def _fail_key(client: str) -> str:
    return f"vault:unlock-failures:{client}"


def _block_key(client: str) -> str:
    return f"vault:unlock-blocked:{client}"
