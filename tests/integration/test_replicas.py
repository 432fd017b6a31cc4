"""Scale-out: two gateway replicas sharing PostgreSQL and Redis behave as one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import openai

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.harness import Gateway, gateway_settings, run_gateway

MSG = [{"role": "user", "content": "hello"}]
T = TypeVar("T")


@asynccontextmanager
async def two_replicas(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two gateways on one PostgreSQL database and one Redis, as behind a balancer."""
    env = {"db_dsn": pg_dsn, "redis_url": redis_url, "demo": "false"}
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(run_gateway(gateway_settings(tmp_path / "a", **env)))
        b = await stack.enter_async_context(run_gateway(gateway_settings(tmp_path / "b", **env)))
        yield a, b


async def eventually(probe: Callable[[], Awaitable[T]], within_s: float = 5.0) -> T:
    """The probe's result once it stops failing (the catalogue travels over Redis)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await probe()
        except (openai.APIStatusError, AssertionError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _routes_on(g: Gateway, model: str) -> None:
    models = (await g.admin.get("/admin/v1/models")).json()["models"]
    assert model in [m["id"] for m in models]


def client(g: Gateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=g.v1, api_key=key, max_retries=0)


async def test_keys_and_revocation_cross_replicas(
    tmp_path: Path, pg_dsn: str, redis_url: str, fake_openai: FakeOpenAI
) -> None:
    """A key made on one replica works on the other; revoking it stops both at once."""
    async with two_replicas(tmp_path, pg_dsn, redis_url) as (a, b):
        await a.add_provider("oa", "openai", fake_openai.base_url)
        await a.add_model("m", "oa")
        key = await a.new_key(name="shared")
        reply = await eventually(
            lambda: client(b, key).chat.completions.create(model="m", messages=MSG)
        )
        assert reply.choices[0].message.content
        key_id = next(
            k["id"]
            for k in (await a.admin.get("/admin/v1/apikeys")).json()["apikeys"]
            if k["name"] == "shared"
        )
        assert (await a.admin.delete(f"/admin/v1/apikeys/{key_id}")).status_code == 200
        for _ in range(50):  # the revocation travels over Redis pub/sub
            r = await b.client.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": MSG},
                headers={"Authorization": f"Bearer {key}"},
            )
            if r.status_code == 401:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 401


async def test_budget_holds_across_replicas(
    tmp_path: Path, pg_dsn: str, redis_url: str, fake_openai: FakeOpenAI
) -> None:
    """Concurrent requests split over two replicas never spend past the key's budget."""
    fake_openai.script(*[Reply(usage=(1, 5), delay_s=0.05) for _ in range(40)])
    async with two_replicas(tmp_path, pg_dsn, redis_url) as (a, b):
        await a.add_provider("oa", "openai", fake_openai.base_url)
        await a.add_model("m", "oa", input_per_1k=1.0, output_per_1k=2.0)
        key = await a.new_key(name="budgeted", monthly_budget_usd=0.1)
        await eventually(lambda: _routes_on(b, "m"))

        async def one(g: Gateway) -> int:
            async with httpx.AsyncClient(base_url=g.url, timeout=20) as c:
                r = await c.post(
                    "/v1/chat/completions",
                    json={"model": "m", "messages": MSG, "max_tokens": 5},
                    headers={"Authorization": f"Bearer {key}"},
                )
                return r.status_code

        statuses = await asyncio.gather(*(one(a if i % 2 else b) for i in range(40)))
        ok = statuses.count(200)
        assert 0 < ok < 40 and set(statuses) == {200, 429}
        keys = (await b.admin.get("/admin/v1/apikeys")).json()["apikeys"]
        spent = next(k for k in keys if k["name"] == "budgeted")["month_to_date_spend_usd"]
        assert spent <= 0.1 + 1e-9
        assert abs(spent - ok * 0.011) < 1e-9  # (1 in + 5 out) at $1/$2 per 1k


async def test_events_reach_subscribers_of_the_other_replica(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    """An admin change on one replica shows on the other's event stream (Redis bus)."""
    async with two_replicas(tmp_path, pg_dsn, redis_url) as (a, b):
        seen: list[dict[str, object]] = []

        async def listen() -> None:
            async with b.admin.stream("GET", "/admin/v1/events", timeout=10) as r:
                event = None
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "admin_change":
                        seen.append(json.loads(line[6:]))
                        return

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.3)  # subscribed
        await a.add_provider("p-evt", "vllm", "http://127.0.0.1:9")
        await asyncio.wait_for(task, 5)
        assert seen and seen[0]["action"] == "provider.create"
        assert seen[0]["resource"] == "p-evt"


async def test_catalogue_and_aliases_follow_changes_on_the_other_replica(
    tmp_path: Path, pg_dsn: str, redis_url: str, fake_openai: FakeOpenAI
) -> None:
    """Models, routing config and aliases changed on one replica apply on the other."""
    async with two_replicas(tmp_path, pg_dsn, redis_url) as (a, b):
        await a.add_provider("oa", "openai", fake_openai.base_url)
        await a.add_model("m1", "oa", weight=2)
        await a.add_model("m2", "oa", weight=8)
        assert (
            await a.admin.put("/admin/v1/aliases/pick", json={"model": "m1"})
        ).status_code == 200
        r = await a.admin.put("/admin/v1/routing-config", json={"default_mode": "cheap"})
        assert r.status_code == 200

        async def settled() -> None:
            cfg = (await b.admin.get("/admin/v1/routing-config")).json()
            assert cfg["default_mode"] == "cheap"
            aliases = (await b.admin.get("/admin/v1/aliases")).json()["aliases"]
            assert [x["name"] for x in aliases] == ["pick"]

        await eventually(settled)
        raw = await client(b, b.api_key).chat.completions.with_raw_response.create(
            model="pick", messages=MSG
        )
        assert raw.headers["x-tokenhub-model"] == "m1"
        assert raw.headers["x-tokenhub-reason"] == "alias:pick"
        assert (await a.admin.delete("/admin/v1/models/m1")).status_code == 200

        async def gone() -> None:
            ids = [m["id"] for m in (await b.admin.get("/admin/v1/engine/models")).json()["models"]]
            assert ids == ["m2"]

        await eventually(gone)
