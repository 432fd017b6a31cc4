"""/v1/embeddings end to end with the official openai SDK as the client.

The route here is a minimal raw-ASGI handler built from the embeddings codec and the
EmbeddingRouter (the gateway's real route adds the guard and recording around the
same calls); providers are the mock adapter and FakeOpenAI on loopback sockets.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import openai
import orjson
import pytest
import uvicorn

from tests.fakes.upstreams import FakeOpenAI, Reply, fake_embedding
from tokenhub.api.embeddings_codec import encode_response, parse_embeddings_request
from tokenhub.api.openai_codec import render_error
from tokenhub.errors import BadRequest, TokenHubError
from tokenhub.observe.health import HealthTracker
from tokenhub.providers.mock import mock_vector
from tokenhub.providers.registry import create_adapter
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.embedding import EmbeddingRouter
from tokenhub.types import ModelConfig, ProviderConfig

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
EMBED = {"kind": "embedding"}


class EmbeddingsRoute:
    """``POST /v1/embeddings``: parse, route, encode; errors in the OpenAI shape."""

    def __init__(self, router: EmbeddingRouter) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        if (scope["method"], scope["path"]) != ("POST", "/v1/embeddings"):
            await self._reply(send, 404, b'{"error":{"message":"not found"}}', [])
            return
        body = await _read(receive)
        try:
            out, headers = await self._embed(body)
            status = 200
        except TokenHubError as err:
            status, out, headers = err.status, render_error(err), []
        await self._reply(send, status, out, headers)

    async def _embed(self, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("body: malformed JSON") from None
        req = parse_embeddings_request(data, "rid")
        plan = self.router.prepare(req)
        resp, decision = await self.router.embed(req, plan)
        assert decision.model is not None
        headers = [
            (b"x-tokenhub-model", decision.model.id.encode()),
            (b"x-tokenhub-reason", decision.reason.encode()),
        ]
        return encode_response(resp, req.encoding_format), headers

    async def _reply(
        self, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        head = [(b"content-type", b"application/json"), *headers]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})


async def _read(receive: Receive) -> bytes:
    parts = []
    while True:
        msg = await receive()
        parts.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(parts)


@dataclass
class Stack:
    """The route served on a loopback port, its catalog, and an SDK client for it."""

    catalog: Catalog
    client: openai.AsyncOpenAI

    async def provider(self, pid: str, ptype: str = "mock", url: str = "", **opts: Any) -> None:
        urls = [url] if url else []
        await self.catalog.set_provider(ProviderConfig(pid, ptype, urls, options=opts))

    def model(self, mid: str, pid: str, price: float = 0.0, **kw: Any) -> None:
        labels = kw.pop("labels", EMBED)
        self.catalog.set_model(ModelConfig(mid, pid, input_per_1k=price, labels=labels, **kw))


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """Serve the route with uvicorn on a port-0 socket; yield an SDK client for it."""
    catalog = Catalog(lambda cfg: create_adapter(cfg, lambda pid: "sk-upstream-key"))
    router = EmbeddingRouter(catalog, HealthTracker(), timeout_s=5.0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        EmbeddingsRoute(router), lifespan="off", log_config=None, access_log=False, loop="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "server did not start"
        await asyncio.sleep(0.01)
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-client", max_retries=0
    )
    try:
        yield Stack(catalog, client)
    finally:
        await client.close()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await catalog.close()
        sock.close()


async def test_sdk_default_base64_against_the_mock(stack: Stack) -> None:
    """The SDK's default (base64) request gets the mock's vectors, usage and model id."""
    await stack.provider("local", dims=16)
    stack.model("emb-mock", "local")
    texts = ["the quick brown fox", "jumps"]
    result = await stack.client.embeddings.create(model="emb-mock", input=texts)
    assert result.model == "emb-mock"
    assert [d.index for d in result.data] == [0, 1]
    for item, text in zip(result.data, texts, strict=True):
        expected = mock_vector(text, 16)
        assert len(item.embedding) == 16
        assert all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
            for a, b in zip(item.embedding, expected, strict=True)
        )
    assert result.usage.prompt_tokens == 5 and result.usage.total_tokens == 5


async def test_float_format_passes_an_openai_upstream_through(
    stack: Stack, fake_openai: FakeOpenAI
) -> None:
    """Against an OpenAI upstream the body is forwarded (model swapped) and its answer
    handed back untouched."""
    fake_openai.script(Reply(usage=(12, 0)))
    await stack.provider("oa", "openai", fake_openai.base_url)
    stack.model("small", "oa", upstream_id="text-embedding-3-small")
    result = await stack.client.embeddings.create(
        model="small", input=["hello", "hi"], encoding_format="float", dimensions=3
    )
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.json["model"] == "text-embedding-3-small"
    assert sent.json["dimensions"] == 3
    assert sent.headers["Authorization"] == "Bearer sk-upstream-key"
    assert [d.embedding for d in result.data] == [
        fake_embedding("hello", 3),
        fake_embedding("hi", 3),
    ]
    assert result.model == "text-embedding-3-small"
    assert result.usage.prompt_tokens == 12


async def test_token_arrays_travel_to_the_upstream(stack: Stack, fake_openai: FakeOpenAI) -> None:
    """Token-array inputs reach the upstream as sent; base64 vectors decode in the SDK."""
    await stack.provider("oa", "openai", fake_openai.base_url)
    stack.model("small", "oa")
    result = await stack.client.embeddings.create(model="small", input=[[1, 2, 3], [4]])
    assert fake_openai.requests[-1].json["input"] == [[1, 2, 3], [4]]
    assert fake_openai.requests[-1].json["encoding_format"] == "base64"
    assert [d.embedding for d in result.data] == [
        fake_embedding([1, 2, 3], 4),
        fake_embedding([4], 4),
    ]


async def test_a_failing_upstream_fails_over_to_the_next_model(
    stack: Stack, fake_openai: FakeOpenAI
) -> None:
    """A 503 from the hinted model's upstream fails over to the mock; the client sees
    only the answer."""
    fake_openai.script(Reply(status=503))
    await stack.provider("oa", "openai", fake_openai.base_url)
    await stack.provider("local")
    stack.model("remote", "oa", 0.0)
    stack.model("backup", "local", 1.0)
    raw = await stack.client.embeddings.with_raw_response.create(model="remote", input="x y")
    result = raw.parse()
    assert raw.headers["x-tokenhub-model"] == "backup"
    assert raw.headers["x-tokenhub-reason"] == "failover-transient"
    assert result.model == "backup"
    assert len(fake_openai.requests) == 1
    assert result.usage.prompt_tokens == 2


async def test_bad_input_is_a_400_in_the_openai_shape(stack: Stack) -> None:
    """An empty input is refused with a 400 the SDK raises as BadRequestError."""
    await stack.provider("local")
    stack.model("emb", "local")
    with pytest.raises(openai.BadRequestError) as info:
        await stack.client.embeddings.create(model="emb", input="")
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == "input: must not be empty"
    assert info.value.body["type"] == "invalid_request_error"


async def test_no_embedding_model_is_a_502(stack: Stack) -> None:
    """With only chat models configured the client gets no_eligible_model (502)."""
    await stack.provider("local")
    stack.model("chat-only", "local", labels={})
    with pytest.raises(openai.APIStatusError) as info:
        await stack.client.embeddings.create(model="chat-only", input="x")
    assert info.value.status_code == 502
    assert isinstance(info.value.body, dict)
    assert info.value.body["code"] == "no_eligible_model"
    assert info.value.body["details"]["excluded"] == {"chat-only": "not an embedding model"}
