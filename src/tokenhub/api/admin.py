"""Admin API (`/admin/v1/*`): providers, models, routing configuration, what-if.

Every route hangs off one router whose dependencies guard them all (authentication
arrives with the security layer as one more dependency there). Handlers only translate
HTTP to control-plane calls; rules live in ``tokenhub.control``.
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tokenhub.control import ControlPlane
from tokenhub.security.audit import AuditLog, audit_on
from tokenhub.types import ModelConfig, ProviderConfig

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$"


class ProviderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    type: str
    base_url: str | list[str] = ""
    api_key: str | None = Field(default=None, min_length=1, max_length=4096)
    enabled: bool = True
    autoload_models: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | list[str]) -> str | list[str]:
        for u in [v] if isinstance(v, str) else v:
            if u and not u.startswith(("http://", "https://")):
                raise ValueError("must start with http:// or https://")
        return v

    def config(self) -> ProviderConfig:
        urls = [self.base_url] if isinstance(self.base_url, str) else self.base_url
        return ProviderConfig(
            id=self.id,
            type=self.type,
            base_urls=[u for u in urls if u],
            enabled=self.enabled,
            options=self.options,
            autoload_models=self.autoload_models,
        )


class ProviderPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = None
    base_url: str | list[str] | None = None
    api_key: str | None = Field(default=None, min_length=1, max_length=4096)
    enabled: bool | None = None
    autoload_models: bool | None = None
    options: dict[str, Any] | None = None

    _url = field_validator("base_url")(ProviderIn._url.__func__)  # type: ignore[attr-defined]


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: str = Field(pattern=ID_PATTERN)
    provider_id: str = Field(min_length=1)
    weight: int = Field(5, ge=0, le=10)
    max_context_tokens: int = Field(8192, gt=0)
    input_per_1k: float = Field(0.0, ge=0)
    output_per_1k: float = Field(0.0, ge=0)
    enabled: bool = True
    upstream_id: str | None = None
    kind: Literal["chat", "embedding"] = "chat"

    def config(self) -> ModelConfig:
        fields = self.model_dump(exclude={"kind"})
        return ModelConfig(**fields, labels={"kind": self.kind})


class ModelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider_id: str | None = Field(None, min_length=1)
    weight: int | None = Field(None, ge=0, le=10)
    max_context_tokens: int | None = Field(None, gt=0)
    input_per_1k: float | None = Field(None, ge=0)
    output_per_1k: float | None = Field(None, ge=0)
    enabled: bool | None = None
    upstream_id: str | None = None
    kind: Literal["chat", "embedding"] | None = None


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str | None = None
    token_count: int = Field(500, ge=0, le=10_000_000)
    max_budget_usd: float | None = Field(None, ge=0, le=100)
    min_weight: int | None = Field(None, ge=0, le=10)
    model_hint: str | None = None
    max_tokens: int | None = Field(None, ge=1)


def provider_view(cp: ControlPlane, p: ProviderConfig) -> dict[str, Any]:
    """A provider as the API shows it: never the key, only whether one is set."""
    return {
        "id": p.id,
        "type": p.type,
        "base_url": p.base_urls[0] if len(p.base_urls) == 1 else p.base_urls,
        "enabled": p.enabled,
        "autoload_models": p.autoload_models,
        "options": p.options,
        "has_api_key": cp.credentials.has(p.id),
        "models": sorted(m.id for m in cp.catalog.models.values() if m.provider_id == p.id),
    }


def model_view(m: ModelConfig) -> dict[str, Any]:
    return {
        "id": m.id,
        "provider_id": m.provider_id,
        "weight": m.weight,
        "max_context_tokens": m.max_context_tokens,
        "input_per_1k": m.input_per_1k,
        "output_per_1k": m.output_per_1k,
        "enabled": m.enabled,
        "upstream_id": m.upstream_id,
        "kind": m.labels.get("kind", "chat"),
        "labels": m.labels,
    }


def admin_router(
    control: Callable[[], ControlPlane], audit: Callable[[], AuditLog] | None = None
) -> APIRouter:
    """Providers, models and routing routes (the app attaches authentication); every
    mutation is audited when ``audit`` is given."""
    router = APIRouter(prefix="/admin/v1", tags=["admin"])
    CP = Annotated[ControlPlane, Depends(control)]

    def audited(action: str, param: str | None = None) -> list[Any]:
        return [] if audit is None else [audit_on(audit, action, param)]

    @router.get("/providers")
    async def list_providers(cp: CP) -> dict[str, Any]:
        items = sorted(cp.catalog.providers.values(), key=lambda p: p.id)
        return {"providers": [provider_view(cp, p) for p in items]}

    @router.post("/providers", status_code=201, dependencies=audited("provider.create"))
    async def put_provider(body: ProviderIn, cp: CP, request: Request) -> dict[str, Any]:
        request.state.audit_resource = body.id
        cfg = await cp.put_provider(body.config(), body.api_key)
        return provider_view(cp, cfg)

    @router.patch(
        "/providers/{provider_id}", dependencies=audited("provider.update", "provider_id")
    )
    async def patch_provider(provider_id: str, body: ProviderPatch, cp: CP) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        cfg = await cp.patch_provider(provider_id, changes)
        return provider_view(cp, cfg)

    @router.delete(
        "/providers/{provider_id}", dependencies=audited("provider.delete", "provider_id")
    )
    async def delete_provider(provider_id: str, cp: CP) -> dict[str, Any]:
        await cp.delete_provider(provider_id)
        return {"deleted": provider_id}

    @router.get("/providers/{provider_id}/discover")
    async def discover(
        provider_id: str, cp: CP, register: Annotated[bool, Query()] = False
    ) -> dict[str, Any]:
        return await cp.discover(provider_id, register=register)

    @router.post(
        "/providers/{provider_id}/discover",
        dependencies=audited("provider.discover", "provider_id"),
    )
    async def discover_and_register(provider_id: str, cp: CP) -> dict[str, Any]:
        return await cp.discover(provider_id, register=True)

    @router.get("/models")
    async def list_models(cp: CP) -> dict[str, Any]:
        items = sorted(cp.catalog.models.values(), key=lambda m: m.id)
        return {"models": [model_view(m) for m in items]}

    @router.post("/models", status_code=201, dependencies=audited("model.create"))
    async def put_model(body: ModelIn, cp: CP, request: Request) -> dict[str, Any]:
        request.state.audit_resource = body.id
        return model_view(await cp.put_model(body.config()))

    @router.patch("/models/{model_id:path}", dependencies=audited("model.update", "model_id"))
    async def patch_model(model_id: str, body: ModelPatch, cp: CP) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        if "kind" in changes:
            current = cp.catalog.models.get(model_id)
            labels = dict(current.labels) if current is not None else {}
            changes["labels"] = {**labels, "kind": changes.pop("kind")}
        return model_view(await cp.patch_model(model_id, changes))

    @router.delete("/models/{model_id:path}", dependencies=audited("model.delete", "model_id"))
    async def delete_model(model_id: str, cp: CP) -> dict[str, Any]:
        await cp.delete_model(model_id)
        return {"deleted": model_id}

    @router.get("/routing-config")
    async def get_routing_config(cp: CP) -> dict[str, Any]:
        return cp.engine.config.to_dict()

    @router.put("/routing-config", dependencies=audited("routing-config.update"))
    async def put_routing_config(body: dict[str, Any], cp: CP) -> dict[str, Any]:
        return (await cp.put_routing_config(body)).to_dict()

    @router.post("/routing/simulate")
    async def simulate(body: SimulateIn, cp: CP) -> dict[str, Any]:
        if body.mode is not None:
            cp.engine.policy(mode=body.mode)  # 400 for an unknown mode
        return cp.engine.simulate(**body.model_dump())

    @router.get("/engine/models")
    async def engine_models(cp: CP) -> dict[str, Any]:
        return {"models": cp.engine.describe_models()}

    return router
