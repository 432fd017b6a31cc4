"""tokenhubctl against a live gateway: API keys, vault and admin-token commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.integration.cli.runner import Ctl, cli_env, run_cli
from tests.integration.harness import ADMIN_TOKEN, gateway_settings, run_gateway


async def test_apikey_commands(tmp_path: Path) -> None:
    """apikey create prints the key once; list, edit, rotate and delete work by id."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        ctl = Ctl(g, tmp_path)
        created = await ctl("apikey", "create", "ci-bot", "--scope", "chat", "--rpm", "60")
        assert "shown once" in created.ok().out
        key = created.out.strip().splitlines()[-1]
        r = await g.admin.get("/admin/v1/apikeys")
        rec = next(k for k in r.json()["apikeys"] if k["name"] == "ci-bot")
        assert key.startswith(rec["prefix"]) and rec["rpm"] == 60 and rec["scopes"] == ["chat"]
        made = await ctl.json("apikey", "create", "--spec", '{"name": "json-bot"}', "--budget", "5")
        assert made["key"] and made["monthly_budget_usd"] == 5.0
        table, listed = await asyncio.gather(ctl("apikey", "list"), ctl.json("apikey", "list"))
        assert "ci-bot" in table.ok().out and key not in table.out
        assert {"ci-bot", "json-bot"} <= {k["name"] for k in listed["apikeys"]}
        edited = await ctl.json("apikey", "edit", rec["id"], "--disabled", "--name", "renamed")
        assert edited["enabled"] is False and edited["name"] == "renamed"
        rotated = await ctl("apikey", "rotate", rec["id"])
        new_key = rotated.ok().out.strip().splitlines()[-1]
        assert new_key != key and "rotated" in rotated.out
        assert (await ctl.json("apikey", "rotate", made["id"]))["key"] != made["key"]
        assert (await ctl.json("apikey", "delete", rec["id"])) == {"deleted": rec["id"]}
        assert "deleted" in (await ctl("apikey", "delete", made["id"])).ok().out


async def test_vault_commands(tmp_path: Path) -> None:
    """vault init, lock, unlock (password prompted from stdin) and rotate change its state."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        ctl = Ctl(g, tmp_path)
        init = await ctl("vault", "init", "--password", "first-password")
        assert "vault initialized (unlocked)" in init.ok().out
        assert (await ctl.json("vault", "lock"))["vault_locked"] is True
        assert "locked" in (await ctl("status")).ok().out
        unlocked = await ctl("vault", "unlock", stdin="first-password\n")
        assert "vault unlocked" in unlocked.ok().out
        assert "first-password" not in unlocked.out + unlocked.err
        rotated = await ctl.json(
            "vault", "rotate", "--old-password", "first-password", "--new-password", "second-pw-2"
        )
        assert rotated["vault_initialized"] is True and "secrets_reencrypted" in rotated
        await ctl.json("vault", "lock")
        wrong = await ctl("vault", "unlock", "--password", "first-password")
        assert wrong.code != 0 and wrong.err.startswith("tokenhubctl: 4")
        assert wrong.err.count("\n") == 1 and "Traceback" not in wrong.err


async def test_admin_token_lookup_order(tmp_path: Path) -> None:
    """admin-token prints the env token, else <data dir>/.admin-token, else ~/.tokenhub,
    and names every place it looked when none has one."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    env = cli_env("http://127.0.0.1:9", home, token="env-token-0123456789")
    assert (await run_cli(env, "admin-token")).ok().out.strip() == "env-token-0123456789"
    bare = cli_env("http://127.0.0.1:9", home, token=None, TOKENHUB_DATA_DIR=str(data))
    missing = await run_cli(bare, "admin-token")
    assert missing.code != 0 and str(data / ".admin-token") in missing.err
    assert str(home / ".tokenhub" / ".admin-token") in missing.err
    (home / ".tokenhub").mkdir()
    (home / ".tokenhub" / ".admin-token").write_text("home-token-0123456789\n")
    assert (await run_cli(bare, "admin-token")).ok().out.strip() == "home-token-0123456789"
    data.mkdir()
    (data / ".admin-token").write_text("file-token-0123456789\n")
    assert (await run_cli(bare, "admin-token")).ok().out.strip() == "file-token-0123456789"


async def test_rotate_admin_token(tmp_path: Path) -> None:
    """rotate-admin-token prints the new token once; it works and the old one does not."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        ctl = Ctl(g, tmp_path)
        rotated = await ctl("rotate-admin-token")
        new = rotated.ok().out.strip().splitlines()[-1]
        assert "shown once" in rotated.out and new != ADMIN_TOKEN
        assert (await ctl("version")).code == 0  # /healthz needs no token
        assert (await ctl("status")).code != 0  # the old token is refused now
        ctl.env["TOKENHUB_ADMIN_TOKEN"] = new
        chosen = "operator-chosen-token-0123456789"
        again = await ctl("rotate-admin-token", chosen, "--json")
        current = again.json()["admin_token"]
        # The server may ignore a requested token; then the CLI says so and fails.
        assert (again.code == 0) == (current == chosen)
        async with httpx.AsyncClient(base_url=g.url) as http:
            r = await http.get("/admin/v1/info", headers={"Authorization": f"Bearer {current}"})
        assert r.status_code == 200
