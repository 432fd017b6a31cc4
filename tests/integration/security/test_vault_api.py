"""The vault and admin-token routes over a real loopback socket."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.security.vault_harness import ADMIN_TOKEN, SecurityServer, serve_security
from tests.unit.security.vault_support import NEW_PASSWORD, PASSWORD
from tokenhub.security.admin_token import TOKEN_FILE

SECRET_VALUE = "sk-other-secret-value-42"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SecurityServer]:
    async with serve_security(tmp_path) as s:
        yield s


async def _init(server: SecurityServer) -> None:
    r = await server.admin.post("/admin/v1/vault/init", json={"password": PASSWORD})
    assert r.status_code == 200, r.text


async def test_admin_routes_need_the_admin_token(server: SecurityServer) -> None:
    """Without the bearer token every security route answers 401 and does nothing."""
    async with httpx.AsyncClient(base_url=server.url) as anon:
        for method, path in [
            ("GET", "/admin/v1/info"),
            ("POST", "/admin/v1/vault/init"),
            ("GET", "/admin/v1/vault/secrets"),
            ("POST", "/admin/v1/admin-token/rotate"),
            ("GET", "/admin/v1/audit"),
        ]:
            r = await anon.request(method, path, json={"password": PASSWORD})
            assert r.status_code == 401, path
            assert r.json()["error"]["type"] == "authentication_error"
            assert r.headers["www-authenticate"] == "Bearer"
    assert not server.vault.initialized


async def test_info_follows_the_lifecycle(server: SecurityServer) -> None:
    """info reports not initialized, then unlocked after init, locked after lock."""
    info = (await server.admin.get("/admin/v1/info")).json()
    assert info == {"vault_enabled": True, "vault_initialized": False, "vault_locked": True}
    r = await server.admin.post("/admin/v1/vault/init", json={"admin_password": PASSWORD})
    assert r.json() == {"vault_enabled": True, "vault_initialized": True, "vault_locked": False}
    r = await server.admin.post("/admin/v1/vault/lock")
    assert r.json()["vault_locked"] is True
    r = await server.admin.post("/admin/v1/vault/unlock", json={"password": PASSWORD})
    assert r.status_code == 200 and r.json()["vault_locked"] is False


async def test_init_validates_the_password(server: SecurityServer) -> None:
    """Short or missing passwords get 422; a second init gets 409."""
    r = await server.admin.post("/admin/v1/vault/init", json={"password": "short"})
    assert r.status_code == 422 and "short" not in r.text
    r = await server.admin.post("/admin/v1/vault/init", json={})
    assert r.status_code == 422
    await _init(server)
    r = await server.admin.post("/admin/v1/vault/init", json={"password": NEW_PASSWORD})
    assert r.status_code == 409


async def test_a_wrong_password_gets_401_without_detail(server: SecurityServer) -> None:
    """The 401 body says nothing about why; the vault stays locked."""
    await _init(server)
    await server.admin.post("/admin/v1/vault/lock")
    r = await server.admin.post("/admin/v1/vault/unlock", json={"password": "nope-nope-nope"})
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "unauthorized"
    assert "nope" not in r.text and server.vault.locked


async def test_repeated_failures_slow_down(server: SecurityServer) -> None:
    """Back-off 1 s, 2 s, 4 s answered as 429 + Retry-After, even for the right password."""
    await _init(server)
    await server.admin.post("/admin/v1/vault/lock")
    for wait in (1, 2, 4):
        r = await server.admin.post("/admin/v1/vault/unlock", json={"password": "bad guess!"})
        assert r.status_code == 401
        r = await server.admin.post("/admin/v1/vault/unlock", json={"password": PASSWORD})
        assert r.status_code == 429 and r.headers["retry-after"] == str(wait)
        assert r.json()["error"]["type"] == "rate_limit_error"
        server.clock.advance(wait)
    r = await server.admin.post("/admin/v1/vault/unlock", json={"password": PASSWORD})
    assert r.status_code == 200 and not server.vault.locked


async def test_secrets_crud_never_returns_a_value(server: SecurityServer) -> None:
    """PUT stores, listing and GET show names and times only, DELETE removes."""
    await _init(server)
    r = await server.admin.put(
        "/admin/v1/vault/secrets/slack:webhook", json={"value": SECRET_VALUE}
    )
    assert r.status_code == 200 and r.json()["name"] == "slack:webhook"
    listing = await server.admin.get("/admin/v1/vault/secrets")
    one = await server.admin.get("/admin/v1/vault/secrets/slack:webhook")
    assert listing.json() == {"secrets": ["slack:webhook"]}
    assert set(one.json()) == {"name", "updated_at"}
    for r in (listing, one):
        assert SECRET_VALUE not in r.text
    assert server.vault.get("slack:webhook") == SECRET_VALUE
    assert (await server.admin.delete("/admin/v1/vault/secrets/slack:webhook")).status_code == 204
    assert (await server.admin.get("/admin/v1/vault/secrets/slack:webhook")).status_code == 404
    assert (await server.admin.delete("/admin/v1/vault/secrets/slack:webhook")).status_code == 404


async def test_secret_writes_while_locked_get_503(server: SecurityServer) -> None:
    """A PUT while locked answers 503 vault locked; names are still listed."""
    await _init(server)
    await server.admin.put("/admin/v1/vault/secrets/a", json={"value": "v-a"})
    await server.admin.post("/admin/v1/vault/lock")
    r = await server.admin.put("/admin/v1/vault/secrets/b", json={"value": "v-b"})
    assert r.status_code == 503 and r.json()["error"]["message"] == "vault locked"
    assert (await server.admin.get("/admin/v1/vault/secrets")).json() == {"secrets": ["a"]}


async def test_provider_keys_are_not_managed_here(server: SecurityServer) -> None:
    """provider:* names are refused with 422: they belong to the providers API."""
    await _init(server)
    r = await server.admin.put(
        "/admin/v1/vault/secrets/provider:openai:api_key", json={"value": "sk-x"}
    )
    assert r.status_code == 422 and "sk-x" not in r.text


async def test_rotation_over_http(server: SecurityServer) -> None:
    """A wrong old password gets 401; the right one re-encrypts and the new one unlocks."""
    await _init(server)
    await server.admin.put("/admin/v1/vault/secrets/k", json={"value": SECRET_VALUE})
    bad = {"old_password": "wrong old one", "new_password": NEW_PASSWORD}
    assert (await server.admin.post("/admin/v1/vault/rotate", json=bad)).status_code == 401
    server.clock.advance(1)
    good = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    r = await server.admin.post("/admin/v1/vault/rotate", json=good)
    assert r.status_code == 200 and r.json()["secrets_reencrypted"] == 1
    await server.admin.post("/admin/v1/vault/lock")
    r = await server.admin.post("/admin/v1/vault/unlock", json={"password": NEW_PASSWORD})
    assert r.status_code == 200 and server.vault.get("k") == SECRET_VALUE


async def test_admin_token_rotation_takes_effect_at_once(
    server: SecurityServer, tmp_path: Path
) -> None:
    """The new token is answered once and persisted; the old one is refused immediately."""
    r = await server.admin.post("/admin/v1/admin-token/rotate")
    new = r.json()["admin_token"]
    assert r.status_code == 200 and new != ADMIN_TOKEN
    assert (await server.admin.get("/admin/v1/info")).status_code == 401
    fresh = {"Authorization": f"Bearer {new}"}
    assert (await server.admin.get("/admin/v1/info", headers=fresh)).status_code == 200
    assert (tmp_path / "data" / TOKEN_FILE).read_text().strip() == new
    info = await server.admin.get("/admin/v1/info", headers=fresh)
    assert new not in info.text


async def test_a_disabled_vault_says_so(tmp_path: Path) -> None:
    """With the vault disabled info says so and vault routes answer 409."""
    async with serve_security(tmp_path, vault_enabled=False) as s:
        info = (await s.admin.get("/admin/v1/info")).json()
        assert info == {"vault_enabled": False, "vault_initialized": False, "vault_locked": False}
        r = await s.admin.post("/admin/v1/vault/init", json={"password": PASSWORD})
        assert r.status_code == 409 and r.json()["error"]["code"] == "vault_disabled"


async def test_no_secret_reaches_responses_or_logs(
    server: SecurityServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Across a whole session no password or secret value is logged or answered."""
    caplog.set_level(logging.DEBUG)
    texts = [(await server.admin.post("/admin/v1/vault/init", json={"password": PASSWORD})).text]
    texts.append(
        (await server.admin.put("/admin/v1/vault/secrets/k", json={"value": SECRET_VALUE})).text
    )
    texts.append((await server.admin.post("/admin/v1/vault/lock")).text)
    texts.append(
        (await server.admin.post("/admin/v1/vault/unlock", json={"password": "guess-1234"})).text
    )
    texts.append((await server.admin.get("/admin/v1/audit")).text)
    for needle in (PASSWORD, SECRET_VALUE, "guess-1234", ADMIN_TOKEN):
        assert needle not in caplog.text
        assert all(needle not in t for t in texts)
