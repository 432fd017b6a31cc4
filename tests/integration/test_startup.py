"""Start-up: settings, the credentials file, and the store on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.fakes.upstreams import FakeOpenAI
from tests.integration.harness import gateway_settings, run_gateway
from tokenhub.app import start_services
from tokenhub.credentials import CredentialsError


def write_credentials(path: Path, doc: dict[str, object], mode: int = 0o600) -> None:
    path.write_text(json.dumps(doc))
    path.chmod(mode)


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("TOKENHUB_LISTEN_ADDR", "nowhere", "HOST:PORT"),
        ("TOKENHUB_DEFAULT_MODE", "yolo", "cheap"),
        ("TOKENHUB_PROVIDER_TIMEOUT_SECS", "-3", "positive"),
        ("TOKENHUB_DEMO", "maybe", "true or false"),
        ("TOKENHUB_DEFAULT_MAX_BUDGET_USD", "1000", "0 to 100"),
    ],
)
def test_invalid_setting_stops_startup(tmp_path: Path, var: str, value: str, needle: str) -> None:
    """An invalid variable stops start-up naming the variable and the accepted form."""
    env = {**os.environ, "TOKENHUB_DATA_DIR": str(tmp_path), var: value}
    proc = subprocess.run(
        [sys.executable, "-m", "tokenhub"], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert var in proc.stderr and needle in proc.stderr


async def test_credentials_file_upserted_idempotently(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """The credentials file's providers and models load at every start without duplicates."""
    fake_openai.models = ["auto/one", "auto/two"]
    settings = gateway_settings(tmp_path)
    write_credentials(
        settings.credentials_path,
        {
            "providers": [
                {
                    "id": "oa",
                    "type": "openai",
                    "base_url": fake_openai.base_url,
                    "api_key": "sk-from-file",
                    "autoload_models": True,
                },
            ],
            "models": [
                {
                    "id": "auto/one",
                    "provider_id": "oa",
                    "weight": 9,
                    "max_context_tokens": 64000,
                    "input_per_1k": 0.001,
                    "output_per_1k": 0.002,
                }
            ],
        },
    )
    for _ in range(2):
        async with run_gateway(settings) as g:
            models = {m["id"]: m for m in (await g.admin.get("/admin/v1/models")).json()["models"]}
            assert set(models) == {"auto/one", "auto/two"}
            assert models["auto/one"]["weight"] == 9 and models["auto/two"]["weight"] == 5
            c = openai.AsyncOpenAI(base_url=g.v1, api_key=g.api_key, max_retries=0)
            await c.chat.completions.create(
                model="auto/one", messages=[{"role": "user", "content": "hi"}]
            )
            assert fake_openai.requests[-1].headers["Authorization"] == "Bearer sk-from-file"


async def test_credentials_file_with_open_mode_is_refused(tmp_path: Path) -> None:
    """A credentials file readable by others stops start-up with a chmod hint."""
    settings = gateway_settings(tmp_path)
    write_credentials(settings.credentials_path, {"providers": [], "models": []}, mode=0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        await start_services(settings)
    env = {
        **os.environ,
        "TOKENHUB_DATA_DIR": str(tmp_path / "d"),
        "TOKENHUB_CREDENTIALS_FILE": str(settings.credentials_path),
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tokenhub"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "chmod 600" in proc.stderr


async def test_gateway_on_postgres(pg_dsn: str, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """The same gateway runs on PostgreSQL and keeps its catalogue across restarts."""
    settings = gateway_settings(tmp_path, db_dsn=pg_dsn, demo="false")
    async with run_gateway(settings) as g:
        await g.add_provider("oa", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("Org/Model-1", "oa", weight=7)
        r = await g.admin.put("/admin/v1/routing-config", json={"default_mode": "high_confidence"})
        assert r.status_code == 200
    async with run_gateway(settings) as g:
        models = (await g.admin.get("/admin/v1/models")).json()["models"]
        assert [m["id"] for m in models] == ["Org/Model-1"]
        cfg = (await g.admin.get("/admin/v1/routing-config")).json()
        assert cfg["default_mode"] == "high_confidence"
        # The key was only in memory: after a restart the provider has none (vault: later).
        providers = (await g.admin.get("/admin/v1/providers")).json()["providers"]
        assert providers[0]["has_api_key"] is False
