"""tokenhubctl failure paths: one clear line on stderr and a non-zero exit code."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import free_port
from tests.integration.cli.runner import Ctl, Result, cli_env, run_cli
from tests.integration.harness import gateway_settings, run_gateway


def one_line(r: Result) -> str:
    assert r.code != 0 and r.out == "", r
    assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    return r.err


async def test_wrong_and_missing_token_explain_the_admin_token(tmp_path: Path) -> None:
    """A rejected or missing token exits non-zero with how to get the admin token."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        wrong = cli_env(g.url, tmp_path, token="not-the-token-0123456789")
        none = cli_env(g.url, tmp_path, token=None)
        results = await asyncio.gather(
            run_cli(wrong, "status"), run_cli(wrong, "provider", "list", "--json"),
            run_cli(none, "apikey", "list"),
        )  # fmt: skip
    for r in results:
        err = one_line(r)
        assert "401" in err and "admin token" in err and "tokenhubctl admin-token" in err


async def test_server_down_names_the_url(tmp_path: Path) -> None:
    """With nothing listening, the error names the URL tried and says it may not be running."""
    url = f"http://127.0.0.1:{free_port()}"
    env = cli_env(url, tmp_path)
    for r in await asyncio.gather(run_cli(env, "version"), run_cli(env, "model", "list")):
        err = one_line(r)
        assert url in err and "not be running" in err


async def test_unknown_ids_show_the_server_message(tmp_path: Path) -> None:
    """An unknown id fails with the server's own 4xx message."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        ctl = Ctl(g, tmp_path)
        results = await asyncio.gather(
            ctl("model", "delete", "no/such-model"), ctl("provider", "edit", "ghost", "--enabled"),
            ctl("apikey", "rotate", "nokey"), ctl("model", "enable", "ghost"),
        )  # fmt: skip
    model, provider, key, enable = (one_line(r) for r in results)
    assert model.startswith("tokenhubctl: 404") and "no/such-model" in model
    assert provider.startswith("tokenhubctl: 404") and "ghost" in provider
    assert key.startswith("tokenhubctl: 404")
    assert "ghost" in enable


async def test_bad_input_is_reported_before_or_by_the_server(tmp_path: Path) -> None:
    """Bad JSON, a missing file, empty bodies and invalid values each fail with one line."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        ctl = Ctl(g, tmp_path)
        results = await asyncio.gather(
            ctl("model", "add", "{not json"), ctl("model", "add", "@/nonexistent/spec.json"),
            ctl("routing", "set"), ctl("model", "add", "--id", "x", "--provider", "nope"),
            ctl("tsdb", "retention", "0"), ctl("alias", "set", "a", "m=heavy"),
        )  # fmt: skip
    bad_json, missing, empty, unknown, retention, weight = (one_line(r) for r in results)
    assert "invalid JSON" in bad_json
    assert "/nonexistent/spec.json" in missing
    assert "nothing to send" in empty
    assert "422" in unknown and "nope" in unknown
    assert retention.startswith("tokenhubctl: 422")
    assert "bad weight" in weight
