"""The vault end to end: a locked vault takes its providers out of routing (saying
why), keyless providers keep serving, unlock and a headless start bring them back, and
every step lands in the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.fakes.upstreams import FakeOpenAI
from tests.integration.harness import Gateway, gateway_settings, run_gateway
from tests.integration.security_e2e.support import (
    MODEL,
    PROVIDER_KEY,
    chat_body,
    messages_body,
)

PASSWORD = "vault-password-e2e-1"
LOCKED = "vault locked"


async def ask(g: Gateway, path: str = "/v1/chat/completions") -> httpx.Response:
    body = chat_body() if path == "/v1/chat/completions" else messages_body(MODEL)
    return await g.client.post(path, json=body)


async def excluded(g: Gateway) -> dict[str, str]:
    r = await g.admin.post("/admin/v1/routing/simulate", json={"model_hint": MODEL})
    assert r.status_code == 200, r.text
    result: dict[str, str] = r.json()["excluded"]
    return result


async def setup_locked(g: Gateway, upstream: FakeOpenAI) -> None:
    """Init the vault, add a keyed provider and its model, then lock."""
    r = await g.admin.post("/admin/v1/vault/init", json={"password": PASSWORD})
    assert r.status_code == 200 and r.json()["vault_locked"] is False, r.text
    await g.add_provider("oa", "openai", upstream.base_url, api_key=PROVIDER_KEY)
    await g.add_model(MODEL, "oa", weight=6, max_context_tokens=32000)
    assert (await ask(g)).status_code == 200
    r = await g.admin.post("/admin/v1/vault/lock")
    assert r.status_code == 200 and r.json()["vault_locked"] is True


async def test_a_locked_vault_gates_its_providers(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Locked: the keyed provider is excluded as "vault locked" and a request only it
    could serve is a 503 in the client's dialect; a keyless mock still serves; unlock
    restores the keyed provider."""
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await setup_locked(g, fake_openai)
        assert LOCKED in (await excluded(g))[MODEL]
        r = await ask(g)
        assert r.status_code == 503
        assert LOCKED in r.json()["error"]["message"]
        a = await ask(g, "/v1/messages")
        assert a.status_code == 503 and a.json()["type"] == "error"
        assert a.json()["error"]["type"] == "overloaded_error"
        assert LOCKED in a.json()["error"]["message"]

        await g.add_provider("mk", "mock", "")
        await g.add_model("mock-model", "mk", weight=1)
        served = await ask(g)
        assert served.status_code == 200 and served.headers["x-tokenhub-provider"] == "mk"

        r = await g.admin.post("/admin/v1/vault/unlock", json={"password": PASSWORD})
        assert r.status_code == 200 and r.json()["vault_locked"] is False
        assert MODEL not in await excluded(g)
        served = await ask(g)
        assert served.status_code == 200 and served.headers["x-tokenhub-provider"] == "oa"
    assert fake_openai.requests[-1].headers["Authorization"] == f"Bearer {PROVIDER_KEY}"


async def test_headless_start_opens_the_vault(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Restarted with TOKENHUB_VAULT_PASSWORD, the provider key works with no unlock."""
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await setup_locked(g, fake_openai)
    settings = gateway_settings(tmp_path, demo="false", vault_password=PASSWORD)
    async with run_gateway(settings) as g:
        info = (await g.admin.get("/admin/v1/info")).json()
        assert info == {"vault_enabled": True, "vault_initialized": True, "vault_locked": False}
        r = await ask(g)
        assert r.status_code == 200, r.text
        assert r.headers["x-tokenhub-provider"] == "oa"
    assert fake_openai.requests[-1].headers["Authorization"] == f"Bearer {PROVIDER_KEY}"


async def test_the_audit_log_tells_the_story(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """vault.init/lock/unlock, provider/model/apikey creation, routing-config update and
    admin-token rotation each leave an entry with an outcome and a request id."""
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await setup_locked(g, fake_openai)
        await g.admin.post("/admin/v1/vault/unlock", json={"password": PASSWORD})
        config = (await g.admin.get("/admin/v1/routing-config")).json()
        assert (await g.admin.put("/admin/v1/routing-config", json=config)).status_code == 200
        rotated = await g.admin.post(
            "/admin/v1/admin-token/rotate", headers={"X-Request-ID": "rotate-e2e-1"}
        )
        token = rotated.json()["admin_token"]
        r = await g.admin.get(
            "/admin/v1/audit", params={"limit": 1000}, headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200
    entries: list[dict[str, Any]] = r.json()["entries"]
    by_action = {e["action"]: e for e in entries}
    for action in (
        "vault.init",
        "vault.unlock",
        "vault.lock",
        "provider.create",
        "model.create",
        "apikey.create",
        "routing-config.update",
        "admin-token.rotate",
    ):
        entry = by_action.get(action)
        assert entry is not None, (action, sorted(by_action))
        assert entry["outcome"], entry
        assert entry["request_id"], entry
    assert by_action["admin-token.rotate"]["request_id"] == "rotate-e2e-1"
    assert by_action["provider.create"]["resource"] == "oa"
    assert token not in r.text and PASSWORD not in r.text and PROVIDER_KEY not in r.text
