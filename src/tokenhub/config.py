"""Settings: every TOKENHUB_* variable, parsed and validated once at the entry point.

Nothing below the entry point reads ``os.environ``; components receive the
``Settings`` object (or the few values they need) explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MODES = ("cheap", "normal", "high_confidence", "planning", "adversarial")

_FORMS = {
    "listen_addr": "HOST:PORT, e.g. 127.0.0.1:8080",
    "log_level": "one of debug, info, warning, error",
    "provider_timeout_secs": "a positive number of seconds",
    "default_mode": "one of " + ", ".join(MODES),
    "default_max_budget_usd": "a number from 0 to 100",
    "default_max_latency_ms": "a whole number from 1 to 300000",
    "max_body_bytes": "a whole number of bytes from 1024 up",
    "demo": "true or false",
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
