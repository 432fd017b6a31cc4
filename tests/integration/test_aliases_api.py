"""The /admin/v1/aliases and /admin/v1/aliases-pool routes over a real socket.

The routes run in a small FastAPI app built here from the real pieces (SQLite store,
catalog, audit log, alias table) until the gateway mounts ``aliases_router`` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.servers import serve_app
from tokenhub.api.admin_aliases import aliases_router
from tokenhub.api.errors import install_error_handlers
from tokenhub.providers.registry import create_adapter
from tokenhub.routing.aliases import AliasTable
from tokenhub.routing.catalog import Catalog
from tokenhub.security.audit import AuditLog
from tokenhub.store.aliases import AliasRepo
from tokenhub.store.audit import AuditRepo
from tokenhub.store.db import Database
from tokenhub.types import ModelConfig, ProviderConfig


@dataclass
class AliasApi:
    """A running alias API: an HTTP client and the pieces behind it."""

    http: httpx.AsyncClient
    table: AliasTable
    audit: AuditLog
    catalog: Catalog
    db: Database


def _app(table: AliasTable, audit: AuditLog) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    app.include_router(aliases_router(lambda: table, lambda: audit))
    return app


async def _catalog() -> Catalog:
    catalog = Catalog(lambda cfg: create_adapter(cfg, lambda _pid: None))
    await catalog.set_provider(ProviderConfig(id="mock", type="mock"))
    for mid in ("gpt-a", "gpt-b", "org/claude-c"):
        catalog.set_model(ModelConfig(id=mid, provider_id="mock"))
    return catalog


def _table(db: Database, catalog: Catalog) -> AliasTable:
    return AliasTable(
        AliasRepo(db),
        routable=lambda: [m.id for m in catalog.routable()],
        known=lambda mid: mid in catalog.models,
    )


@pytest.fixture
async def api(sqlite_db: Database) -> AsyncIterator[AliasApi]:
    """The alias routes served on a loopback port, backed by a fresh SQLite store."""
    catalog = await _catalog()
    table = _table(sqlite_db, catalog)
    await table.load()
    audit = AuditLog(AuditRepo(sqlite_db))
    try:
        async with (
            serve_app(_app(table, audit)) as url,
            httpx.AsyncClient(base_url=url, timeout=5) as http,
        ):
            yield AliasApi(http, table, audit, catalog, sqlite_db)
    finally:
        await catalog.close()


async def test_put_get_list_and_delete_an_alias(api: AliasApi) -> None:
    """An alias can be created, read, listed and deleted; it resolves while it exists."""
    body = {"targets": [{"model": "gpt-a", "weight": 90}, {"model": "gpt-b", "weight": 10}]}
    r = await api.http.put("/admin/v1/aliases/chat", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "chat", **body}
    assert (await api.http.get("/admin/v1/aliases/chat")).json() == r.json()
    listing = await api.http.get("/admin/v1/aliases")
    assert listing.json() == {"aliases": [{"name": "chat", **body}]}
    assert api.table.resolve_detail("chat")[1] == "chat"
    r = await api.http.delete("/admin/v1/aliases/chat")
    assert r.status_code == 200 and r.json() == {"deleted": "chat"}
    assert (await api.http.get("/admin/v1/aliases")).json() == {"aliases": []}
    assert api.table.resolve_detail("chat") == ("chat", None)


async def test_shorthand_model_and_slash_names(api: AliasApi) -> None:
    """{"model": x} means one target of weight 1, and alias names may contain slashes."""
    r = await api.http.put("/admin/v1/aliases/team/fast", json={"model": "org/claude-c"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "team/fast", "targets": [{"model": "org/claude-c", "weight": 1}]}
    assert api.table.resolve("team/fast") == "org/claude-c"
    assert (await api.http.delete("/admin/v1/aliases/team/fast")).status_code == 200


async def test_put_replaces_and_persists(api: AliasApi) -> None:
    """A second PUT replaces the targets, and a table reloaded from the store agrees."""
    await api.http.put("/admin/v1/aliases/chat", json={"model": "gpt-a"})
    r = await api.http.put("/admin/v1/aliases/chat", json={"targets": [{"model": "gpt-b"}]})
    assert r.json()["targets"] == [{"model": "gpt-b", "weight": 1}]
    fresh = _table(api.db, api.catalog)
    await fresh.load()
    assert fresh.resolve("chat") == "gpt-b"


async def test_unknown_alias_is_404(api: AliasApi) -> None:
    """Reading or deleting an alias that does not exist is a 404."""
    assert (await api.http.get("/admin/v1/aliases/ghost")).status_code == 404
    r = await api.http.delete("/admin/v1/aliases/ghost")
    assert r.status_code == 404
    assert "ghost" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("chat", {"model": "not-registered"}),
        ("gpt-a", {"model": "gpt-b"}),  # the name is a model id
        ("*", {"model": "gpt-a"}),
        ("chat", {"targets": [{"model": "gpt-a", "weight": 0}]}),
        ("chat", {"targets": []}),
        ("chat", {"model": "gpt-a", "targets": [{"model": "gpt-b"}]}),
        ("chat", {}),
    ],
)
async def test_invalid_alias_is_422(api: AliasApi, name: str, body: dict[str, Any]) -> None:
    """Unregistered targets, colliding or reserved names and malformed bodies are 422."""
    r = await api.http.put(f"/admin/v1/aliases/{name}", json=body)
    assert r.status_code == 422, r.text
    assert (await api.http.get("/admin/v1/aliases")).json() == {"aliases": []}


async def test_pool_get_and_put(api: AliasApi) -> None:
    """The diversity pool starts empty, can be set to registered models, and drives "*"."""
    assert (await api.http.get("/admin/v1/aliases-pool")).json() == {"models": []}
    r = await api.http.put("/admin/v1/aliases-pool", json={"models": ["gpt-b", "org/claude-c"]})
    assert r.status_code == 200 and r.json() == {"models": ["gpt-b", "org/claude-c"]}
    assert (await api.http.get("/admin/v1/aliases-pool")).json() == r.json()
    assert [api.table.resolve("*") for _ in range(4)] == ["gpt-b", "org/claude-c"] * 2
    bad = await api.http.put("/admin/v1/aliases-pool", json={"models": ["gpt-a", "ghost"]})
    assert bad.status_code == 422


async def test_mutations_are_audited(api: AliasApi) -> None:
    """alias.set, alias.delete and alias.pool land in the audit log with their outcome."""
    await api.http.put("/admin/v1/aliases/chat", json={"model": "gpt-a"})
    await api.http.put("/admin/v1/aliases/bad", json={"model": "ghost"})
    await api.http.delete("/admin/v1/aliases/chat")
    await api.http.put("/admin/v1/aliases-pool", json={"models": []})
    entries = [(e.action, e.resource, e.outcome) for e in reversed(await api.audit.list())]
    assert entries == [
        ("alias.set", "chat", "success"),
        ("alias.set", "bad", "failure:422"),
        ("alias.delete", "chat", "success"),
        ("alias.pool", "/admin/v1/aliases-pool", "success"),
    ]
