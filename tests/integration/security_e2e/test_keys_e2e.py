"""Client keys against a running gateway: every way a key can be bad gets the same 401
in the dialect of the surface it hit; scopes, rotation and show-once hold end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI
from tests.integration.harness import Gateway
from tests.integration.security_e2e.support import (
    ANT_MODEL,
    HELLO,
    INVALID_KEY,
    MODEL,
    add_anthropic,
    ant,
    chat_body,
    messages_body,
    new_key,
    oai,
    openai_gateway,
)

UNKNOWN = "tokenhub_" + "0" * 64


@pytest.fixture
async def gw(
    tmp_path: Path, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> AsyncIterator[Gateway]:
    async with openai_gateway(tmp_path, fake_openai) as g:
        await add_anthropic(g, fake_anthropic)
        yield g


async def ask_openai(g: Gateway, key: str) -> str | None:
    """One chat completion through the OpenAI SDK; its text."""
    async with oai(g, key) as client:
        reply = await client.chat.completions.create(model=MODEL, messages=HELLO)
    return reply.choices[0].message.content


async def ask_anthropic(g: Gateway, key: str) -> str:
    """One message through the Anthropic SDK (x-api-key); its first text block."""
    async with ant(g, key) as client:
        msg = await client.messages.create(model=ANT_MODEL, max_tokens=16, messages=HELLO)
    block = msg.content[0]
    return block.text if block.type == "text" else ""


async def bad_keys(g: Gateway) -> dict[str, str]:
    """One key per failure: malformed, unknown, disabled, expired and revoked."""
    disabled, d = await new_key(g)
    r = await g.admin.patch(f"/admin/v1/apikeys/{d['id']}", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    revoked, v = await new_key(g)
    assert (await g.admin.delete(f"/admin/v1/apikeys/{v['id']}")).status_code == 200
    expired, _ = await new_key(g, expires_in="1s")
    await asyncio.sleep(1.1)  # expiry runs on the wall clock: the one real wait here
    return {
        "malformed": "not-a-tokenhub-key",
        "unknown": UNKNOWN,
        "disabled": disabled,
        "expired": expired,
        "revoked": revoked,
    }


async def test_bad_keys_get_401_in_the_openai_dialect(gw: Gateway) -> None:
    """Missing, malformed, unknown, disabled, expired and revoked keys: OpenAI 401."""
    async with httpx.AsyncClient(base_url=gw.url) as raw:
        r = await raw.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 401
    assert r.json()["error"]["message"] == INVALID_KEY
    assert r.json()["error"]["type"] == "authentication_error"
    for case, key in (await bad_keys(gw)).items():
        with pytest.raises(openai.AuthenticationError) as info:
            await ask_openai(gw, key)
        assert info.value.status_code == 401, case
        assert info.value.body["message"] == INVALID_KEY, case  # type: ignore[index]


async def test_bad_keys_get_401_in_the_anthropic_dialect(gw: Gateway) -> None:
    """The same failures on /v1/messages (key sent as x-api-key): Anthropic 401."""
    async with httpx.AsyncClient(base_url=gw.url) as raw:
        r = await raw.post("/v1/messages", json=messages_body())
    assert r.status_code == 401
    assert r.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": INVALID_KEY},
    }
    for case, key in (await bad_keys(gw)).items():
        with pytest.raises(anthropic.AuthenticationError) as info:
            await ask_anthropic(gw, key)
        assert info.value.status_code == 401, case
        body = info.value.body
        assert isinstance(body, dict) and body["type"] == "error", case
        assert body["error"] == {"type": "authentication_error", "message": INVALID_KEY}, case


async def test_a_good_key_works_on_both_surfaces(gw: Gateway) -> None:
    """A valid key is served by the OpenAI SDK and, via x-api-key, the Anthropic SDK."""
    key, _ = await new_key(gw)
    assert await ask_openai(gw, key) == "Hello from fake"
    assert await ask_anthropic(gw, key) == "Hello from fake"


async def test_a_missing_scope_is_403(gw: Gateway) -> None:
    """A key scoped to plan only is refused chat with 403 "scope not allowed"."""
    key, _ = await new_key(gw, scopes=["plan"])
    with pytest.raises(openai.PermissionDeniedError) as info:
        await ask_openai(gw, key)
    assert info.value.status_code == 403
    assert info.value.body["message"] == "scope not allowed"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError) as ainfo:
        await ask_anthropic(gw, key)
    assert ainfo.value.body == {
        "type": "error",
        "error": {"type": "permission_error", "message": "scope not allowed"},
    }


async def test_rotation_kills_the_old_key_at_once(gw: Gateway) -> None:
    """After rotate the old key (just used, so cached) gets 401; the new one works."""
    old, view = await new_key(gw)
    await ask_openai(gw, old)
    r = await gw.admin.post(f"/admin/v1/apikeys/{view['id']}/rotate")
    assert r.status_code == 200
    new = r.json()["key"]
    assert new != old and new.startswith("tokenhub_")
    with pytest.raises(openai.AuthenticationError):
        await ask_openai(gw, old)
    assert await ask_openai(gw, new) == "Hello from fake"


async def test_revocation_kills_a_cached_key_at_once(gw: Gateway) -> None:
    """A key served a moment ago is refused right after DELETE."""
    key, view = await new_key(gw)
    await ask_openai(gw, key)
    assert (await gw.admin.delete(f"/admin/v1/apikeys/{view['id']}")).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        await ask_openai(gw, key)


async def test_a_key_is_shown_once(gw: Gateway) -> None:
    """Only the create and rotate answers carry the key; list and get never do."""
    key, view = await new_key(gw, name="show-once")
    assert view["prefix"] == key[: len(view["prefix"])]
    listed = await gw.admin.get("/admin/v1/apikeys")
    one = await gw.admin.get(f"/admin/v1/apikeys/{view['id']}")
    for r in (listed, one):
        assert r.status_code == 200
        assert key not in r.text and key[len(view["prefix"]) :] not in r.text
        assert "digest" not in r.text and '"key"' not in r.text


async def test_client_auth_off_serves_without_a_key(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """TOKENHUB_CLIENT_AUTH=false: /v1 answers a request that carries no key at all."""
    async with (
        openai_gateway(tmp_path, fake_openai, client_auth="false") as g,
        httpx.AsyncClient(base_url=g.url) as raw,
    ):
        r = await raw.post("/v1/chat/completions", json=chat_body())
        models = await raw.get("/v1/models")
        admin = await raw.get("/admin/v1/apikeys")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Hello from fake"
    assert models.status_code == 200
    assert admin.status_code == 401  # the admin API still needs its token
