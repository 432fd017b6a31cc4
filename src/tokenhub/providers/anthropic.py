"""The Anthropic adapter: ``POST /v1/messages``, streamed or not.

Every stream event (``message_start`` … ``message_stop``, pings included) is yielded as
a ``Chunk`` with ``dialect=ANTHROPIC`` and ``raw`` = the event's bytes, so an Anthropic
surface can pass the stream through; the neutral fields are filled alongside. An
``error`` event is raised as ``ProviderError`` (``overloaded_error`` is transient).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from tokenhub.errors import ProviderError
from tokenhub.providers.anthropic_wire import StreamState, build_body, parse_response
from tokenhub.providers.base import CredentialLookup
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

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
LIST_MODELS_TIMEOUT_S = 10.0


class AnthropicAdapter:
    """Speaks the Anthropic Messages API to one configured provider."""

    dialect: Dialect = Dialect.ANTHROPIC

    def __init__(
        self, config: ProviderConfig, credentials: CredentialLookup, *, clock: Clock = monotonic
    ) -> None:
        self.config = config
        self._credentials = credentials
        self._clock = clock
        self._pool = SessionPool(limit=int(config.options.get("pool_limit", 512)))

    @property
    def _base(self) -> str:
        return self.config.base_url or DEFAULT_BASE_URL

    def _auth(self) -> tuple[dict[str, str], tuple[str, ...]]:
        """Auth and version headers, and the secrets error messages must never repeat."""
        headers = {"anthropic-version": API_VERSION}
        key = self._credentials(self.config.id)
        if not key:
            return headers, ()
        return {**headers, "x-api-key": key}, (key,)

    async def _post(
        self, body: dict[str, Any], target: Target, limits: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        auth, secrets = self._auth()
        headers = {"Content-Type": "application/json", **auth}
        if target.request_id:
            headers["X-Request-ID"] = target.request_id
        headers.update(target.headers)
        return await send(
            self._pool.get(),
            "POST",
            api_url(self._base, "/messages"),
            body=orjson.dumps(body),
            headers=headers,
            limits=limits,
            provider=self.config.id,
            secrets=secrets,
        )

    async def complete(self, req: ChatRequest, target: Target) -> ChatResponse:
        """One non-streamed answer; ``raw`` is the upstream body untouched."""
        model = target.model.wire_name
        body = build_body(req, model, stream=False)
        resp = await self._post(body, target, whole_timeout(target.timeout_s))
        raw = await read_body(resp, provider=self.config.id)
        data = parse_json(raw, provider=self.config.id)
        with body_shape(self.config.id):
            return parse_response(data, raw, model)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        """Stream the answer; the request is sent on the first ``__anext__``."""
        body = build_body(req, target.model.wire_name, stream=True)
        resp = await self._post(body, target, stream_timeout(target.timeout_s))
        state = StreamState()
        try:
            async for event in iter_sse(resp):
                chunk = self._parse_event(state, event.data, event.raw)
                if chunk is not None:
                    yield chunk
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, provider=self.config.id, during="stream") from exc
        finally:
            # close (not release) when cut short: the upstream must stop generating
            if state.stopped:
                resp.release()
            else:
                resp.close()
        if not state.stopped:
            raise ProviderError(
                ErrorClass.TRANSIENT, f"{self.config.id}: stream ended before message_stop"
            )

    def _parse_event(self, state: StreamState, data: str, raw: bytes) -> Chunk | None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        if payload.get("type") == "error":
            err = payload.get("error") or {}
            raise stream_error(
                str(err.get("type") or "api_error"),
                str(err.get("message") or ""),
                provider=self.config.id,
                secrets=self._auth()[1],
            )
        with body_shape(self.config.id):
            return state.chunk(payload, raw)

    async def list_models(self) -> list[str]:
        """Ids from ``GET {base}/v1/models`` (``data[].id``)."""
        auth, secrets = self._auth()
        body = await fetch_json(
            self._pool.get(),
            api_url(self._base, "/models"),
            headers=auth,
            timeout_s=float(self.config.options.get("timeout_s", LIST_MODELS_TIMEOUT_S)),
            provider=self.config.id,
            secrets=secrets,
        )
        return [str(m["id"]) for m in body.get("data", []) if isinstance(m, dict) and "id" in m]

    async def close(self) -> None:
        """Close the pooled session."""
        await self._pool.close()
