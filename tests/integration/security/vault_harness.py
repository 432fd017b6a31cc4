"""Serve the security router on a loopback port, as the gateway will: same error
handlers as app.py, the admin-token guard on the router, a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI

from tests.integration.servers import serve_app
from tests.unit.security.vault_support import LIGHT_KDF, FakeClock, migrated, sqlite_url
from tokenhub.api.admin_security import SecurityBundle, security_router
from tokenhub.api.errors import install_error_handlers
from tokenhub.security.admin_token import AdminToken, require_admin
from tokenhub.security.audit import AuditLog
from tokenhub.security.vault import UnlockThrottle, Vault, VaultCredentials
from tokenhub.state.memory import MemoryState
from tokenhub.store.audit import AuditRepo
from tokenhub.store.db import Database
from tokenhub.store.vault import VaultRepo

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


@dataclass
class SecurityServer:
    url: str
    bundle: SecurityBundle
    clock: FakeClock
    db: Database
    admin: httpx.AsyncClient  # sends the admin token

    @property
    def vault(self) -> Vault:
        assert self.bundle.vault is not None
        return self.bundle.vault


def build_bundle(
    db: Database, tmp_path: Path, clock: FakeClock, vault_enabled: bool
) -> SecurityBundle:
    vault = Vault(VaultRepo(db), clock=clock, kdf=LIGHT_KDF) if vault_enabled else None
    return SecurityBundle(
        vault=vault,
        admin_token=AdminToken.load_or_create(tmp_path / "data", ADMIN_TOKEN),
        audit=AuditLog(AuditRepo(db), clock=clock),
        throttle=UnlockThrottle(MemoryState(clock=clock), clock=clock),
        credentials=VaultCredentials(vault) if vault else None,
    )


@asynccontextmanager
async def serve_security(
    tmp_path: Path,
    *,
    vault_enabled: bool = True,
    extra: Callable[[FastAPI, SecurityBundle], None] | None = None,
) -> AsyncIterator[SecurityServer]:
    """The security routes over uvicorn on 127.0.0.1; ``extra`` may add test routes."""
    clock = FakeClock()
    async with migrated(sqlite_url(tmp_path)) as db:
        bundle = build_bundle(db, tmp_path, clock, vault_enabled)
        if bundle.vault is not None:
            await bundle.vault.load()
        app = FastAPI()
        install_error_handlers(app)
        guard = Depends(require_admin(lambda: bundle.admin_token))
        app.include_router(security_router(lambda: bundle), dependencies=[guard])
        if extra is not None:
            extra(app, bundle)
        async with serve_app(app) as url:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as admin:
                yield SecurityServer(url, bundle, clock, db, admin)
        await bundle.audit.stop()
        if bundle.vault is not None:
            await bundle.vault.stop()
