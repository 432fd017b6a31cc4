"""Every long-lived component, built and started in dependency order, stopped in reverse.

``start_services(settings)`` is what the app's lifespan runs; nothing here is global. The
order of ``stop_services`` matters: background producers stop first, then the recorder
drains into its sinks, then the stores they write to close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tokenhub.config import Settings
from tokenhub.control import CatalogSync, ControlPlane
from tokenhub.credentials import load_credentials_file
from tokenhub.observe.banditsink import BanditSink
from tokenhub.observe.events import EventBus, EventSink, health_listener
from tokenhub.observe.health import HealthTracker
from tokenhub.observe.logsink import LogSink
from tokenhub.observe.metrics import Metrics, MetricsSink
from tokenhub.observe.offloop import DatabaseWriter
from tokenhub.observe.prober import Prober
from tokenhub.observe.recorder import BatchSink, Recorder
from tokenhub.observe.stats import StatsService
from tokenhub.observe.tracing import Tracing
from tokenhub.observe.tsdb import TSDB
from tokenhub.providers.registry import create_adapter
from tokenhub.routing.aliases import AliasTable
from tokenhub.routing.bandit import Bandit
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.config import RoutingConfig
from tokenhub.routing.embedding import EmbeddingRouter
from tokenhub.routing.engine import RoutingEngine
from tokenhub.routing.orchestration import Orchestrator
from tokenhub.security.admin_token import AdminToken
from tokenhub.security.apikeys import KeyRing
from tokenhub.security.audit import AuditLog, vault_event_recorder
from tokenhub.security.budget import Budgets
from tokenhub.security.clientip import ClientIP
from tokenhub.security.guard import Guard, OpenGuard
from tokenhub.security.idempotency import Idempotency
from tokenhub.security.limits import RateLimiter
from tokenhub.security.vault import (
    Credentials,
    MemoryCredentials,
    UnlockThrottle,
    Vault,
    VaultCredentials,
)
from tokenhub.state.base import SharedState
from tokenhub.state.memory import MemoryState
from tokenhub.state.redis import RedisState
from tokenhub.store.aliases import AliasRepo
from tokenhub.store.apikeys import ApiKeyRepo, KeySpendRepo
from tokenhub.store.audit import AuditEntry, AuditRepo
from tokenhub.store.bandit import BanditRepo, BanditStore
from tokenhub.store.db import Database
from tokenhub.store.logs import LogRepo
from tokenhub.store.models import ModelRepo
from tokenhub.store.providers import ProviderRepo
from tokenhub.store.settings import SettingsRepo
from tokenhub.store.tsdb import TSDBRepo
from tokenhub.store.vault import VaultRepo
from tokenhub.types import Policy

log = logging.getLogger("tokenhub")

VAULT_LOCKED = "vault locked"


@dataclass
class Services:
    """Everything the lifespan creates, handed explicitly to the routes."""

    settings: Settings
    started_at: float
    db: Database
    state: SharedState
    # routing
    catalog: Catalog
    health: HealthTracker
    engine: RoutingEngine
    control: ControlPlane
    # security
    credentials: Credentials
    vault: Vault | None
    admin_token: AdminToken
    audit: AuditLog
    throttle: UnlockThrottle
    keyring: KeyRing
    budgets: Budgets
    limiter: RateLimiter
    client_ip: ClientIP
    guard: Guard
    # observability
    metrics: Metrics
    events: EventBus
    tracing: Tracing
    prober: Prober
    logs: LogRepo
    stats: StatsService
    tsdb: TSDB
    recorder: Recorder | None
    writer: DatabaseWriter | None  # the recorder's database sinks write from its thread
    # adaptive routing and orchestration
    bandit: Bandit
    bandit_store: BanditStore
    aliases: AliasTable
    idempotency: Idempotency
    embeddings: EmbeddingRouter
    orchestrator: Orchestrator
    catalog_sync: CatalogSync


async def _open_state(settings: Settings) -> SharedState:
    if not settings.redis_url:
        return MemoryState()
    state = RedisState(settings.redis_url)
    await state.ping()
    return state


async def _open_vault(
    settings: Settings, db: Database, audit: AuditLog, events: EventBus
) -> tuple[Vault | None, Credentials]:
    if not settings.vault_enabled:
        return None, MemoryCredentials()
    vault = Vault(VaultRepo(db), auto_lock_s=settings.vault_auto_lock_secs)
    to_audit = vault_event_recorder(audit)

    def on_event(name: str, detail: dict[str, object]) -> None:
        to_audit(name, detail)
        events.publish("vault", action=name)

    vault.on_event = on_event
    await vault.load()
    credentials = VaultCredentials(vault)
    if settings.vault_password is not None:
        await vault.open_headless(settings.vault_password.get_secret_value())
    return vault, credentials


# Audited actions after which other replicas must re-read the catalogue.
_CATALOG_ACTIONS = ("provider.", "model.", "routing-config.", "alias.")


def _admin_events(
    events: EventBus, sync: Callable[[], CatalogSync]
) -> Callable[[AuditEntry], None]:
    def publish(entry: AuditEntry) -> None:
        if entry.outcome == "success" and entry.action.startswith(_CATALOG_ACTIONS):
            sync().announce()
        if not entry.action.startswith("vault."):  # the vault announces itself
            events.publish(
                "admin_change",
                action=entry.action,
                resource=entry.resource,
                outcome=entry.outcome,
                request_id=entry.request_id,
            )

    return publish


async def start_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    await db.start()
    await db.migrate()
    state = await _open_state(settings)
    events = EventBus(state)
    audit = AuditLog(AuditRepo(db))
    sync_box: list[CatalogSync] = []
    audit.on_record = _admin_events(events, lambda: sync_box[0])
    vault, credentials = await _open_vault(settings, db, audit, events)
    admin_token = AdminToken.load_or_create(
        settings.data_dir,
        settings.admin_token.get_secret_value() if settings.admin_token else None,
    )

    health = HealthTracker()
    health.add_listener(health_listener(events))
    catalog = Catalog(lambda cfg: create_adapter(cfg, credentials.lookup))
    engine = RoutingEngine(
        catalog,
        health,
        RoutingConfig.from_dict(
            {
                "default_mode": settings.default_mode,
                "max_budget_usd": settings.default_max_budget_usd,
                "max_latency_ms": settings.default_max_latency_ms,
            }
        ),
        timeout_s=settings.provider_timeout_secs,
    )
    engine.provider_gate = lambda pid: VAULT_LOCKED if credentials.needs_unlock(pid) else None
    bandit = Bandit()
    engine.bandit = bandit
    embeddings = EmbeddingRouter(catalog, health, timeout_s=settings.provider_timeout_secs)
    embeddings.provider_gate = engine.provider_gate
    control = ControlPlane(
        providers=ProviderRepo(db),
        models=ModelRepo(db),
        kv=SettingsRepo(db),
        catalog=catalog,
        engine=engine,
        credentials=credentials,
    )
    await control.load()
    aliases = AliasTable(
        AliasRepo(db),
        routable=lambda: [m.id for m in catalog.routable()],
        known=lambda mid: mid in catalog.models,
    )
    await aliases.load()
    sync_box.append(CatalogSync(state, control, (aliases.load,)))
    creds_file = load_credentials_file(settings.credentials_path)
    if creds_file is not None:
        await control.import_credentials(creds_file)
    await credentials.adopt()
    if settings.demo:
        await control.register_demo_if_empty()

    keyring = KeyRing(ApiKeyRepo(db), state=state)
    budgets = Budgets(state, KeySpendRepo(db))
    limiter = RateLimiter(state)
    guard = (Guard if settings.client_auth else OpenGuard)(keyring, budgets, limiter)
    if not settings.client_auth:
        log.warning("TOKENHUB_CLIENT_AUTH=false: /v1 routes accept requests without a key")

    metrics = Metrics(catalog=catalog, health=health)
    if vault is not None:
        metrics.bind_vault(lambda: vault.locked)
    tracing = (
        Tracing(settings.otel_service_name, settings.otel_endpoint)
        if settings.otel_enabled
        else Tracing.disabled()
    )
    engine.tracing = tracing
    logs = LogRepo(db)
    tsdb = TSDB(TSDBRepo(db), SettingsRepo(db))
    recorder: Recorder | None = None
    writer: DatabaseWriter | None = None
    if settings.recording:
        default_policy = Policy(
            mode=settings.default_mode,
            max_budget_usd=settings.default_max_budget_usd,
            max_latency_ms=settings.default_max_latency_ms,
        )
        # The sinks that write to the database do it from a thread of their own
        # (observe.offloop explains why); the rest share the serving loop's objects.
        writer = DatabaseWriter(db.url)
        sinks: list[BatchSink] = [
            writer.sink(LogSink(logs, default_policy=default_policy)),
            MetricsSink(metrics),
            EventSink(events),
            writer.sink(tsdb.sink()),
            BanditSink(bandit, default_policy),
        ]
        recorder = Recorder(sinks)
        metrics.bind_recorder(
            lambda: recorder.queue_depth, lambda: recorder.dropped, lambda: recorder.lost
        )

    services = Services(
        settings=settings,
        started_at=time.time(),
        db=db,
        state=state,
        catalog=catalog,
        health=health,
        engine=engine,
        control=control,
        credentials=credentials,
        vault=vault,
        admin_token=admin_token,
        audit=audit,
        throttle=UnlockThrottle(state),
        keyring=keyring,
        budgets=budgets,
        limiter=limiter,
        client_ip=ClientIP(settings.trusted_proxies),
        guard=guard,
        metrics=metrics,
        events=events,
        tracing=tracing,
        prober=Prober(catalog, health, credentials.lookup, interval_s=settings.probe_interval_secs),
        logs=logs,
        stats=StatsService(logs),
        tsdb=tsdb,
        recorder=recorder,
        writer=writer,
        bandit=bandit,
        bandit_store=BanditStore(bandit, BanditRepo(db)),
        aliases=aliases,
        idempotency=Idempotency(state),
        embeddings=embeddings,
        orchestrator=Orchestrator(engine),
        catalog_sync=sync_box[0],
    )
    await _start_background(services)
    return services


async def _start_background(s: Services) -> None:
    await s.budgets.load()
    await s.keyring.start()
    await s.budgets.start()
    if s.vault is not None:
        await s.vault.start()
    await s.bandit_store.start()
    if s.writer is not None:
        await s.writer.start()
    if s.recorder is not None:
        await s.recorder.start()
        await s.tsdb.start()
    await s.prober.start()
    await s.catalog_sync.start()


async def stop_services(s: Services) -> None:
    """Stop producers, drain the recorder into its sinks, then close the stores."""
    await s.catalog_sync.stop()
    await s.prober.stop()
    if s.recorder is not None:
        await s.recorder.stop()
        await s.tsdb.stop()
    if s.writer is not None:
        await s.writer.stop()
    await s.bandit_store.stop()
    await s.keyring.stop()
    await s.budgets.stop()
    if s.vault is not None:
        await s.vault.stop()
    await s.audit.stop()
    await s.events.stop()
    await s.tracing.stop()
    await s.catalog.close()
    await s.state.close()
    await s.db.close()
