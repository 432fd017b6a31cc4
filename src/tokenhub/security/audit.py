"""The audit trail: one entry per admin mutation, and the dependency that writes it.

Actions are dotted names (``vault.unlock``, ``provider.create``, ``apikey.revoke``,
``routing-config.update``, ``admin-token.rotate`` ...). An entry records when, what,
on which resource, under which request id, and how it ended (``success`` or
``failure:<status>``) — never a secret: ``detail`` is scrubbed of anything whose key
looks like one before it is stored.

Routes attach ``audit_on(get_audit, action, resource_param)`` (a ``Depends`` of the
``audited`` yield dependency); FastAPI (>= 0.106) re-raises the handler's exception
inside a ``yield`` dependency, validation errors included, which is how failures are
recorded with their status. ``audit_on`` uses ``scope="function"`` (FastAPI >= 0.121) so
the entry is written before the response leaves: with the default "request" scope the
write races the client's next request (measured: an audit list right after a rotation
missed it).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends as DependsParam

from tokenhub.errors import TokenHubError
from tokenhub.store.audit import AuditEntry, AuditRepo

log = logging.getLogger("tokenhub.audit")

REDACTED = "[redacted]"
_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "authorization")
_SECRET_KEYS = frozenset({"key", "value", "new", "old"})
MAX_LIMIT = 1000


class AuditLog:
    """Writes and lists audit entries; ``clock`` gives wall-clock epoch seconds.

    ``record`` awaits the insert (admin path, not the hot path). ``record_nowait``
    schedules it, for synchronous callers such as the vault's auto-lock event; ``stop``
    waits for those to land.
    """

    def __init__(self, repo: AuditRepo, clock: Callable[[], float] = time.time) -> None:
        self._repo = repo
        self._clock = clock
        self._pending: set[asyncio.Task[None]] = set()
        # Told of every entry once stored (the app publishes admin-change events).
        self.on_record: Callable[[AuditEntry], None] | None = None

    async def record(
        self,
        action: str,
        resource: str,
        request_id: str,
        outcome: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        entry = AuditEntry(
            ts=self._clock(),
            action=action,
            resource=resource,
            request_id=request_id,
            outcome=outcome,
            detail=scrub(detail) if detail else None,
        )
        try:
            await self._repo.insert(entry)
        except Exception:
            # An audit write must not turn a done mutation into a 500; it is logged.
            log.exception("audit write failed for %s", action)
        if self.on_record is not None:
            self.on_record(entry)

    def record_nowait(
        self,
        action: str,
        resource: str,
        request_id: str = "",
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Schedule ``record`` on the running loop (for synchronous callers)."""
        coro = self.record(action, resource, request_id or new_request_id(), outcome, detail)
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def list(
        self, limit: int = 100, offset: int = 0, action: str | None = None
    ) -> list[AuditEntry]:
        """Newest first; ``action`` exact or a ``prefix*``."""
        limit = max(0, min(limit, MAX_LIMIT))
        return await self._repo.list(limit=limit, offset=max(0, offset), action=action)

    async def count(self, action: str | None = None) -> int:
        return await self._repo.count(action)

    async def stop(self) -> None:
        """Wait for scheduled writes (idempotent)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def vault_event_recorder(audit: AuditLog) -> Callable[[str, dict[str, Any]], None]:
    """A ``Vault.on_event`` listener auditing what no admin route sees: the auto-lock
    and a secret failing its integrity check at unlock (routes audit the rest)."""

    def listen(event: str, data: dict[str, Any]) -> None:
        if event in ("vault.auto-lock", "vault.tampered"):
            audit.record_nowait(event, str(data.get("name", "vault")), detail=data)

    return listen


def scrub(detail: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``detail`` with every value under a secret-looking key redacted."""
    out: dict[str, Any] = {}
    for k, v in detail.items():
        low = k.lower()
        if low in _SECRET_KEYS or any(word in low for word in _SECRET_WORDS):
            out[k] = REDACTED
        elif isinstance(v, dict):
            out[k] = scrub(v)
        else:
            out[k] = v
    return out


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(request: Request) -> str:
    """The client's X-Request-ID (bounded), else one generated and kept for the request."""
    rid = getattr(request.state, "request_id", None)
    if isinstance(rid, str):
        return rid
    rid = request.headers.get("x-request-id", "")[:100] or new_request_id()
    request.state.request_id = rid
    return rid


def failure_status(exc: BaseException) -> int:
    if isinstance(exc, TokenHubError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, RequestValidationError):
        return 422
    return 500


def audited(
    get_audit: Callable[[], AuditLog],
    action: str,
    resource_param: str | None = None,
) -> Callable[[Request], AsyncIterator[None]]:
    """A FastAPI ``yield`` dependency auditing the route it is attached to.

    The resource is the path parameter ``resource_param`` when given, else the path. A
    handler may refine it by setting ``request.state.audit_resource`` (e.g. a generated
    id) and add context in ``request.state.audit_detail`` (scrubbed before storing).
    """

    async def dependency(request: Request) -> AsyncIterator[None]:
        request_id = request_id_of(request)
        outcome = "success"
        try:
            yield
        except BaseException as exc:
            outcome = f"failure:{failure_status(exc)}"
            raise
        finally:
            await get_audit().record(
                action,
                _resource(request, resource_param),
                request_id,
                outcome,
                getattr(request.state, "audit_detail", None),
            )

    return dependency


def audit_on(
    get_audit: Callable[[], AuditLog], action: str, resource_param: str | None = None
) -> DependsParam:
    """``Depends(audited(...))`` ending before the response is sent; one line per route:
    ``@router.post("/providers", dependencies=[audit_on(get, "provider.create")])``."""
    dependency: DependsParam = Depends(audited(get_audit, action, resource_param), scope="function")
    return dependency


def _resource(request: Request, param: str | None) -> str:
    explicit = getattr(request.state, "audit_resource", None)
    if isinstance(explicit, str):
        return explicit
    if param and param in request.path_params:
        return str(request.path_params[param])
    return request.url.path
