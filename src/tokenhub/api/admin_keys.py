"""Admin routes for client API keys (`/admin/v1/apikeys`).

The key itself appears in exactly two answers: creation and rotation. Digests never
appear anywhere. The list shows each key's spend so far this UTC month.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tokenhub.security.apikeys import KeyRecord, KeyRing
from tokenhub.security.audit import AuditLog, audit_on
from tokenhub.security.budget import Budgets


@dataclass
class KeysBundle:
    """What the key routes need, handed over by the app's lifespan."""

    keyring: KeyRing
    budgets: Budgets


def _scopes(value: Any) -> Any:
    # Form-like clients send the list JSON-encoded ('["chat"]') or comma-separated.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                raise ValueError("not a JSON list of scopes") from None
        return [s.strip() for s in text.split(",") if s.strip()]
    return value


Budget = Annotated[float | None, Field(ge=0, le=1e9)]
Rate = Annotated[int | None, Field(ge=1, le=100_000_000)]
Duration = Annotated[str | None, Field(min_length=2, max_length=20)]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=list, max_length=10)
    expires_in: Duration = None
    rotation_days: Rate = None
    monthly_budget_usd: Budget = None
    rpm: Rate = None
    tpm: Rate = None

    _scopes = field_validator("scopes", mode="before")(_scopes)


class KeyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    scopes: list[str] | None = Field(None, max_length=10)
    enabled: bool | None = None
    expires_in: Duration = None
    rotation_days: Rate = None
    monthly_budget_usd: Budget = None
    rpm: Rate = None
    tpm: Rate = None

    _scopes = field_validator("scopes", mode="before")(_scopes)


def key_view(rec: KeyRecord, spend_usd: float, now: float) -> dict[str, Any]:
    """A key as the API shows it: never the key, never its digest."""
    remaining = None
    if rec.budget_micro is not None:
        remaining = max(0.0, (rec.monthly_budget_usd or 0.0) - spend_usd)
    rotation_due = None
    if rec.rotation_days is not None:
        rotation_due = (rec.rotated_at or rec.created_at) + rec.rotation_days * 86400.0
    return {
        "id": rec.id,
        "prefix": rec.prefix,
        "name": rec.name,
        "scopes": list(rec.scopes),
        "enabled": rec.enabled,
        "expired": rec.expired(now),
        "created_at": rec.created_at,
        "last_used_at": rec.last_used_at,
        "expires_at": rec.expires_at,
        "rotation_days": rec.rotation_days,
        "rotated_at": rec.rotated_at,
        "rotation_due_at": rotation_due,
        "monthly_budget_usd": rec.monthly_budget_usd,
        "rpm": rec.rpm,
        "tpm": rec.tpm,
        "month_to_date_spend_usd": spend_usd,
        "remaining_budget_usd": remaining,
    }


def keys_router(
    get: Callable[[], KeysBundle], audit: Callable[[], AuditLog] | None = None
) -> APIRouter:
    """The /admin/v1/apikeys routes (the app attaches authentication); mutations are
    audited as apikey.create / update / revoke / rotate when ``audit`` is given."""
    router = APIRouter(prefix="/admin/v1", tags=["apikeys"])
    Bundle = Annotated[KeysBundle, Depends(get)]

    def audited(action: str) -> list[Any]:
        return [] if audit is None else [audit_on(audit, action, "key_id")]

    async def view(b: KeysBundle, rec: KeyRecord) -> dict[str, Any]:
        spend = await b.budgets.month_to_date_usd(rec.id)
        return key_view(rec, spend, b.keyring.now())

    @router.get("/apikeys")
    async def list_keys(b: Bundle) -> dict[str, Any]:
        recs = await b.keyring.list()
        spend = await b.budgets.month_to_date(r.id for r in recs)
        now = b.keyring.now()
        return {"apikeys": [key_view(r, spend[r.id], now) for r in recs]}

    @router.post("/apikeys", status_code=201, dependencies=audited("apikey.create"))
    async def create_key(body: KeyIn, b: Bundle, request: Request) -> dict[str, Any]:
        rec, key = await b.keyring.create(**body.model_dump())
        request.state.audit_resource = rec.id
        return {**await view(b, rec), "key": key}

    @router.get("/apikeys/{key_id}")
    async def get_key(key_id: str, b: Bundle) -> dict[str, Any]:
        return await view(b, await b.keyring.get(key_id))

    @router.patch("/apikeys/{key_id}", dependencies=audited("apikey.update"))
    async def patch_key(key_id: str, body: KeyPatch, b: Bundle) -> dict[str, Any]:
        rec = await b.keyring.update(key_id, body.model_dump(exclude_unset=True))
        return await view(b, rec)

    @router.delete("/apikeys/{key_id}", dependencies=audited("apikey.revoke"))
    async def delete_key(key_id: str, b: Bundle) -> dict[str, Any]:
        await b.keyring.delete(key_id)
        return {"deleted": key_id}

    @router.post("/apikeys/{key_id}/rotate", dependencies=audited("apikey.rotate"))
    async def rotate_key(key_id: str, b: Bundle) -> dict[str, Any]:
        rec, key = await b.keyring.rotate(key_id)
        return {**await view(b, rec), "key": key}

    return router
