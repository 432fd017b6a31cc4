"""The embeddings capability of the OpenAI-compatible adapters and the mock."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply, fake_embedding
from tests.unit.providers.conftest import API_KEY, FakeClock, dead_url, make_adapter
from tokenhub.errors import ProviderError
from tokenhub.providers.base import Adapter
from tokenhub.providers.embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    is_embedder,
    is_embedding_model,
    pack_vector,
    unpack_vector,
)
from tokenhub.providers.mock import mock_vector
from tokenhub.types import Dialect, ErrorClass, ModelConfig, Target


def target(provider: str = "openai", timeout_s: float = 5.0) -> Target:
    """A target for embedding model ``e1`` (upstream name ``up-e1``)."""
    model = ModelConfig(
        id="e1", provider_id=provider, upstream_id="up-e1", labels={"kind": "embedding"}
    )
    return Target(model=model, request_id="req-emb", timeout_s=timeout_s)


def openai_request(body: dict[str, Any]) -> EmbeddingRequest:
    """A request as the OpenAI surface would hand it over (raw body kept)."""
    raw = {"model": "client-name", **body}
    inputs = raw["input"] if isinstance(raw["input"], list) else [raw["input"]]
    return EmbeddingRequest(inputs=inputs, model="client-name", dialect=Dialect.OPENAI, raw=raw)


async def embedder(kind: str, url: str, **options: object) -> Adapter:
    """An adapter of ``kind`` against ``url``."""
    return make_adapter(kind, [url], FakeClock(), **options)


async def embed(adapter: Adapter, req: EmbeddingRequest, tgt: Target) -> EmbeddingResponse:
    """``adapter.embed``, after checking the adapter has the capability."""
    assert is_embedder(adapter)
    return await adapter.embed(req, tgt)


@pytest.fixture(params=("openai", "vllm"))
async def compat(
    request: pytest.FixtureRequest, fake_openai: FakeOpenAI
) -> AsyncIterator[tuple[str, Adapter]]:
    """Each OpenAI-compatible adapter pointed at the fake."""
    adapter = await embedder(request.param, fake_openai.base_url)
    try:
        yield request.param, adapter
    finally:
        await adapter.close()


async def test_compat_embed_posts_to_embeddings_with_wire_model(
    compat: tuple[str, Adapter], fake_openai: FakeOpenAI
) -> None:
    """embed POSTs the client's body to /v1/embeddings with the model swapped."""
    kind, adapter = compat
    fake_openai.script(Reply(usage=(7, 0)))
    req = openai_request({"input": ["ab", "cdef"], "extra_field": 1})
    resp = await embed(adapter, req, target(kind))
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.json == {"model": "up-e1", "input": ["ab", "cdef"], "extra_field": 1}
    assert sent.headers["X-Request-ID"] == "req-emb"
    assert resp.vectors == [fake_embedding("ab", 4), fake_embedding("cdef", 4)]
    assert resp.usage.prompt_tokens == 7
    assert resp.dialect is Dialect.OPENAI
    assert resp.raw is not None and orjson.loads(resp.raw)["model"] == "up-e1"


async def test_openai_embed_sends_the_api_key(fake_openai: FakeOpenAI) -> None:
    """The openai adapter authenticates embeddings like chat, with a bearer key."""
    adapter = await embedder("openai", fake_openai.base_url)
    try:
        await embed(adapter, openai_request({"input": "x"}), target())
    finally:
        await adapter.close()
    assert fake_openai.requests[-1].headers["Authorization"] == f"Bearer {API_KEY}"


async def test_compat_embed_decodes_base64_vectors(
    compat: tuple[str, Adapter], fake_openai: FakeOpenAI
) -> None:
    """Base64 vectors from the upstream are decoded as little-endian float32."""
    kind, adapter = compat
    req = openai_request({"input": "hello", "encoding_format": "base64", "dimensions": 6})
    resp = await embed(adapter, req, target(kind))
    assert isinstance(orjson.loads(resp.raw)["data"][0]["embedding"], str)
    assert resp.vectors == [fake_embedding("hello", 6)]


async def test_neutral_request_builds_the_body_from_fields(fake_openai: FakeOpenAI) -> None:
    """A request without a raw body is encoded from its neutral fields."""
    adapter = await embedder("vllm", fake_openai.base_url)
    req = EmbeddingRequest(
        inputs=[[1, 2, 3]], encoding_format="base64", dimensions=2, user="u1", model="hint"
    )
    try:
        resp = await embed(adapter, req, target("vllm"))
    finally:
        await adapter.close()
    assert fake_openai.requests[-1].json == {
        "model": "up-e1",
        "input": [[1, 2, 3]],
        "encoding_format": "base64",
        "dimensions": 2,
        "user": "u1",
    }
    assert resp.vectors == [fake_embedding([1, 2, 3], 2)]


async def test_vectors_come_back_in_input_order(fake_openai: FakeOpenAI) -> None:
    """Items are sorted by ``index`` whatever order the upstream sent them in."""
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [2.0]},
            {"object": "embedding", "index": 0, "embedding": [1.0]},
        ],
        "model": "up-e1",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    fake_openai.script(Reply(body=body))
    adapter = await embedder("openai", fake_openai.base_url)
    try:
        resp = await embed(adapter, openai_request({"input": ["a", "b"]}), target())
    finally:
        await adapter.close()
    assert resp.vectors == [[1.0], [2.0]]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (429, ErrorClass.RATE_LIMITED),
        (500, ErrorClass.TRANSIENT),
        (503, ErrorClass.TRANSIENT),
        (400, ErrorClass.FATAL),
        (401, ErrorClass.FATAL),
    ],
)
async def test_upstream_errors_are_classified(
    fake_openai: FakeOpenAI, status: int, error_class: ErrorClass
) -> None:
    """An error status becomes a ProviderError of the matching class, key scrubbed."""
    fake_openai.script(Reply(status=status, headers={"Retry-After": "3"}))
    adapter = await embedder("openai", fake_openai.base_url)
    try:
        with pytest.raises(ProviderError) as info:
            await embed(adapter, openai_request({"input": "x"}), target())
    finally:
        await adapter.close()
    assert info.value.error_class == error_class
    assert info.value.status == status
    assert info.value.retry_after == 3.0
    assert API_KEY not in info.value.message


