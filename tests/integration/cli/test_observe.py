"""tokenhubctl against a live gateway: logs, rewards, audit, stats, tsdb and the live
event stream."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from tests.fakes.upstreams import FakeOpenAI
from tests.integration.cli.runner import CLI, Ctl
from tests.integration.harness import Gateway, gateway_settings, run_gateway

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


async def _chat(g: Gateway) -> None:
    r = await g.client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text


async def _logged(g: Gateway) -> list[dict[str, Any]]:
    for _ in range(200):  # the recorder writes off the hot path, in batches
        logs: list[dict[str, Any]] = (await g.admin.get("/admin/v1/logs")).json()["logs"]
        if logs:
            return logs
        await asyncio.sleep(0.05)
    raise AssertionError("the request never reached the log")


async def test_logs_rewards_audit_and_stats(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """logs, rewards, audit and stats show a served request, as tables and as JSON."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("up", "openai", fake_openai.base_url)
        await g.add_model("m1", "up")
        await _chat(g)
        rid = (await _logged(g))[0]["request_id"]
        ctl = Ctl(g, tmp_path)
        results = await asyncio.gather(
            ctl("logs", "--limit", "5"), ctl.json("logs", "--model", "m1", "--status", "ok"),
            ctl("rewards"), ctl.json("rewards", "-n", "1", "--provider", "up"),
            ctl("audit", "--limit", "3"), ctl.json("audit", "--action", "model.create"),
            ctl("stats", "--window", "1h"), ctl.json("stats"),
        )  # fmt: skip
        logs_t, logs_j, rew_t, rew_j, audit_t, audit_j, stats_t, stats_j = results
        assert rid in logs_t.ok().out and [x["request_id"] for x in logs_j["logs"]] == [rid]
        assert rid in rew_t.ok().out and rew_j["rewards"][0]["model"] == "m1"
        assert "model.create" in audit_t.ok().out
        assert [e["action"] for e in audit_j["entries"]] == ["model.create"]
        assert "stats over 1h" in stats_t.ok().out
        assert stats_j["window"] == "24h"
        empty = await ctl("logs", "--model", "nope")
        assert "no requests" in empty.ok().out


async def test_tsdb_commands(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """tsdb metrics, query, prune and retention (show and set)."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("up", "openai", fake_openai.base_url)
        await g.add_model("m1", "up")
        await _chat(g)
        await _logged(g)
        ctl = Ctl(g, tmp_path)
        metrics = await ctl.json("tsdb", "metrics")
        for _ in range(100):
            if metrics["metrics"]:
                break
            await asyncio.sleep(0.05)
            metrics = await ctl.json("tsdb", "metrics")
        name = metrics["metrics"][0]["name"]
        table = await ctl("tsdb", "metrics")
        assert name in table.ok().out and "retention" in table.out
        query = await ctl.json("tsdb", "query", name, "--step", "1h", "--group-by", "model")
        assert query["metric"] == name and query["series"]
        shown = await ctl("tsdb", "query", name, "--model", "m1")
        assert f"{name} points" in shown.ok().out
        assert "pruned" in (await ctl("tsdb", "prune")).ok().out
        assert "deleted" in await ctl.json("tsdb", "prune")
        assert (await ctl.json("tsdb", "retention", "9"))["days"] == 9
        assert "retention: 9 days" in (await ctl("tsdb", "retention")).ok().out


async def test_events_prints_an_event_and_stops_on_ctrl_c(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """events prints the event a request produced and exits cleanly on SIGINT."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("up", "openai", fake_openai.base_url)
        await g.add_model("m1", "up")
        proc = await asyncio.create_subprocess_exec(
            *CLI, "events", "--types", "route_success",
            env=Ctl(g, tmp_path).env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        notice = await asyncio.wait_for(proc.stderr.readline(), 15)
        assert b"waiting for events" in notice
        await _chat(g)
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert line.startswith(b"route_success") and b"model=m1" in line
    assert proc.returncode in (0, 130) and b"Traceback" not in err


async def test_events_json_prints_raw_event(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """events --json prints each event as one raw JSON line."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("up", "openai", fake_openai.base_url)
        await g.add_model("m1", "up")
        proc = await asyncio.create_subprocess_exec(
            *CLI, "events", "--json", "--types", "route_success",
            env=Ctl(g, tmp_path).env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.wait_for(proc.stderr.readline(), 15)
        await _chat(g)
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 15)
    assert line.startswith(b'{"type":"route_success"') and b'"model":"m1"' in line
    assert proc.returncode in (0, 130)
