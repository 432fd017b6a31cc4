"""The vault's rows: its metadata (salt, KDF parameters, verifier) and sealed secrets.

The store only ever sees ciphertext: ``vault_meta`` holds one row (id 1) with the salt,
the Argon2id parameters and a verifier (an AES-GCM encryption of a fixed marker that
proves a password right or wrong); ``vault_secrets`` holds one AES-GCM ciphertext per
secret name with its own nonce. Encryption happens in ``tokenhub.security.vault``; this
module never sees a key or a plaintext.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tokenhub.store.db import Database, upsert
from tokenhub.store.tables import JSONType, metadata

META_ID = 1

vault_meta = sa.Table(
    "vault_meta",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("salt", sa.LargeBinary, nullable=False),
    sa.Column("kdf", JSONType, nullable=False),
    sa.Column("verifier_nonce", sa.LargeBinary, nullable=False),
    sa.Column("verifier", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

vault_secrets = sa.Table(
    "vault_secrets",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class VaultMeta:
    """The vault's one metadata row. ``kdf`` holds the Argon2id parameters by name."""

    salt: bytes
    kdf: dict[str, int]
    verifier_nonce: bytes
    verifier: bytes


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """One encrypted secret as stored: never a plaintext."""

    name: str
    nonce: bytes
    ciphertext: bytes = field(repr=False)
    updated_at: float = 0.0


Reseal = Callable[[SealedSecret], SealedSecret]
"""Decrypt with the old key and encrypt with the new one (used by ``VaultRepo.rotate``)."""


class VaultRepo:
    """Vault metadata and sealed secrets; ``clock`` gives wall-clock epoch seconds."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def get_meta(self) -> VaultMeta | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(sa.select(vault_meta))).first()
        return None if row is None else _meta_from_row(row._mapping)

    async def create_meta(self, meta: VaultMeta) -> bool:
        """Insert the metadata row; False when the vault was already initialized
        (the fixed primary key makes two replicas racing to initialize end with one)."""
        now = self._clock()
        values = {**_meta_to_row(meta), "id": META_ID, "created_at": now, "updated_at": now}
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(sa.insert(vault_meta).values(values))
        except IntegrityError:
            return False
        return True

    async def put_secret(self, secret: SealedSecret) -> None:
        values = {
            "name": secret.name,
            "nonce": secret.nonce,
            "ciphertext": secret.ciphertext,
            "updated_at": self._clock(),
        }
        async with self._db.engine.begin() as conn:
            await conn.execute(upsert(self._db.dialect, vault_secrets, values))

    async def get_secret(self, name: str) -> SealedSecret | None:
        query = sa.select(vault_secrets).where(vault_secrets.c.name == name)
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _secret_from_row(row._mapping)

    async def all_secrets(self) -> list[SealedSecret]:
        """Every sealed secret, ordered by name."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(sa.select(vault_secrets).order_by(vault_secrets.c.name))
        return [_secret_from_row(r._mapping) for r in rows]

    async def names(self) -> list[str]:
        query = sa.select(vault_secrets.c.name).order_by(vault_secrets.c.name)
        async with self._db.engine.connect() as conn:
            return [r[0] for r in await conn.execute(query)]

    async def delete_secret(self, name: str) -> bool:
        """Delete one secret; False when it did not exist."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                sa.delete(vault_secrets).where(vault_secrets.c.name == name)
            )
        return result.rowcount > 0

    async def rotate(self, meta: VaultMeta, reseal: Reseal) -> int:
        """Re-encrypt every secret with ``reseal`` and replace the metadata, all in one
        transaction: any failure (in ``reseal`` or in the database) rolls everything back
        and the old password keeps working. Returns the number of secrets rewritten."""
        now = self._clock()
        async with self._db.engine.begin() as conn:
            rows = await conn.execute(sa.select(vault_secrets).order_by(vault_secrets.c.name))
            sealed = [_secret_from_row(r._mapping) for r in rows]
            for old in sealed:
                new = reseal(old)
                await conn.execute(
                    sa.update(vault_secrets)
                    .where(vault_secrets.c.name == old.name)
                    .values(nonce=new.nonce, ciphertext=new.ciphertext, updated_at=now)
                )
            await conn.execute(
                sa.update(vault_meta)
                .where(vault_meta.c.id == META_ID)
                .values(**_meta_to_row(meta), updated_at=now)
            )
        return len(sealed)


def _meta_to_row(meta: VaultMeta) -> dict[str, Any]:
    return {
        "salt": meta.salt,
        "kdf": dict(meta.kdf),
        "verifier_nonce": meta.verifier_nonce,
        "verifier": meta.verifier,
    }


def _meta_from_row(row: Any) -> VaultMeta:
    return VaultMeta(
        salt=bytes(row["salt"]),
        kdf={k: int(v) for k, v in row["kdf"].items()},
        verifier_nonce=bytes(row["verifier_nonce"]),
        verifier=bytes(row["verifier"]),
    )


def _secret_from_row(row: Any) -> SealedSecret:
    return SealedSecret(
        name=row["name"],
        nonce=bytes(row["nonce"]),
        ciphertext=bytes(row["ciphertext"]),
        updated_at=float(row["updated_at"]),
    )