@pytest.mark.parametrize(
    "body", [{"data": "nope"}, {"data": [{"index": 0, "embedding": "!!"}]}, {"x": 1}]
)
async def test_a_malformed_2xx_body_is_transient(
    fake_openai: FakeOpenAI, body: dict[str, object]
) -> None:
    """A 200 whose body is not an embeddings list is a transient failure."""
    fake_openai.script(Reply(body=body))
    adapter = await embedder("openai", fake_openai.base_url)
    try:
        with pytest.raises(ProviderError) as info:
            await embed(adapter, openai_request({"input": "x"}), target())
    finally:
        await adapter.close()
    assert info.value.error_class == ErrorClass.TRANSIENT


async def test_unreachable_upstream_is_transient() -> None:
    """A refused connection is a transient failure."""
    adapter = await embedder("openai", dead_url())
    try:
        with pytest.raises(ProviderError) as info:
            await embed(adapter, openai_request({"input": "x"}), target())
    finally:
        await adapter.close()
    assert info.value.error_class == ErrorClass.TRANSIENT


async def test_slow_upstream_times_out_as_transient(fake_openai: FakeOpenAI) -> None:
    """An upstream slower than the target's timeout is a transient failure."""
    fake_openai.script(Reply(delay_s=1.0))
    adapter = await embedder("openai", fake_openai.base_url)
    try:
        with pytest.raises(ProviderError) as info:
            await embed(adapter, openai_request({"input": "x"}), target(timeout_s=0.1))
    finally:
        await adapter.close()
    assert info.value.error_class == ErrorClass.TRANSIENT


# --- mock ------------------------------------------------------------------------------


async def test_mock_vectors_are_deterministic_unit_vectors() -> None:
    """The mock answers one unit vector per input, equal inputs equal vectors."""
    adapter = make_adapter("mock", [], FakeClock())
    req = EmbeddingRequest(inputs=["a b c", "other", "a b c"])
    resp = await embed(adapter, req, target("mock"))
    assert len(resp.vectors) == 3 and all(len(v) == 8 for v in resp.vectors)
    assert resp.vectors[0] == resp.vectors[2] != resp.vectors[1]
    assert all(math.isclose(math.hypot(*v), 1.0) for v in resp.vectors)
    assert resp.vectors[0] == mock_vector("a b c", 8)
    assert resp.usage.prompt_tokens == 7  # words: 3 + 1 + 3
    assert resp.model == "e1" and resp.raw is None and resp.dialect is Dialect.NONE


async def test_mock_dims_option_and_requested_dimensions() -> None:
    """``dims`` sets the vector length; a request's ``dimensions`` overrides it."""
    adapter = make_adapter("mock", [], FakeClock(), dims=40)
    plain = await embed(adapter, EmbeddingRequest(inputs=["x"]), target("mock"))
    asked = await embed(adapter, EmbeddingRequest(inputs=[[5, 6, 7]], dimensions=3), target("mock"))
    assert len(plain.vectors[0]) == 40
    assert asked.vectors == [mock_vector([5, 6, 7], 3)]
    assert asked.usage.prompt_tokens == 3


async def test_mock_embed_fails_like_chat() -> None:
    """The mock's failure_rate applies to embeddings, classified by error_status."""
    adapter = make_adapter("mock", [], FakeClock(), failure_rate=1.0, error_status=429)
    with pytest.raises(ProviderError) as info:
        await embed(adapter, EmbeddingRequest(inputs=["x"]), target("mock"))
    assert info.value.error_class == ErrorClass.RATE_LIMITED


# --- helpers ---------------------------------------------------------------------------


async def test_which_adapters_embed() -> None:
    """OpenAI-compatible adapters and the mock embed; Anthropic does not."""
    kinds = {k: make_adapter(k, ["http://127.0.0.1:9"], FakeClock()) for k in ("openai", "vllm")}
    kinds["mock"] = make_adapter("mock", [], FakeClock())
    kinds["anthropic"] = make_adapter("anthropic", ["http://127.0.0.1:9"], FakeClock())
    try:
        assert {k: is_embedder(a) for k, a in kinds.items()} == {
            "openai": True,
            "vllm": True,
            "mock": True,
            "anthropic": False,
        }
    finally:
        for adapter in kinds.values():
            await adapter.close()


def test_embedding_models_are_marked_by_the_kind_label() -> None:
    """Only ``labels["kind"] == "embedding"`` marks an embedding model."""
    assert is_embedding_model(ModelConfig("e", "p", labels={"kind": "embedding"}))
    assert not is_embedding_model(ModelConfig("c", "p"))
    assert not is_embedding_model(ModelConfig("c", "p", labels={"kind": "chat"}))


def test_base64_vectors_round_trip_as_float32() -> None:
    """pack/unpack round-trip float32 values and reject bytes that are not float32s."""
    vector = [0.5, -1.25, 3.0, 1e-3]
    back = unpack_vector(pack_vector(vector))
    assert back[:3] == [0.5, -1.25, 3.0] and math.isclose(back[3], 1e-3, rel_tol=1e-6)
    assert pack_vector([1.0]) == "AACAPw=="  # little-endian float32 of 1.0
    with pytest.raises(ValueError):
        unpack_vector("AAA=")
