"""Admin routes for model aliases (`/admin/v1/aliases`) and the diversity pool
(`/admin/v1/aliases-pool`).

An alias body is ``{"targets": [{"model", "weight"}]}`` or the shorthand
``{"model": "x"}`` (one target, weight 1). Names may contain ``/`` (``team/fast``), so
the routes take ``{name:path}``. The table itself checks names and targets (422) and
unknown names (404); this module only shapes HTTP.
"""

# No `from __future__ import annotations`: FastAPI must see the route signatures'
# types themselves, and `Table` below is local to the router factory.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenhub.routing.aliases import MAX_TARGETS, AliasTable
from tokenhub.security.audit import AuditLog, audit_on
from tokenhub.store.aliases import AliasRecord, AliasTarget

ModelId = Annotated[str, Field(min_length=1, max_length=300)]
# int | float keeps an integral weight an int in answers (90, not 90.0).
Weight = Annotated[int | float, Field(gt=0, le=1_000_000)]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelId
    weight: Weight = 1


class AliasIn(BaseModel):
    """Either ``targets`` or the one-model shorthand ``model``."""

    model_config = ConfigDict(extra="forbid")

    targets: list[TargetIn] | None = Field(None, min_length=1, max_length=MAX_TARGETS)
    model: ModelId | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "AliasIn":
        if (self.targets is None) == (self.model is None):
            raise ValueError("give either 'targets' or 'model'")
        return self

    def to_targets(self) -> list[AliasTarget]:
        if self.model is not None:
            return [AliasTarget(self.model, 1)]
        return [AliasTarget(t.model, t.weight) for t in self.targets or ()]


class PoolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelId] = Field(max_length=1000)


def alias_view(record: AliasRecord) -> dict[str, Any]:
    """An alias as the API shows it."""
    targets = [{"model": t.model, "weight": t.weight} for t in record.targets]
    return {"name": record.name, "targets": targets}


def aliases_router(
    get: Callable[[], AliasTable], audit: Callable[[], AuditLog] | None = None
) -> APIRouter:
    """The alias and pool routes (the app attaches authentication); mutations are
    audited as alias.set / alias.delete / alias.pool when ``audit`` is given."""
    router = APIRouter(prefix="/admin/v1", tags=["aliases"])
    Table = Annotated[AliasTable, Depends(get)]

    def audited(action: str, resource: str | None = "name") -> list[Any]:
        return [] if audit is None else [audit_on(audit, action, resource)]

    @router.get("/aliases")
    async def list_aliases(table: Table) -> dict[str, Any]:
        return {"aliases": [alias_view(r) for r in table.list()]}

    # The pool routes come first: "/aliases-pool" never matches "/aliases/{name}", but
    # keeping fixed paths ahead of path parameters avoids surprises when routes move.
    @router.get("/aliases-pool")
    async def get_pool(table: Table) -> dict[str, Any]:
        return {"models": table.pool()}

    @router.put("/aliases-pool", dependencies=audited("alias.pool", None))
    async def put_pool(body: PoolIn, table: Table) -> dict[str, Any]:
        return {"models": await table.set_pool(body.models)}

    @router.get("/aliases/{name:path}")
    async def get_alias(name: str, table: Table) -> dict[str, Any]:
        return alias_view(table.get(name))

    @router.put("/aliases/{name:path}", dependencies=audited("alias.set"))
    async def put_alias(name: str, body: AliasIn, table: Table) -> dict[str, Any]:
        return alias_view(await table.set(name, body.to_targets()))

    @router.delete("/aliases/{name:path}", dependencies=audited("alias.delete"))
    async def delete_alias(name: str, table: Table) -> dict[str, Any]:
        await table.delete(name)
        return {"deleted": name}

    return router
