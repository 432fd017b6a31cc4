"""The admin API needed to operate the gateway, over real HTTP."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.fakes.upstreams import FakeOpenAI
from tests.integration.harness import gateway_settings, run_gateway

SLASHED = "Qwen/Qwen2.5-Coder-32B-Instruct"


async def test_provider_and_model_crud_with_slashed_ids(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Providers and models can be created, listed, patched and deleted; ids may have slashes."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        a = g.admin
        r = await a.post(
            "/admin/v1/providers",
            json={
                "id": "vl",
                "type": "vllm",
                "base_url": [fake_openai.base_url],
                "api_key": "sk-secret-x",
            },
        )
        assert r.status_code == 201
        assert r.json()["has_api_key"] is True and "sk-secret-x" not in r.text
        r = await a.post(
            "/admin/v1/models",
            json={
                "id": SLASHED,
                "provider_id": "vl",
                "weight": 8,
                "max_context_tokens": 32768,
                "input_per_1k": 0.001,
                "output_per_1k": 0.002,
            },
        )
        assert r.status_code == 201, r.text
        # The demo models retired when the first real provider arrived.
        ids = [m["id"] for m in (await a.get("/admin/v1/models")).json()["models"]]
        assert ids == [SLASHED]
        r = await a.patch(f"/admin/v1/models/{SLASHED}", json={"weight": 3, "enabled": False})
        assert r.status_code == 200 and r.json()["weight"] == 3 and r.json()["enabled"] is False
        r = await a.patch("/admin/v1/providers/vl", json={"enabled": False})
        assert r.json()["enabled"] is False
        providers = (await a.get("/admin/v1/providers")).json()["providers"]
        assert [p["id"] for p in providers] == ["vl"]
        assert (await a.delete(f"/admin/v1/models/{SLASHED}")).status_code == 200
        assert (await a.delete(f"/admin/v1/models/{SLASHED}")).status_code == 404
        assert (await a.delete("/admin/v1/providers/vl")).status_code == 200
        assert (await a.get("/admin/v1/providers")).json()["providers"] == []


async def test_slashed_model_routes_by_hint(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A model id with slashes works as the client's model name."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("vl", "vllm", [fake_openai.base_url])
        await g.add_model(SLASHED, "vl", weight=2)
        await g.add_model("other", "vl", weight=9)
        c = openai.AsyncOpenAI(base_url=g.v1, api_key=g.api_key, max_retries=0)
        raw = await c.chat.completions.with_raw_response.create(
            model=SLASHED, messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-tokenhub-model"] == SLASHED
        assert fake_openai.requests[-1].json["model"] == SLASHED


async def test_admin_bad_input_is_4xx(tmp_path: Path) -> None:
    """Invalid admin payloads get 404/422 with a JSON error, never 500."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        a = g.admin
        cases = [
            ("post", "/admin/v1/providers", {"id": "x", "type": "nope"}, 422),
            ("post", "/admin/v1/providers", {"id": "", "type": "openai"}, 422),
            (
                "post",
                "/admin/v1/providers",
                {"id": "x", "type": "openai", "base_url": "ftp://a"},
                422,
            ),
            ("post", "/admin/v1/models", {"id": "m", "provider_id": "ghost"}, 422),
            (
                "post",
                "/admin/v1/models",
                {"id": "m", "provider_id": "demo-mock", "weight": 11},
                422,
            ),
            ("patch", "/admin/v1/models/nope/nope", {"weight": 1}, 404),
            ("patch", "/admin/v1/providers/ghost", {"enabled": True}, 404),
            ("put", "/admin/v1/routing-config", {"default_mode": "yolo"}, 400),
            ("put", "/admin/v1/routing-config", {"no_such_key": 1}, 400),
            ("post", "/admin/v1/routing/simulate", {"mode": "yolo"}, 400),
            ("post", "/admin/v1/routing/simulate", {"token_count": -5}, 422),
        ]
        for method, path, body, status in cases:
            r = await getattr(a, method)(path, json=body)
            assert r.status_code == status, (path, body, r.text)
            assert "error" in r.json()
        r = await a.post(
            "/admin/v1/providers", content=b"{broken", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422


async def test_routing_config_persists_and_applies(tmp_path: Path) -> None:
    """PUT routing-config takes effect at once and survives a restart."""
    settings = gateway_settings(tmp_path)
    async with run_gateway(settings) as g:
        r = await g.admin.put("/admin/v1/routing-config", json={"default_mode": "cheap"})
        assert r.status_code == 200 and r.json()["default_mode"] == "cheap"
        sim = (await g.admin.post("/admin/v1/routing/simulate", json={"token_count": 100})).json()
        assert sim["winner"] == "demo/tiny"  # cheap profile picks the cheapest
    async with run_gateway(settings) as g:
        assert (await g.admin.get("/admin/v1/routing-config")).json()["default_mode"] == "cheap"


async def test_simulate_explains_choice(tmp_path: Path) -> None:
    """Simulate returns the winner, the ordered eligible list and exclusions."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        r = await g.admin.post(
            "/admin/v1/routing/simulate",
            json={
                "mode": "high_confidence",
                "token_count": 10000,
                "min_weight": 5,
                "max_budget_usd": 1.0,
            },
        )
        sim = r.json()
        assert sim["winner"] == "demo/large"
        assert sim["eligible"][0]["model"] == "demo/large"
        assert "demo/tiny" in sim["excluded"] and "demo/small" in sim["excluded"]
        r = await g.admin.post("/admin/v1/routing/simulate", json={"model_hint": "demo/small"})
        assert r.json()["winner"] == "demo/small"
        models = (await g.admin.get("/admin/v1/engine/models")).json()["models"]
        assert {m["id"] for m in models} == {"demo/tiny", "demo/small", "demo/medium", "demo/large"}


async def test_discover_registers_models(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """discover lists the provider's models and can register them with weight 5."""
    fake_openai.models = ["disc/a", "disc/b"]
    async with run_gateway(gateway_settings(tmp_path)) as g:
        await g.add_provider("oa", "openai", fake_openai.base_url, api_key="k")
        r = await g.admin.get("/admin/v1/providers/oa/discover")
        assert r.json()["models"] == ["disc/a", "disc/b"] and r.json()["registered"] == []
        r = await g.admin.get("/admin/v1/providers/oa/discover", params={"register": "true"})
        assert sorted(r.json()["registered"]) == ["disc/a", "disc/b"]
        models = (await g.admin.get("/admin/v1/models")).json()["models"]
        assert {(m["id"], m["weight"]) for m in models} == {("disc/a", 5), ("disc/b", 5)}
        assert (await g.admin.get("/admin/v1/providers/ghost/discover")).status_code == 404


async def test_openapi_documents_every_route(tmp_path: Path) -> None:
    """/openapi.json lists the hot routes next to the FastAPI ones."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        schema = (await g.admin.get("/openapi.json")).json()
        paths = schema["paths"]
        for hot in ("/v1/chat/completions", "/v1/messages", "/v1/chat", "/v1/embeddings"):
            body = paths[hot]["post"]["requestBody"]["content"]["application/json"]["schema"]
            assert body["type"] == "object" and body["required"]
        assert "/v1/plan" in paths and "/v1/models" in paths
        assert "/admin/v1/providers" in paths and "/admin/v1/apikeys" in paths
