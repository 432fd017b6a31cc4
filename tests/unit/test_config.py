"""Settings are parsed once from an explicit mapping and validated with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenhub.config import ConfigError, load_settings


def test_defaults() -> None:
    """With no variables set, the documented defaults apply."""
    s = load_settings({})
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.data_dir == Path("./data")
    assert s.provider_timeout_secs == 30
    assert s.default_mode == "normal"
    assert s.default_max_budget_usd == 0.05
    assert s.default_max_latency_ms == 20000
    assert s.max_body_bytes == 10 * 1024 * 1024
    assert s.demo is True
    assert s.database_url.startswith("sqlite+aiosqlite:///") and s.database_url.endswith(
        "tokenhub.db"
    )


def test_postgres_dsn_uses_asyncpg() -> None:
    """A postgresql:// DSN becomes an asyncpg SQLAlchemy URL."""
    s = load_settings({"TOKENHUB_DB_DSN": "postgresql://u@h:5432/db"})
    assert s.database_url == "postgresql+asyncpg://u@h:5432/db"


def test_values_parsed() -> None:
    """Variables are read with their TOKENHUB_ names and converted."""
    s = load_settings(
        {
            "TOKENHUB_LISTEN_ADDR": "0.0.0.0:9000",
            "TOKENHUB_DEMO": "false",
            "TOKENHUB_LOG_LEVEL": "DEBUG",
            "TOKENHUB_DEFAULT_MODE": "cheap",
            "OTHER": "ignored",
        }
    )
    assert (s.host, s.port, s.demo, s.log_level, s.default_mode) == (
        "0.0.0.0",
        9000,
        False,
        "debug",
        "cheap",
    )


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TOKENHUB_LISTEN_ADDR", "8080"),
        ("TOKENHUB_LISTEN_ADDR", "host:99999"),
        ("TOKENHUB_LOG_LEVEL", "loud"),
        ("TOKENHUB_PROVIDER_TIMEOUT_SECS", "0"),
        ("TOKENHUB_DEFAULT_MODE", "fast"),
        ("TOKENHUB_DEFAULT_MAX_LATENCY_MS", "abc"),
        ("TOKENHUB_MAX_BODY_BYTES", "10"),
        ("TOKENHUB_DEMO", "perhaps"),
    ],
)
def test_invalid_values_name_the_variable(var: str, value: str) -> None:
    """An invalid value raises ConfigError naming the variable and the accepted form."""
    with pytest.raises(ConfigError) as exc:
        load_settings({var: value})
    assert var in str(exc.value) and "expected" in str(exc.value)
