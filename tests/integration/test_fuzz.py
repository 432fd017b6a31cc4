"""Fuzz the consumer and admin APIs over a real socket: generated JSON (random values and
near-valid bodies with one field mutated) must never draw a 5xx.

One gateway serves the whole module (a mock provider, so every hot request that passes
validation is answered); hypothesis drives ~150 examples per route group."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.harness import Gateway, gateway_settings, run_gateway
from tests.integration.security_e2e.support import admin_routes

EXAMPLES = 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
HOT = ("/v1/chat/completions", "/v1/messages", "/v1/chat")
# Routes that would end the fuzzing session itself or lock everything away.
SKIP_ADMIN = {"/admin/v1/admin-token/rotate", "/admin/v1/vault/lock"}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

VALID = {
    "/v1/chat/completions": {
        "model": "mock-model",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
        "temperature": 0.5,
        "stream": False,
    },
    "/v1/messages": {
        "model": "mock-model",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
        "system": "be brief",
    },
    "/v1/chat": {
        "request": {"messages": [{"role": "user", "content": "hi"}]},
        "policy": {"mode": "cheap"},
    },
}


@st.composite
def near_valid(draw: st.DrawFn, path: str) -> Any:
    """A valid body of ``path`` with one (possibly nested) field replaced or removed."""
    body: dict[str, Any] = {k: v for k, v in VALID[path].items()}
    field = draw(st.sampled_from(sorted(body)))
    if draw(st.booleans()) and isinstance(body[field], list):
        message = dict(body[field][0])
        key = draw(st.sampled_from(["role", "content", "name", "tool_calls"]))
        message[key] = draw(json_values)
        body[field] = [message]
    elif draw(st.integers(0, 4)) == 0:
        del body[field]
    else:
        body[field] = draw(json_values)
    return body


def hot_bodies(path: str) -> st.SearchStrategy[Any]:
    return json_values | near_valid(path)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The module's own event loop: hypothesis runs examples synchronously, each one
    driving this loop, while the gateway it started keeps running on it."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def gateway(
    loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    holder: dict[str, Any] = {}

    async def start() -> None:
        cm = run_gateway(gateway_settings(tmp, demo="false"))
        g = await cm.__aenter__()
        await g.add_provider("mk", "mock", "")
        await g.add_model("mock-model", "mk")
        holder.update(cm=cm, g=g)

    loop.run_until_complete(start())
    try:
        yield holder["g"]
    finally:
        loop.run_until_complete(holder["cm"].__aexit__(None, None, None))


def send(
    loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient, method: str, path: str, body: Any
) -> httpx.Response:
    return loop.run_until_complete(client.request(method, path, json=body))


def assert_no_5xx(r: httpx.Response, body: Any) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url.path, body, r.text[:500])


@pytest.mark.parametrize("path", HOT)
def test_hot_routes_never_answer_5xx(
    path: str, gateway: Gateway, loop: asyncio.AbstractEventLoop
) -> None:
    """Random and near-valid bodies on each chat surface get 2xx or 4xx, never 5xx."""
    seen: set[int] = set()

    @FUZZ
    @given(body=hot_bodies(path))
    def run(body: Any) -> None:
        r = send(loop, gateway.client, "POST", path, body)
        seen.add(r.status_code)
        assert_no_5xx(r, body)

    run()
    assert 200 in seen and any(400 <= s < 500 for s in seen), seen


def test_admin_writes_never_answer_5xx(gateway: Gateway, loop: asyncio.AbstractEventLoop) -> None:
    """Random bodies to every admin POST/PUT/PATCH route get 2xx or 4xx, never 5xx."""
    routes = [
        (m, p)
        for m, p in admin_routes(gateway.settings)
        if m in ("POST", "PUT", "PATCH") and p not in SKIP_ADMIN
    ]
    assert len(routes) > 10
    seen: set[int] = set()

    @FUZZ
    @given(route=st.sampled_from(routes), body=json_values)
    def run(route: tuple[str, str], body: Any) -> None:
        method, path = route
        r = send(loop, gateway.admin, method, path, body)
        seen.add(r.status_code)
        assert_no_5xx(r, body)

    run()
    assert any(400 <= s < 500 for s in seen), seen
    # the gateway is still whole: the admin token works and chat is served
    r = send(loop, gateway.client, "POST", "/v1/chat/completions", VALID["/v1/chat/completions"])
    assert r.status_code in (200, 503), r.text  # 503 only if the fuzz locked a vault
