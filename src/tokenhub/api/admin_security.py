"""Admin API for the security layer: vault lifecycle and secrets, admin token, audit.

Routes only translate HTTP to calls on the components in ``SecurityBundle``; the rules
live in ``tokenhub.security``. No response ever carries a password or a secret value;
the one exception is the new admin token, answered once by its rotation. Every mutation
audits itself through the ``audited`` dependency.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenhub.errors import NotFound, Unprocessable
from tokenhub.security.admin_token import AdminToken
from tokenhub.security.audit import AuditLog, audit_on
from tokenhub.security.vault import (
    Credentials,
    UnlockThrottle,
    Vault,
    VaultDisabled,
    VaultNotInitialized,
)

SECRET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$"
PROVIDER_PREFIX = "provider:"
MAX_PASSWORD = 1024
MAX_SECRET = 64 * 1024

SecretKey = Annotated[str, PathParam(pattern=SECRET_NAME_PATTERN)]


@dataclass
class SecurityBundle:
    """What the security routes need. ``vault`` is None when the vault is disabled;
    ``credentials`` (optional) adopts provider keys held before the vault existed."""

    vault: Vault | None
    admin_token: AdminToken
    audit: AuditLog
    throttle: UnlockThrottle
    credentials: Credentials | None = None


class AdminTokenIn(BaseModel):
    """Optional body of the rotation: the operator's own token (else a random one)."""

    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(None, min_length=16, max_length=1024, pattern=r"^[\x21-\x7e]+$")


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(None, max_length=MAX_PASSWORD)
    admin_password: str | None = Field(None, max_length=MAX_PASSWORD)

    @model_validator(mode="after")
    def _one(self) -> "PasswordIn":
        if self.password is None and self.admin_password is None:
            raise ValueError("password is required")
        return self

    @property
    def value(self) -> str:
        return self.password if self.password is not None else self.admin_password or ""


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_password: str = Field(max_length=MAX_PASSWORD)
    new_password: str = Field(max_length=MAX_PASSWORD)


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=MAX_SECRET)


def vault_info(vault: Vault | None) -> dict[str, Any]:
    return {
        "vault_enabled": vault is not None,
        "vault_initialized": vault is not None and vault.initialized,
        "vault_locked": vault is not None and vault.locked,
    }


def _vault(b: SecurityBundle) -> Vault:
    if b.vault is None:
        raise VaultDisabled()
    return b.vault


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _other_secret(key: str) -> str:
    if key.startswith(PROVIDER_PREFIX):
        raise Unprocessable("key: provider keys are managed through /admin/v1/providers")
    return key


def security_router(get: Callable[[], SecurityBundle]) -> APIRouter:
    """The /admin/v1 security routes (authentication is attached by the caller)."""
    router = APIRouter(prefix="/admin/v1", tags=["security"])
    B = Annotated[SecurityBundle, Depends(get)]

    def audit(action: str, param: str | None = None) -> list[Any]:
        return [audit_on(lambda: get().audit, action, param)]

    @router.get("/info")
    async def info(b: B) -> dict[str, Any]:
        return vault_info(b.vault)

    @router.post("/vault/init", dependencies=audit("vault.init"))
    async def init(body: PasswordIn, b: B) -> dict[str, Any]:
        vault = _vault(b)
        await vault.init(body.value)
        if b.credentials is not None:
            await b.credentials.adopt()
        return vault_info(vault)

    @router.post("/vault/unlock", dependencies=audit("vault.unlock"))
    async def unlock(body: PasswordIn, request: Request, b: B) -> dict[str, Any]:
        vault = _vault(b)
        async with b.throttle.attempt(_client(request)):
            await vault.unlock(body.value)
        return vault_info(vault)

    @router.post("/vault/lock", dependencies=audit("vault.lock"))
    async def lock(b: B) -> dict[str, Any]:
        vault = _vault(b)
        if not vault.initialized:
            raise VaultNotInitialized()
        vault.lock("manual")
        return vault_info(vault)

    @router.post("/vault/rotate", dependencies=audit("vault.rotate"))
    async def rotate(body: RotateIn, request: Request, b: B) -> dict[str, Any]:
        vault = _vault(b)
        async with b.throttle.attempt(_client(request)):
            count = await vault.rotate(body.old_password, body.new_password)
        request.state.audit_detail = {"secrets": count}
        return {**vault_info(vault), "secrets_reencrypted": count}

    @router.get("/vault/secrets")
    async def list_secrets(b: B) -> dict[str, Any]:
        return {"secrets": await _vault(b).names()}

    @router.get("/vault/secrets/{key}")
    async def get_secret(key: SecretKey, b: B) -> dict[str, Any]:
        # Write-only by design: the value never leaves the vault through the API.
        updated = await _vault(b).updated_at(key)
        if updated is None:
            raise NotFound(f"secret {key!r} not found")
        return {"name": key, "updated_at": updated}

    @router.put("/vault/secrets/{key}", dependencies=audit("vault.secret.put", "key"))
    async def put_secret(key: SecretKey, body: SecretIn, b: B) -> dict[str, Any]:
        vault = _vault(b)
        await vault.put(_other_secret(key), body.value)
        return {"name": key, "updated_at": await vault.updated_at(key)}

    @router.delete(
        "/vault/secrets/{key}", status_code=204, dependencies=audit("vault.secret.delete", "key")
    )
    async def delete_secret(key: SecretKey, b: B) -> Response:
        if not await _vault(b).delete(_other_secret(key)):
            raise NotFound(f"secret {key!r} not found")
        return Response(status_code=204)

    @router.post("/admin-token/rotate", dependencies=audit("admin-token.rotate"))
    async def rotate_admin_token(b: B, body: AdminTokenIn | None = None) -> dict[str, Any]:
        token = await b.admin_token.rotate(body.token if body is not None else None)
        return {"admin_token": token, "note": "shown once; store it now"}

    @router.get("/audit")
    async def list_audit(
        b: B,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        action: Annotated[str | None, Query(max_length=100)] = None,
    ) -> dict[str, Any]:
        entries = await b.audit.list(limit, offset, action)
        return {
            "entries": [e.to_dict() for e in entries],
            "total": await b.audit.count(action),
            "limit": limit,
            "offset": offset,
        }

    return router
