"""The audit trail: what the vault routes record, the ``audited`` dependency's outcomes
under FastAPI's current yield semantics, listing, and the absence of secrets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from tests.integration.security.vault_harness import ADMIN_TOKEN, SecurityServer, serve_security
from tests.unit.security.vault_support import (
    PASSWORD,
    FakeClock,
    asyncpg_url,
    make_vault,
    migrated,
    raw_rows,
    sqlite_url,
)
from tokenhub.api.admin_security import SecurityBundle
from tokenhub.errors import NotFound
from tokenhub.security.audit import AuditLog, audit_on, scrub, vault_event_recorder
from tokenhub.store.audit import AuditRepo


class Body(BaseModel):
    n: int


def _test_routes(app: FastAPI, bundle: SecurityBundle) -> None:
    """Routes that end every way a handler can, each audited with one line."""

    def audit(action: str, param: str | None = None) -> list[Any]:
        return [audit_on(lambda: bundle.audit, action, param)]

    @app.post("/t/ok/{item}", dependencies=audit("t.ok", "item"))
    async def ok(item: str) -> dict[str, str]:
        return {"item": item}

    @app.post("/t/missing", dependencies=audit("t.missing"))
    async def missing() -> None:
        raise NotFound("no such thing")

    @app.post("/t/teapot", dependencies=audit("t.teapot"))
    async def teapot() -> None:
        raise HTTPException(418, "teapot")

    @app.post("/t/body", dependencies=audit("t.body"))
    async def body(b: Body) -> dict[str, int]:
        return {"n": b.n}

    @app.post("/t/crash", dependencies=audit("t.crash"))
    async def crash() -> None:
        raise RuntimeError("a bug")

    @app.post("/t/created", dependencies=audit("t.created"))
    async def created(request: Request) -> dict[str, str]:
        request.state.audit_resource = "key_123"
        request.state.audit_detail = {"name": "ci", "api_key": "sk-never-stored"}
        return {"id": "key_123"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SecurityServer]:
    async with serve_security(tmp_path, extra=_test_routes) as s:
        yield s


async def _entries(server: SecurityServer, **params: Any) -> list[dict[str, Any]]:
    r = await server.admin.get("/admin/v1/audit", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


async def test_vault_routes_audit_themselves(server: SecurityServer) -> None:
    """init, a failed unlock, a throttled unlock and lock are recorded with outcomes."""
    rid = {"X-Request-ID": "req-abc-1"}
    await server.admin.post("/admin/v1/vault/init", json={"password": PASSWORD}, headers=rid)
    await server.admin.post("/admin/v1/vault/lock")
    await server.admin.post("/admin/v1/vault/unlock", json={"password": "wrong-wrong"})
    await server.admin.post("/admin/v1/vault/unlock", json={"password": PASSWORD})
    got = [(e["action"], e["outcome"]) for e in await _entries(server)][::-1]
    assert got == [
        ("vault.init", "success"),
        ("vault.lock", "success"),
        ("vault.unlock", "failure:401"),
        ("vault.unlock", "failure:429"),
    ]
    first = (await _entries(server, action="vault.init"))[0]
    assert first["request_id"] == "req-abc-1" and first["resource"] == "/admin/v1/vault/init"


async def test_the_dependency_sees_every_ending(server: SecurityServer) -> None:
    """Success, TokenHubError, HTTPException, validation error and a crash each get an outcome."""
    calls = [("/t/ok/item-7", None), ("/t/missing", None), ("/t/teapot", None)]
    calls += [("/t/body", {"n": "x"}), ("/t/crash", None)]
    for path, body in calls:
        await server.admin.post(path, json=body)
    got = {e["action"]: (e["outcome"], e["resource"]) for e in await _entries(server)}
    assert got == {
        "t.ok": ("success", "item-7"),
        "t.missing": ("failure:404", "/t/missing"),
        "t.teapot": ("failure:418", "/t/teapot"),
        "t.body": ("failure:422", "/t/body"),
        "t.crash": ("failure:500", "/t/crash"),
    }


async def test_a_request_id_is_generated_when_absent(server: SecurityServer) -> None:
    """Without X-Request-ID the entry gets a generated 32-hex id."""
    await server.admin.post("/t/ok/x")
    (entry,) = await _entries(server, action="t.ok")
    assert re.fullmatch(r"[0-9a-f]{32}", entry["request_id"])


async def test_handlers_may_name_the_resource_and_detail(server: SecurityServer) -> None:
    """request.state.audit_resource/audit_detail are used, secrets in detail redacted."""
    await server.admin.post("/t/created")
    (entry,) = await _entries(server, action="t.created")
    assert entry["resource"] == "key_123"
    assert entry["detail"] == {"name": "ci", "api_key": "[redacted]"}


async def test_listing_pages_and_filters(server: SecurityServer) -> None:
    """limit/offset page newest first; action filters exactly or by prefix*."""
    for i in range(5):
        server.clock.advance(1)
        await server.admin.post(f"/t/ok/{i}")
    await server.admin.post("/admin/v1/vault/init", json={"password": PASSWORD})
    page = await server.admin.get("/admin/v1/audit", params={"limit": 2, "offset": 1})
    assert page.json()["total"] == 6
    assert [e["resource"] for e in page.json()["entries"]] == ["4", "3"]
    assert len(await _entries(server, action="t.ok")) == 5
    assert [e["action"] for e in await _entries(server, action="vault.*")] == ["vault.init"]
    assert await _entries(server, action="t") == []
    r = await server.admin.get("/admin/v1/audit", params={"limit": 0})
    assert r.status_code == 422


async def test_audit_rows_never_hold_a_secret(server: SecurityServer) -> None:
    """After vault, secret and token operations no stored row contains a secret."""
    await server.admin.post("/admin/v1/vault/init", json={"password": PASSWORD})
    await server.admin.put("/admin/v1/vault/secrets/k", json={"value": "sk-audit-secret"})
    new_token = (await server.admin.post("/admin/v1/admin-token/rotate")).json()["admin_token"]
    dump = repr(await raw_rows(server.db, "audit_log"))
    assert "admin-token.rotate" in dump and "vault.secret.put" in dump
    for needle in (PASSWORD, "sk-audit-secret", new_token, ADMIN_TOKEN):
        assert needle not in dump


def test_scrub_redacts_nested_secret_keys() -> None:
    """Keys naming passwords, tokens, keys or values are redacted at any depth."""
    got = scrub({"id": "p1", "nested": {"password": "x", "old": "y"}, "admin_token": "t"})
    assert got == {
        "id": "p1",
        "nested": {"password": "[redacted]", "old": "[redacted]"},
        "admin_token": "[redacted]",
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return asyncpg_url(request.getfixturevalue("pg_dsn"))


async def test_auto_lock_is_audited_through_the_vault_listener(db_url: str) -> None:
    """vault_event_recorder records the background auto-lock, on both backends."""
    async with migrated(db_url) as db:
        clock = FakeClock()
        audit = AuditLog(AuditRepo(db), clock=clock)
        vault = make_vault(db, clock, on_event=vault_event_recorder(audit))
        await vault.init(PASSWORD)
        clock.advance(1800)
        assert vault.check_auto_lock()
        await audit.stop()
        (entry,) = await audit.list(action="vault.auto-lock")
        assert (entry.resource, entry.outcome, entry.detail) == (
            "vault",
            "success",
            {"reason": "auto"},
        )
        assert await audit.count() == 1
