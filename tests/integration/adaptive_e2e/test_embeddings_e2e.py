"""POST /v1/embeddings through the real gateway with the official OpenAI SDK: a fake
OpenAI provider and the mock provider, scopes, request logs and chat isolation."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from tests.fakes.upstreams import FakeOpenAI, fake_embedding
from tests.integration.adaptive_e2e.support import (
    gateway,
    log_row,
    new_key,
    oai,
    upstream_models,
    user,
)
from tests.integration.harness import Gateway


@pytest.fixture
async def g(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[Gateway]:
    """Chat models big/small plus embedding models on the fake and on the mock."""
    async with gateway(tmp_path, fake_openai) as gw:
        await gw.add_model("embed-oa", "oa", kind="embedding", input_per_1k=0.0001)
        await gw.add_provider("mk", "mock", "", options={"dims": 8})
        await gw.add_model("embed-mock", "mk", kind="embedding")
        yield gw


async def test_float_embeddings_from_the_fake(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """encoding_format=float returns the fake's vectors in order, with usage."""
    async with oai(g) as client:
        resp = await client.embeddings.create(
            model="embed-oa", input=["ab", "abcd"], encoding_format="float"
        )
    assert [d.embedding for d in resp.data] == [fake_embedding("ab", 4), fake_embedding("abcd", 4)]
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.model == "embed-oa" and resp.usage.prompt_tokens == 10
    (rec,) = fake_openai.requests
    assert rec.path == "/v1/embeddings" and rec.json["encoding_format"] == "float"


async def test_base64_embeddings_round_trip(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """The SDK's default (base64 on the wire) decodes to the same floats."""
    async with oai(g) as client:
        resp = await client.embeddings.create(model="embed-oa", input="hello", dimensions=6)
    assert resp.data[0].embedding == fake_embedding("hello", 6)
    assert fake_openai.requests[0].json["encoding_format"] == "base64"


async def test_mock_provider_embeddings(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """The mock provider answers unit vectors, equal for equal inputs, in both encodings."""
    async with oai(g) as client:
        a = await client.embeddings.create(
            model="embed-mock", input=["same", "same", "other"], encoding_format="float"
        )
        b = await client.embeddings.create(model="embed-mock", input="same")
    vectors = [d.embedding for d in a.data]
    assert len(vectors[0]) == 8 and math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-6)
    assert vectors[0] == vectors[1] != vectors[2]
    assert b.data[0].embedding == pytest.approx(vectors[0], rel=1e-6)
    assert fake_openai.requests == []


async def test_embeddings_need_the_embeddings_scope(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """A chat-only key gets 403 on /v1/embeddings; an embeddings key is served."""
    chat_only, _ = await new_key(g, "chat")
    emb_only, _ = await new_key(g, "embeddings")
    async with oai(g, chat_only) as client:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.embeddings.create(model="embed-oa", input="x")
    assert denied.value.status_code == 403
    async with oai(g, emb_only) as client:
        resp = await client.embeddings.create(model="embed-oa", input="x")
        assert len(resp.data) == 1
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="big", messages=user("hi"))
    assert upstream_models(fake_openai) == ["embed-oa"]


async def test_embeddings_are_logged(g: Gateway) -> None:
    """An embeddings request appears in /admin/v1/logs with surface embeddings."""
    async with oai(g) as client:
        raw = await client.embeddings.with_raw_response.create(
            model="embed-oa", input="log me", extra_headers={"X-Request-ID": "emb-log-1"}
        )
    assert raw.headers["x-tokenhub-model"] == "embed-oa"
    row = await log_row(g, "emb-log-1")
    assert (row["surface"], row["model"], row["status"]) == ("embeddings", "embed-oa", 200)
    assert row["tokens_in"] == 10 and row["cost_usd"] > 0


async def test_chat_never_routes_to_embedding_models(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """Chat traffic (cheap mode, an embedding hint, "*") never lands on an embedding model."""
    bodies = [
        {"messages": user("@@tokenhub mode=cheap\nhi")},
        {"model": "embed-oa", "messages": user("hi")},
        {"model": "embed-mock", "messages": user("hi")},
        *[{"model": "*", "messages": user("hi")} for _ in range(4)],
    ]
    served = []
    for body in bodies:
        r = await g.client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        served.append(r.headers["x-tokenhub-model"])
    assert set(served) <= {"big", "small"}
    assert {r.path for r in fake_openai.requests} == {"/v1/chat/completions"}
