"""Settings: every TOKENHUB_* variable, parsed and validated once at the entry point.

Nothing below the entry point reads ``os.environ``; components receive the
``Settings`` object (or the few values they need) explicitly.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

MODES = ("cheap", "normal", "high_confidence", "planning", "adversarial", "thompson")

_FORMS = {
    "listen_addr": "HOST:PORT, e.g. 127.0.0.1:8080",
    "log_level": "one of debug, info, warning, error",
    "provider_timeout_secs": "a positive number of seconds",
    "default_mode": "one of " + ", ".join(MODES),
    "default_max_budget_usd": "a number from 0 to 100",
    "default_max_latency_ms": "a whole number from 1 to 300000",
    "max_body_bytes": "a whole number of bytes from 1024 up",
    "demo": "true or false",
    "vault_enabled": "true or false",
    "client_auth": "true or false",
    "vault_password": "a password of at least 8 characters",
    "vault_auto_lock_secs": "a positive number of seconds",
    "admin_token": "a token of at least 16 characters",
    "rate_limit_rps": "a positive number of requests per second",
    "rate_limit_burst": "a number of requests, at least 1",
    "admin_rate_limit_rps": "a positive number of requests per second",
    "admin_rate_limit_burst": "a number of requests, at least 1",
    "trusted_proxies": "comma-separated IP addresses or CIDR ranges",
    "cors_origins": "comma-separated origins such as https://app.example.com, or *",
    "redis_url": "redis://host:port/db",
    "otel_enabled": "true or false",
    "otel_endpoint": "an http(s) URL of an OTLP/HTTP collector",
    "recording": "true or false",
    "probe_interval_secs": "a positive number of seconds",
}


class ConfigError(Exception):
    """A setting is invalid; the message names the variable and the accepted form."""


class Settings(BaseModel):
    """Parsed from an explicit mapping (``load_settings``) so tests pass their own env."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_addr: str = "127.0.0.1:8080"
    data_dir: Path = Path("./data")
    db_dsn: str = ""  # empty: SQLite file in data_dir
    credentials_file: Path = Path("~/.tokenhub/credentials")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    provider_timeout_secs: float = Field(30.0, gt=0)
    default_mode: str = "normal"
    default_max_budget_usd: float = Field(0.05, ge=0, le=100)
    default_max_latency_ms: int = Field(20000, ge=1, le=300000)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    demo: bool = True
    # Security (vault, admin token, client limits)
    client_auth: bool = True  # false: /v1 without keys (benchmarks, closed rigs only)
    vault_enabled: bool = True
    vault_password: SecretStr | None = Field(None, min_length=8)
    vault_auto_lock_secs: float = Field(1800.0, gt=0)
    admin_token: SecretStr | None = Field(None, min_length=16)
    rate_limit_rps: float = Field(60.0, gt=0)
    rate_limit_burst: float = Field(120.0, ge=1)
    admin_rate_limit_rps: float = Field(10.0, gt=0)
    admin_rate_limit_burst: float = Field(40.0, ge=1)
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    # Scale-out and observability
    redis_url: str = ""
    otel_enabled: bool = False
    otel_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    otel_service_name: str = "tokenhub"
    recording: bool = True  # request logs, metrics, TSDB, events (off only to measure)
    probe_interval_secs: float = Field(30.0, gt=0)

    @field_validator("trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(part.strip() for part in v.split(",") if part.strip())
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            ipaddress.ip_network(item, strict=False)  # ValueError names nothing secret
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str) -> str:
        if v and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("bad redis url")
        return v

    @field_validator("otel_endpoint")
    @classmethod
    def _otel(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("bad endpoint")
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("listen_addr")
    @classmethod
    def _addr(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bad address")
        return v

    @field_validator("default_mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in MODES:
            raise ValueError("unknown mode")
        return v

    @property
    def host(self) -> str:
        return self.listen_addr.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen_addr.rpartition(":")[2])

    @property
    def database_url(self) -> str:
        """The SQLAlchemy async URL for ``db_dsn`` (SQLite in the data dir by default)."""
        dsn = self.db_dsn
        if not dsn:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'tokenhub.db').resolve()}"
        for prefix in ("postgresql://", "postgres://"):
            if dsn.startswith(prefix):
                return "postgresql+asyncpg://" + dsn[len(prefix) :]
        if dsn.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + dsn[len("sqlite:///") :]
        return dsn

    @property
    def credentials_path(self) -> Path:
        return self.credentials_file.expanduser()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse settings from ``env`` (default: the process environment).

    Raises ``ConfigError`` naming the first bad variable and the accepted form.
    """
    source = dict(os.environ if env is None else env)
    values = {
        k[len("TOKENHUB_") :].lower(): v
        for k, v in source.items()
        if k.startswith("TOKENHUB_") and k[len("TOKENHUB_") :].lower() in Settings.model_fields
    }
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        form = _FORMS.get(field, err["msg"])
        raise ConfigError(f"invalid TOKENHUB_{field.upper()}: expected {form}") from None
