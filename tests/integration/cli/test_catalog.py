"""tokenhubctl against a live gateway: server, provider, model, routing and alias commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fakes.upstreams import FakeOpenAI
from tests.integration.cli.runner import Ctl
from tests.integration.harness import gateway_settings, run_gateway

SLASHED = "Qwen/Qwen2.5-Coder-32B-Instruct"


async def test_version_status_and_health(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """version, status and health print tables, and raw JSON with --json."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("up", "openai", fake_openai.base_url)
        await g.add_model("m1", "up")
        ctl = Ctl(g, tmp_path)
        version, version_j, status, status_j, health, health_j = await asyncio.gather(
            ctl("version"), ctl.json("version"), ctl("status"), ctl.json("status"),
            ctl("health"), ctl.json("health"),
        )  # fmt: skip
        assert "tokenhubctl 0.1.0, server 0.1.0" in version.ok().out
        assert version_j == {"client": "0.1.0", "server": "0.1.0"}
        assert "vault" in status.ok().out and "not initialized" in status.out
        assert g.url in status.out
        assert status_j["counts"] == {"providers": 1, "models": 1, "apikeys": 1}
        assert status_j["vault"]["vault_enabled"] is True
        assert "up" in health.ok().out and "openai" in health.out
        assert [p["id"] for p in health_j["providers"]] == ["up"]


async def test_installed_console_script_runs(tmp_path: Path) -> None:
    """The tokenhubctl console script is installed with the package and talks to the server."""
    script = Path(__file__).parents[3] / ".venv" / "bin" / "tokenhubctl"
    async with run_gateway(gateway_settings(tmp_path)) as g:
        env = Ctl(g, tmp_path).env
        proc = await asyncio.create_subprocess_exec(
            str(script), "version", "--json", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
    assert proc.returncode == 0 and b'"server": "0.1.0"' in out


async def test_provider_commands(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """provider add (flags), list, edit (@file spec), discover, discover --register, delete."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        ctl = Ctl(g, tmp_path)
        flags = ["--type", "openai", "--base-url", fake_openai.base_url, "--api-key", "sk-cli-x"]
        add = await ctl("provider", "add", "--id", "up", *flags)
        assert "provider up saved" in add.ok().out
        table, listed = await asyncio.gather(ctl("provider", "list"), ctl.json("provider", "list"))
        assert "up" in table.ok().out and "sk-cli-x" not in table.out
        assert listed["providers"][0]["has_api_key"] is True
        spec = tmp_path / "edit.json"
        spec.write_text('{"enabled": false}')
        edited = await ctl.json("provider", "edit", "up", f"@{spec}")
        assert edited["enabled"] is False
        await ctl.json("provider", "edit", "up", "--enabled")
        found = await ctl.json("provider", "discover", "up")
        assert found["models"] and found["registered"] in ([], 0, None, False)
        shown = await ctl("provider", "discover", "up", "--register")
        assert "fake-model" in shown.ok().out
        models = (await g.admin.get("/admin/v1/models")).json()["models"]
        assert "fake-model" in [m["id"] for m in models]
        deleted = await ctl.json("provider", "delete", "up")
        assert deleted == {"deleted": "up"}


async def test_model_commands_with_slashed_ids(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """model add (JSON on stdin), list, edit (flags), disable, enable and delete a slashed id."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("up", "openai", fake_openai.base_url)
        ctl = Ctl(g, tmp_path)
        spec = f'{{"id": "{SLASHED}", "provider_id": "up", "weight": 8}}'
        added = await ctl("model", "add", "-", "--input-per-1k", "0.5", stdin=spec)
        assert f"model {SLASHED} saved" in added.ok().out
        table, listed = await asyncio.gather(ctl("model", "list"), ctl.json("model", "list"))
        assert SLASHED in table.ok().out
        model = next(m for m in listed["models"] if m["id"] == SLASHED)
        assert model["weight"] == 8 and model["input_per_1k"] == 0.5
        edited = await ctl.json("model", "edit", SLASHED, "--weight", "3", "--max-context", "4096")
        assert edited["weight"] == 3 and edited["max_context_tokens"] == 4096
        disabled = await ctl("model", "disable", SLASHED)
        assert "disabled" in disabled.ok().out
        assert (await ctl.json("model", "enable", SLASHED))["enabled"] is True
        added2 = await ctl.json("model", "add", "--id", "m2", "--provider", "up", "--disabled")
        assert added2["enabled"] is False
        assert "deleted" in (await ctl("model", "delete", SLASHED)).ok().out
        ids = [m["id"] for m in (await g.admin.get("/admin/v1/models")).json()["models"]]
        assert ids == ["m2"]


async def test_routing_simulate_and_engine(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """routing get/set, simulate and engine models show and change what routing uses."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("up", "openai", fake_openai.base_url)
        await g.add_model("m1", "up", weight=7)
        ctl = Ctl(g, tmp_path)
        got = await ctl.json("routing", "get")
        assert got["default_mode"] == "normal"
        changed = await ctl.json("routing", "set", '{"max_attempts": 3}', "--set", "min_weight=1")
        assert changed["max_attempts"] == 3 and changed["min_weight"] == 1
        table = await ctl("routing", "get")
        assert "max_attempts" in table.ok().out
        sim_t, sim_j, eng_t, eng_j = await asyncio.gather(
            ctl("simulate", "--tokens", "100"), ctl.json("simulate", "--mode", "cheap"),
            ctl("engine", "models"), ctl.json("engine", "models"),
        )  # fmt: skip
        assert "winner" in sim_t.ok().out and "m1" in sim_t.out
        assert sim_j["winner"] == "m1"
        assert "m1" in eng_t.ok().out
        assert [m["id"] for m in eng_j["models"]] == ["m1"]


async def test_alias_commands(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """alias set (weighted targets, slashed name), list and delete."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("up", "openai", fake_openai.base_url)
        await g.add_model("m1", "up")
        await g.add_model("m2", "up")
        ctl = Ctl(g, tmp_path)
        assert "alias team/fast" in (await ctl("alias", "set", "team/fast", "m1=3", "m2")).ok().out
        table, listed = await asyncio.gather(ctl("alias", "list"), ctl.json("alias", "list"))
        assert "team/fast" in table.ok().out and "m1=3" in table.out
        alias = next(a for a in listed["aliases"] if a["name"] == "team/fast")
        assert {t["model"]: t["weight"] for t in alias["targets"]} == {"m1": 3.0, "m2": 1.0}
        assert (await ctl("alias", "delete", "team/fast")).ok().code == 0
        listed = await ctl.json("alias", "list")
        assert "team/fast" not in [a["name"] for a in listed["aliases"]]
