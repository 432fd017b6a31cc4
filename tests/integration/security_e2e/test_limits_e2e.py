"""Rate limits through a running gateway: per-key rpm and tpm, the per-IP bucket, the
separate admin bucket, and X-Forwarded-For trusted only from configured proxies."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.harness import Gateway
from tests.integration.security_e2e.support import chat_body, new_key, openai_gateway

LONG = "word " * 400  # estimated far above the tiny tpm below


async def post(g: Gateway, key: str, xff: str | None = None, **extra: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    async with httpx.AsyncClient(base_url=g.url, timeout=10) as c:
        return await c.post("/v1/chat/completions", json=chat_body(**extra), headers=headers)


def assert_429(r: httpx.Response, message: str) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["message"] == message
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["Retry-After"]) >= 1


async def test_rpm_refuses_with_retry_after(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A key with rpm=2 gets its third request of the minute refused with Retry-After."""
    async with openai_gateway(tmp_path, fake_openai) as g:
        key, _ = await new_key(g, rpm=2)
        assert (await post(g, key)).status_code == 200
        assert (await post(g, key)).status_code == 200
        assert_429(await post(g, key), "rate limit exceeded: requests per minute")
        assert (await post(g, g.api_key)).status_code == 200  # other keys are unaffected
    assert len(fake_openai.requests) == 3


async def test_tpm_refuses_with_retry_after(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A request estimated above tpm empties the bucket; the next one waits for it."""
    async with openai_gateway(tmp_path, fake_openai) as g:
        key, _ = await new_key(g, tpm=100)
        big = [{"role": "user", "content": LONG}]
        assert (await post(g, key, messages=big)).status_code == 200
        assert_429(await post(g, key), "rate limit exceeded: tokens per minute")


async def test_tokens_beyond_the_estimate_count_against_tpm(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """An answer far longer than its estimate drains the tpm bucket after the fact."""
    fake_openai.script(Reply(usage=(10, 5000)), Reply(usage=(10, 5)))
    async with openai_gateway(tmp_path, fake_openai) as g:
        key, _ = await new_key(g, tpm=1000)
        assert (await post(g, key, max_tokens=5)).status_code == 200  # admitted ~20 tokens
        assert_429(await post(g, key, max_tokens=5), "rate limit exceeded: tokens per minute")
    assert len(fake_openai.requests) == 1


async def test_per_ip_bucket(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """With a burst of 2, the third quick request from one IP is 429 before auth."""
    env = {"rate_limit_rps": "0.1", "rate_limit_burst": "2"}
    async with openai_gateway(tmp_path, fake_openai, **env) as g:
        assert (await post(g, g.api_key)).status_code == 200
        assert (await post(g, g.api_key)).status_code == 200
        r = await post(g, "not-even-a-key")
        assert_429(r, "rate limit exceeded")
        assert int(r.headers["Retry-After"]) >= 5  # 1 request per 10 s refills
        # the admin API has its own bucket
        assert (await g.admin.get("/admin/v1/apikeys")).status_code == 200


async def test_admin_bucket_is_separate(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Draining the admin bucket gives admin 429s while /v1 keeps serving."""
    env = {"admin_rate_limit_rps": "0.1", "admin_rate_limit_burst": "6"}
    async with openai_gateway(tmp_path, fake_openai, **env) as g:
        # start-up used 3 (key, provider, model): 3 are left
        codes = [(await g.admin.get("/admin/v1/info")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await g.admin.get("/admin/v1/info")
        assert r.json()["error"]["message"] == "admin rate limit exceeded"
        assert int(r.headers["Retry-After"]) >= 1
        assert (await post(g, g.api_key)).status_code == 200


async def test_xff_from_a_trusted_proxy_splits_buckets(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Behind a trusted 127.0.0.1, two XFF clients each get their own bucket."""
    env = {"rate_limit_rps": "0.1", "rate_limit_burst": "1", "trusted_proxies": "127.0.0.1"}
    async with openai_gateway(tmp_path, fake_openai, **env) as g:
        assert (await post(g, g.api_key, xff="203.0.113.1")).status_code == 200
        assert (await post(g, g.api_key, xff="203.0.113.1")).status_code == 429
        assert (await post(g, g.api_key, xff="203.0.113.2")).status_code == 200
        # a forged left-hand entry does not buy a fresh bucket
        forged = await post(g, g.api_key, xff="198.51.100.9, 203.0.113.2")
        assert forged.status_code == 429


async def test_xff_is_ignored_without_trusted_proxies(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """With no trusted proxy, XFF is ignored: different XFF values share the peer's bucket."""
    env = {"rate_limit_rps": "0.1", "rate_limit_burst": "1"}
    async with openai_gateway(tmp_path, fake_openai, **env) as g:
        assert (await post(g, g.api_key, xff="203.0.113.1")).status_code == 200
        assert (await post(g, g.api_key, xff="203.0.113.2")).status_code == 429
