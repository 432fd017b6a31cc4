"""The HTTP plumbing every network adapter shares: one pooled session, error translation.

``send`` returns a response only for a 2xx status; anything else, and any timeout or
connection failure, is raised as ``ProviderError`` so adapters never see a raw aiohttp
exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson

from tokenhub.errors import ProviderError
from tokenhub.providers.errors import http_error, transport_error
from tokenhub.types import ErrorClass

TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
"""What aiohttp raises for refused, reset or dropped connections and timeouts."""


def api_url(base: str, path: str) -> str:
    """``{base}/v1{path}``, without doubling ``/v1`` when the base already ends with it."""
    base = base.rstrip("/")
    if base.endswith("/v1"):
        return base + path
    return base + "/v1" + path


def whole_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A bound on the whole exchange, for non-streamed calls."""
    return aiohttp.ClientTimeout(total=seconds)


def stream_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A bound on connecting and on each wait for bytes, not on the stream's length."""
    return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)


class SessionPool:
    """Owns one ``aiohttp.ClientSession``, created lazily inside the running loop."""

    def __init__(self, *, limit: int = 512, keepalive_s: float = 30.0) -> None:
        self._limit = limit
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        """The session, created on first use (it binds to the loop that runs then)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_s,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        """Close the session and its connections; a later call opens a new one."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    limits: aiohttp.ClientTimeout,
    provider: str,
    body: bytes | None = None,
    secrets: tuple[str, ...] = (),
) -> aiohttp.ClientResponse:
    """Send one request; return the response if 2xx, else raise ``ProviderError``."""
    try:
        resp = await session.request(method, url, data=body, headers=headers, timeout=limits)
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc, provider=provider, during="connect") from exc
    if 200 <= resp.status < 300:
        return resp
    try:
        text = (await resp.read()).decode("utf-8", "replace")
    except TRANSPORT_ERRORS:
        text = ""
    finally:
        resp.release()
    raise http_error(resp.status, text, resp.headers, provider=provider, secrets=secrets)


async def read_body(resp: aiohttp.ClientResponse, *, provider: str) -> bytes:
    """The whole body of a 2xx response, transport failures translated."""
    try:
        return await resp.read()
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc, provider=provider, during="read") from exc
    finally:
        resp.release()


_SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


@contextmanager
def body_shape(provider: str) -> Iterator[None]:
    """Turn a surprise in a 2xx body's shape into a transient ``ProviderError``.

    An upstream answering 200 with garbage is broken for now; another may do better.
    """
    try:
        yield
    except _SHAPE_ERRORS as exc:
        raise ProviderError(
            ErrorClass.TRANSIENT, f"{provider}: upstream sent an unexpected body"
        ) from exc


def parse_json(body: bytes, *, provider: str) -> dict[str, Any]:
    """Decode a 2xx JSON object body; anything else is a transient failure."""
    with body_shape(provider):
        data = orjson.loads(body)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return data


async def fetch_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    provider: str,
    secrets: tuple[str, ...] = (),
) -> Any:
    """GET ``url`` and decode its JSON body (used by ``list_models``)."""
    resp = await send(
        session,
        "GET",
        url,
        headers=headers,
        limits=whole_timeout(timeout_s),
        provider=provider,
        secrets=secrets,
    )
    return parse_json(await read_body(resp, provider=provider), provider=provider)
