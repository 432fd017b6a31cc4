"""The /admin/v1/apikeys routes over a real loopback socket, and keys guarding a /v1 route."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from tests.integration.servers import serve_app
from tokenhub.api.admin_keys import KeysBundle, keys_router
from tokenhub.api.errors import install_error_handlers
from tokenhub.security.apikeys import KeyRing
from tokenhub.security.budget import Budgets
from tokenhub.security.guard import Guard
from tokenhub.security.limits import RateLimiter
from tokenhub.state.memory import MemoryState
from tokenhub.store.apikeys import ApiKeyRepo, KeySpendRepo
from tokenhub.store.db import Database


@dataclass
class Served:
    client: httpx.AsyncClient
    bundle: KeysBundle
    guard: Guard


def build_api(db: Database, holder: dict[str, Guard]) -> tuple[FastAPI, list[KeysBundle]]:
    bundles: list[KeysBundle] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state = MemoryState()
        bundle = KeysBundle(KeyRing(ApiKeyRepo(db)), Budgets(state, KeySpendRepo(db)))
        holder["guard"] = Guard(bundle.keyring, bundle.budgets, RateLimiter(state))
        await bundle.budgets.load()
        await bundle.keyring.start()
        await bundle.budgets.start()
        bundles.append(bundle)
        try:
            yield
        finally:
            await bundle.keyring.stop()
            await bundle.budgets.stop()

    api = FastAPI(lifespan=lifespan)
    install_error_handlers(api)
    api.include_router(keys_router(lambda: bundles[-1]))

    @api.post("/v1/chat")
    async def chat(request: Request) -> dict[str, Any]:
        guard = holder["guard"]
        principal = await guard.authenticate(request.scope["headers"], "chat")
        res = await guard.reserve(principal, 0.01)
        await guard.settle(res, 0.004)
        return {"key_id": principal.id}

    return api, bundles


@pytest.fixture
async def served(sqlite_db: Database) -> AsyncIterator[Served]:
    holder: dict[str, Guard] = {}
    api, bundles = build_api(sqlite_db, holder)
    # access log on: test_keys_never_reach_the_logs reads it too
    async with (
        serve_app(api, lifespan="on", access_log=True) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as c,
    ):
        yield Served(c, bundles[-1], holder["guard"])


async def _create(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/admin/v1/apikeys", json={"name": "ci", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_create_answers_the_key_once(served: Served) -> None:
    """Create returns id, key and prefix; later reads never show the key or its digest."""
    c = served.client
    made = await _create(c, scopes=["chat", "plan"], expires_in="720h", monthly_budget_usd=5)
    key = made["key"]
    assert re.fullmatch(r"tokenhub_[0-9a-f]{64}", key) and re.fullmatch(r"[0-9a-f]{16}", made["id"])
    assert key.startswith(made["prefix"]) and made["scopes"] == ["chat", "plan"]
    assert made["month_to_date_spend_usd"] == 0 and made["remaining_budget_usd"] == 5
    assert made["expires_at"] == pytest.approx(made["created_at"] + 720 * 3600)
    rec = await served.bundle.keyring.get(made["id"])
    for r in (await c.get("/admin/v1/apikeys"), await c.get(f"/admin/v1/apikeys/{made['id']}")):
        assert r.status_code == 200
        assert key not in r.text and key[9:] not in r.text and rec.digest not in r.text
        assert "digest" not in r.text
    assert rec.digest not in str(made)


async def test_scopes_may_arrive_as_a_json_encoded_string(served: Served) -> None:
    """'["chat","embeddings"]' as a string is accepted like the list itself."""
    made = await _create(served.client, scopes='["embeddings", "chat"]')
    assert made["scopes"] == ["chat", "embeddings"]


async def test_bad_payloads_are_4xx_in_the_error_envelope(served: Served) -> None:
    """Missing name, unknown fields/scopes and bad durations are refused with a JSON error."""
    c = served.client
    cases = [
        ({}, 422),
        ({"name": "x", "colour": "red"}, 422),
        ({"name": "x", "scopes": ["admin"]}, 400),
        ({"name": "x", "scopes": "[chat"}, 422),
        ({"name": "x", "expires_in": "forever"}, 400),
        ({"name": "x", "monthly_budget_usd": -1}, 422),
        ({"name": "x", "rpm": 0}, 422),
    ]
    for body, status in cases:
        r = await c.post("/admin/v1/apikeys", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["message"]
    assert (await c.get("/admin/v1/apikeys")).json() == {"apikeys": []}


async def test_list_shows_month_to_date_spend(served: Served) -> None:
    """Each listed key carries its spend so far this month."""
    c = served.client
    a, b = await _create(c, name="a"), await _create(c, name="b", monthly_budget_usd=1)
    for _ in range(3):
        r = await c.post("/v1/chat", headers={"Authorization": f"Bearer {b['key']}"})
        assert r.status_code == 200 and r.json() == {"key_id": b["id"]}
    listed = {k["name"]: k for k in (await c.get("/admin/v1/apikeys")).json()["apikeys"]}
    assert listed["a"]["month_to_date_spend_usd"] == 0
    assert listed["b"]["month_to_date_spend_usd"] == 0.012
    assert listed["b"]["remaining_budget_usd"] == pytest.approx(0.988)
    assert listed["b"]["last_used_at"] is not None and listed["a"]["last_used_at"] is None
    assert a["id"] != b["id"]


async def test_patch_disables_and_changes_fields(served: Served) -> None:
    """PATCH applies at once: a disabled key is refused on its next request."""
    c = served.client
    made = await _create(c, scopes="chat")
    auth = {"x-api-key": made["key"]}
    assert (await c.post("/v1/chat", headers=auth)).status_code == 200
    r = await c.patch(
        f"/admin/v1/apikeys/{made['id']}", json={"enabled": False, "rpm": 7, "name": "renamed"}
    )
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["rpm"] == 7
    assert "key" not in r.json()
    denied = await c.post("/v1/chat", headers=auth)
    assert denied.status_code == 401
    assert denied.json()["error"]["message"] == "missing or invalid api key"
    r = await c.patch(f"/admin/v1/apikeys/{made['id']}", json={"scopes": ["plan"], "enabled": True})
    forbidden = await c.post("/v1/chat", headers=auth)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["message"] == "scope not allowed"
    assert (await c.patch(f"/admin/v1/apikeys/{made['id']}", json={"x": 1})).status_code == 422
    assert (await c.patch("/admin/v1/apikeys/0000", json={"rpm": 1})).status_code == 404


async def test_rotate_returns_a_new_key_and_kills_the_old(served: Served) -> None:
    """Rotation answers the new key once; the old one is refused on the next request."""
    c = served.client
    made = await _create(c)
    old = {"Authorization": f"Bearer {made['key']}"}
    assert (await c.post("/v1/chat", headers=old)).status_code == 200
    r = await c.post(f"/admin/v1/apikeys/{made['id']}/rotate")
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["id"] == made["id"] and rotated["key"] != made["key"]
    assert rotated["rotated_at"] is not None
    assert (await c.post("/v1/chat", headers=old)).status_code == 401
    new = {"Authorization": f"Bearer {rotated['key']}"}
    assert (await c.post("/v1/chat", headers=new)).status_code == 200
    assert (await c.post("/admin/v1/apikeys/ffff/rotate")).status_code == 404


async def test_delete_revokes_at_once(served: Served) -> None:
    """DELETE revokes the key for the next request; a second DELETE is a 404."""
    c = served.client
    made = await _create(c)
    auth = {"Authorization": f"Bearer {made['key']}"}
    assert (await c.post("/v1/chat", headers=auth)).status_code == 200
    r = await c.delete(f"/admin/v1/apikeys/{made['id']}")
    assert r.status_code == 200 and r.json() == {"deleted": made["id"]}
    assert (await c.post("/v1/chat", headers=auth)).status_code == 401
    r = await c.delete(f"/admin/v1/apikeys/{made['id']}")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


async def test_budget_exhaustion_is_a_429_over_http(served: Served) -> None:
    """Once the monthly budget cannot hold a request, the client gets 429 budget_exceeded."""
    c = served.client
    made = await _create(c, monthly_budget_usd=0.02)
    auth = {"Authorization": f"Bearer {made['key']}"}
    # Each request holds 0.01 and settles 0.004: the 4th cannot hold 0.01 on top of 0.012.
    statuses = [(await c.post("/v1/chat", headers=auth)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    r = await c.post("/v1/chat", headers=auth)
    assert r.json()["error"] == {
        "message": "budget exceeded",
        "type": "rate_limit_error",
        "code": "budget_exceeded",
    }


async def test_keys_never_reach_the_logs(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    """Creating, using, rotating and revoking keys logs nothing that holds a key."""
    c = served.client
    with caplog.at_level(logging.DEBUG):
        made = await _create(c)
        await c.post("/v1/chat", headers={"Authorization": f"Bearer {made['key']}"})
        rotated = (await c.post(f"/admin/v1/apikeys/{made['id']}/rotate")).json()
        await c.post("/v1/chat", headers={"Authorization": f"Bearer {made['key']}"})
        await c.delete(f"/admin/v1/apikeys/{made['id']}")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert made["key"] not in text and rotated["key"] not in text
