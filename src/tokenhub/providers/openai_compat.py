"""The OpenAI-compatible adapter: the base of ``openai``, ``vllm`` and every compatible API.

Streaming: each upstream SSE event becomes one ``Chunk`` with ``dialect=OPENAI`` and
``raw`` = the event's bytes. The terminating ``data: [DONE]`` event is yielded too, as a
``Chunk`` with only ``raw`` set (no neutral field), so an OpenAI surface in
pass-through mode can forward it; neutral consumers simply see an empty chunk.
Streams always ask for ``stream_options.include_usage``, so the last data chunk before
``[DONE]`` carries only usage; a surface whose client did not ask for usage drops it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import aiohttp
import orjson

from tokenhub.errors import ProviderError
from tokenhub.providers.base import CredentialLookup
from tokenhub.providers.embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    build_embedding_body,
    parse_embedding_response,
)
from tokenhub.providers.errors import stream_error, transport_error
from tokenhub.providers.http import (
    TRANSPORT_ERRORS,
    SessionPool,
    api_url,
    body_shape,
    fetch_json,
    parse_json,
    read_body,
    send,
    stream_timeout,
    whole_timeout,
)
from tokenhub.providers.openai_wire import DONE, build_body, parse_chunk, parse_response
from tokenhub.providers.sse import iter_sse
from tokenhub.types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Clock,
    Dialect,
    ErrorClass,
    ProviderConfig,
    Target,
    monotonic,
)

LIST_MODELS_TIMEOUT_S = 10.0


class OpenAICompatAdapter:
    """Speaks ``POST /v1/chat/completions`` (and ``/v1/embeddings``: it is an
    ``Embedder``) to one OpenAI-compatible provider.

    Subclasses choose the endpoint per call (``_pick_base``) and learn each call's
    outcome (``_record``); this class sends to ``config.base_url`` and ignores outcomes.
    """

    dialect: Dialect = Dialect.OPENAI

    def __init__(
        self, config: ProviderConfig, credentials: CredentialLookup, *, clock: Clock = monotonic
    ) -> None:
        self.config = config
        self._credentials = credentials
        self._clock = clock
        self._pool = SessionPool(limit=int(config.options.get("pool_limit", 512)))

    def _pick_base(self) -> str:
        return self.config.base_url

    def _record(self, base: str, error: ProviderError | None) -> None:
        """Hook: the call to ``base`` succeeded (``None``) or failed with ``error``."""

    @contextmanager
    def _tracked(self, base: str) -> Iterator[None]:
        try:
            yield
        except ProviderError as exc:
            self._record(base, exc)
            raise
        self._record(base, None)

    def _auth(self) -> tuple[dict[str, str], tuple[str, ...]]:
        """Auth headers, and the secrets error messages must never repeat."""
        key = self._credentials(self.config.id)
        if not key:
            return {}, ()
        return {"Authorization": f"Bearer {key}"}, (key,)

    def _headers(self, target: Target) -> tuple[dict[str, str], tuple[str, ...]]:
        auth, secrets = self._auth()
        headers = {"Content-Type": "application/json", **auth}
        if target.request_id:
            headers["X-Request-ID"] = target.request_id
        headers.update(target.headers)
        return headers, secrets

    async def _post(
        self,
        base: str,
        body: dict[str, Any],
        target: Target,
        limits: aiohttp.ClientTimeout,
        path: str = "/chat/completions",
    ) -> aiohttp.ClientResponse:
        headers, secrets = self._headers(target)
        return await send(
            self._pool.get(),
            "POST",
            api_url(base, path),
            body=orjson.dumps(body),
            headers=headers,
            limits=limits,
            provider=self.config.id,
            secrets=secrets,
        )

    async def complete(self, req: ChatRequest, target: Target) -> ChatResponse:
        """One non-streamed answer; ``raw`` is the upstream body untouched."""
        base = self._pick_base()
        model = target.model.wire_name
        with self._tracked(base):
            body = build_body(req, model, stream=False)
            resp = await self._post(base, body, target, whole_timeout(target.timeout_s))
            raw = await read_body(resp, provider=self.config.id)
            data = parse_json(raw, provider=self.config.id)
            with body_shape(self.config.id):
                return parse_response(data, raw, model)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        """Stream the answer; the request is sent on the first ``__anext__``."""
        base = self._pick_base()
        with self._tracked(base):
            body = build_body(req, target.model.wire_name, stream=True)
            resp = await self._post(base, body, target, stream_timeout(target.timeout_s))
            # aclosing: an early aclose() must reach _chunks now, to cut the upstream
            async with aclosing(self._chunks(resp)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def _chunks(self, resp: aiohttp.ClientResponse) -> AsyncGenerator[Chunk, None]:
        done = finished = False
        try:
            async for event in iter_sse(resp):
                if event.data.strip() == DONE:
                    done = True
                    yield Chunk(dialect=Dialect.OPENAI, raw=event.raw)
                    continue
                chunk = self._parse_event(event.data, event.raw)
                if chunk is not None:
                    finished = finished or chunk.finish_reason is not None
                    yield chunk
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, provider=self.config.id, during="stream") from exc
        finally:
            # close (not release) when cut short: the upstream must stop generating
            if done:
                resp.release()
            else:
                resp.close()
        if not (done or finished):
            raise ProviderError(
                ErrorClass.TRANSIENT, f"{self.config.id}: stream ended before it finished"
            )

    def _parse_event(self, data: str, raw: bytes) -> Chunk | None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None  # keep-alive noise some compatible servers send
        if not isinstance(payload, dict):
            return None
        error = payload.get("error")
        if error is not None:
            err = error if isinstance(error, dict) else {"message": str(error)}
            raise stream_error(
                str(err.get("type") or err.get("code") or "api_error"),
                str(err.get("message") or ""),
                provider=self.config.id,
                secrets=self._auth()[1],
            )
        with body_shape(self.config.id):
            return parse_chunk(payload, raw)

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        """Vectors from ``POST {base}/v1/embeddings``; ``raw`` is the upstream body."""
        base = self._pick_base()
        model = target.model.wire_name
        with self._tracked(base):
            body = build_embedding_body(req, model)
            limits = whole_timeout(target.timeout_s)
            resp = await self._post(base, body, target, limits, path="/embeddings")
            raw = await read_body(resp, provider=self.config.id)
            data = parse_json(raw, provider=self.config.id)
            with body_shape(self.config.id):
                return parse_embedding_response(data, raw, model)

    async def list_models(self) -> list[str]:
        """Ids from ``GET {base}/v1/models``."""
        base = self._pick_base()
        auth, secrets = self._auth()
        with self._tracked(base):
            body = await fetch_json(
                self._pool.get(),
                api_url(base, "/models"),
                headers=auth,
                timeout_s=float(self.config.options.get("timeout_s", LIST_MODELS_TIMEOUT_S)),
                provider=self.config.id,
                secrets=secrets,
            )
        return [str(m["id"]) for m in body.get("data", []) if isinstance(m, dict) and "id" in m]

    async def close(self) -> None:
        """Close the pooled session."""
        await self._pool.close()
