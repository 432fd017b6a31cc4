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


def test_security_settings_parsed_and_secrets_hidden() -> None:
    """Lists are comma-separated; secret settings never show in repr or str."""
    s = load_settings(
        {
            "TOKENHUB_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "TOKENHUB_CORS_ORIGINS": "https://a.example,https://b.example",
            "TOKENHUB_VAULT_PASSWORD": "hunter2-hunter2",
            "TOKENHUB_ADMIN_TOKEN": "admin-token-0123456789",
        }
    )
    assert s.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.vault_password is not None
    assert s.vault_password.get_secret_value() == "hunter2-hunter2"
    for text in (repr(s), str(s)):
        assert "hunter2" not in text and "admin-token-0123" not in text


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TOKENHUB_TRUSTED_PROXIES", "not-an-ip"),
        ("TOKENHUB_VAULT_PASSWORD", "short"),
        ("TOKENHUB_REDIS_URL", "http://x"),
        ("TOKENHUB_RATE_LIMIT_RPS", "0"),
    ],
)
def test_invalid_security_values(var: str, value: str) -> None:
    """Bad security settings stop start-up naming the variable, never echoing the value."""
    with pytest.raises(ConfigError) as exc:
        load_settings({var: value})
    assert var in str(exc.value) and value not in str(exc.value)
