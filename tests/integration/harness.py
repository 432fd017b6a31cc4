"""Run a real TokenHub on a loopback port inside the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.conftest import free_port
from tokenhub.app import build_app
from tokenhub.config import Settings, load_settings

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


@dataclass
class Gateway:
    """A running gateway: ``admin`` carries the admin token, ``client`` a client key
    with every scope (``api_key``), for the /v1 routes."""

    url: str  # http://127.0.0.1:PORT
    settings: Settings
    admin: httpx.AsyncClient
    client: httpx.AsyncClient
    api_key: str

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    async def add_provider(
        self, pid: str, ptype: str, base_url: str | list[str], **kw: Any
    ) -> None:
        body = {"id": pid, "type": ptype, "base_url": base_url, **kw}
        r = await self.admin.post("/admin/v1/providers", json=body)
        assert r.status_code == 201, r.text

    async def add_model(self, mid: str, provider_id: str, **kw: Any) -> None:
        r = await self.admin.post(
            "/admin/v1/models", json={"id": mid, "provider_id": provider_id, **kw}
        )
        assert r.status_code == 201, r.text

    async def new_key(self, **fields: Any) -> str:
        """Create a client key (name defaulted) and return the secret, shown once."""
        r = await self.admin.post("/admin/v1/apikeys", json={"name": "test", **fields})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


def gateway_settings(tmp_path: Path, **env: str) -> Settings:
    base = {
        "TOKENHUB_DATA_DIR": str(tmp_path / "data"),
        "TOKENHUB_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "TOKENHUB_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "TOKENHUB_ADMIN_TOKEN": ADMIN_TOKEN,
        # Tests fire requests far faster than a person: limits are tested on their own.
        "TOKENHUB_RATE_LIMIT_RPS": "100000",
        "TOKENHUB_RATE_LIMIT_BURST": "100000",
        "TOKENHUB_ADMIN_RATE_LIMIT_RPS": "100000",
        "TOKENHUB_ADMIN_RATE_LIMIT_BURST": "100000",
    }
    base.update({f"TOKENHUB_{k.upper()}": v for k, v in env.items()})
    return load_settings(base)


@asynccontextmanager
async def run_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is TokenHub's call (TOKENHUB_TRUSTED_PROXIES)
        http="httptools",
        loop="none",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
        raise RuntimeError("gateway did not start")
    url = f"http://{settings.host}:{settings.port}"
    admin = httpx.AsyncClient(
        base_url=url, timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    try:
        r = await admin.post("/admin/v1/apikeys", json={"name": "harness"})
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        async with httpx.AsyncClient(
            base_url=url, timeout=10, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            yield Gateway(url, settings, admin, client, key)
    finally:
        await admin.aclose()
        app.begin_shutdown()
        server.should_exit = True
        await asyncio.wait_for(task, 15)
