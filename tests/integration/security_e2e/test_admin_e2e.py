"""The admin API on a running gateway: every route refuses a missing or wrong token,
rotation takes effect at once, and a token file is made when none is configured."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx

from tests.integration.harness import ADMIN_TOKEN, gateway_settings, run_gateway
from tests.integration.security_e2e.support import admin_routes, serve_bare

WRONG = {
    "none": {},
    "wrong token": {"Authorization": "Bearer wrong-token-0123456789abcdef"},
    "no scheme": {"Authorization": ADMIN_TOKEN},
    "basic": {"Authorization": f"Basic {ADMIN_TOKEN}"},
    "as x-api-key": {"x-api-key": ADMIN_TOKEN},
}


async def test_every_admin_route_needs_the_token(tmp_path: Path) -> None:
    """Each /admin/v1 method and path answers 401 without or with a wrong token."""
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        routes = admin_routes(g.settings)
        assert len(routes) > 30 and ("POST", "/admin/v1/vault/unlock") in routes
        async with httpx.AsyncClient(base_url=g.url, timeout=10) as raw:
            for method, path in routes:
                for case, headers in WRONG.items():
                    r = await raw.request(method, path, headers=headers, json={})
                    assert r.status_code == 401, (method, path, case, r.text)
                    assert r.json()["error"]["message"] == "missing or invalid admin token"
                    assert r.headers["WWW-Authenticate"] == "Bearer"
        # the same routes with the token are never refused for authentication
        assert (await g.admin.get("/admin/v1/info")).status_code == 200


async def test_admin_token_rotation_takes_effect_at_once(tmp_path: Path) -> None:
    """After rotation the old token is refused on the next request; the new one works."""
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        r = await g.admin.post("/admin/v1/admin-token/rotate")
        assert r.status_code == 200
        new = r.json()["admin_token"]
        assert new != ADMIN_TOKEN and len(new) >= 32
        assert (await g.admin.get("/admin/v1/info")).status_code == 401
        ok = await g.admin.get("/admin/v1/info", headers={"Authorization": f"Bearer {new}"})
        assert ok.status_code == 200
        token_file = Path(g.settings.data_dir) / ".admin-token"
        assert token_file.read_text().strip() == new
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


async def test_without_a_configured_token_a_private_file_is_made(tmp_path: Path) -> None:
    """No TOKENHUB_ADMIN_TOKEN: <data_dir>/.admin-token (0600) holds the token, which the
    admin API accepts, and a restart keeps it."""
    settings = gateway_settings(tmp_path, demo="false").model_copy(update={"admin_token": None})
    token_file = settings.data_dir / ".admin-token"
    async with serve_bare(settings) as url:
        token = token_file.read_text().strip()
        assert len(token) == 64 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        async with httpx.AsyncClient(base_url=url) as raw:
            auth = {"Authorization": f"Bearer {token}"}
            assert (await raw.get("/admin/v1/info", headers=auth)).status_code == 200
            assert (await raw.get("/admin/v1/info")).status_code == 401
    async with serve_bare(settings) as url:
        assert token_file.read_text().strip() == token
        async with httpx.AsyncClient(base_url=url) as raw:
            r = await raw.get("/admin/v1/info", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
