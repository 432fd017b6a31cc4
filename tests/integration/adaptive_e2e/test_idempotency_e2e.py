"""Idempotency-Key through the real gateway: replays, concurrent duplicates, body
conflicts, per-key isolation, and streams (replayed when complete, not when broken)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.adaptive_e2e.support import client_for, gateway, new_key, oai, user
from tests.integration.harness import Gateway

BODY = {"model": "big", "messages": user("charge the card once")}


def streamed_text(r: httpx.Response) -> str:
    """The concatenated delta contents of an OpenAI SSE body."""
    out = []
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


def idem(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def post(g: Gateway, body: dict[str, Any], key: str) -> httpx.Response:
    return await g.client.post("/v1/chat/completions", json=body, headers=idem(key))


async def test_replay_is_identical_and_calls_once(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """The same key and body twice: the second answer is the first, replayed, one call."""
    async with gateway(tmp_path, fake_openai) as g:
        first = await post(g, BODY, "order-1")
        second = await post(g, BODY, "order-1")
        assert first.status_code == second.status_code == 200, second.text
        assert second.content == first.content
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        for name in ("x-tokenhub-model", "x-tokenhub-reason", "content-type"):
            assert second.headers[name] == first.headers[name]
        assert len(fake_openai.requests) == 1


async def test_sdk_replay(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """The official SDK with an Idempotency-Key header gets the same completion twice."""
    async with gateway(tmp_path, fake_openai) as g, oai(g) as client:
        call = client.chat.completions.create
        a = await call(model="big", messages=user("x"), extra_headers=idem("sdk-1"))
        b = await call(model="big", messages=user("x"), extra_headers=idem("sdk-1"))
        assert a.id == b.id and a.choices[0].message.content == b.choices[0].message.content
        assert len(fake_openai.requests) == 1


async def test_concurrent_duplicates_make_one_call(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Five concurrent duplicates: one upstream call, five identical answers."""
    fake_openai.script(Reply(text="slow answer", delay_s=0.3))
    async with gateway(tmp_path, fake_openai) as g:
        answers = await asyncio.gather(*(post(g, BODY, "burst-1") for _ in range(5)))
        assert [a.status_code for a in answers] == [200] * 5
        assert len({a.content for a in answers}) == 1
        replayed = [a.headers.get("idempotent-replayed") for a in answers]
        assert replayed.count("true") == 4
        assert len(fake_openai.requests) == 1


async def test_same_key_other_body_is_422(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Reusing a key with a different body is a 422, and nothing is sent upstream."""
    async with gateway(tmp_path, fake_openai) as g:
        assert (await post(g, BODY, "order-2")).status_code == 200
        other = {**BODY, "messages": user("charge the card twice")}
        r = await post(g, other, "order-2")
        assert r.status_code == 422, r.text
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert len(fake_openai.requests) == 1


async def test_keys_are_per_api_key(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Another API key using the same Idempotency-Key is served on its own."""
    fake_openai.script(Reply(text="for the harness key"), Reply(text="for the other key"))
    async with gateway(tmp_path, fake_openai) as g:
        key, _ = await new_key(g, "chat")
        mine = await post(g, BODY, "shared-key")
        async with client_for(g, key) as other:
            theirs = await other.post("/v1/chat/completions", json=BODY, headers=idem("shared-key"))
            again = await other.post("/v1/chat/completions", json=BODY, headers=idem("shared-key"))
        assert theirs.status_code == 200 and "idempotent-replayed" not in theirs.headers
        text = theirs.json()["choices"][0]["message"]["content"]
        assert text == "for the other key"
        assert mine.json()["choices"][0]["message"]["content"] == "for the harness key"
        assert again.content == theirs.content and again.headers["idempotent-replayed"] == "true"
        assert len(fake_openai.requests) == 2


async def test_a_stream_is_stored_and_replayed(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A completed stream with a key is replayed, events and all, without a second call;
    the official SDK reads the replay like a live stream."""
    fake_openai.script(Reply(text="only once"), Reply(text="twice?"))
    body = {**BODY, "stream": True}
    async with gateway(tmp_path, fake_openai) as g:
        first = await post(g, body, "stream-1")
        second = await post(g, body, "stream-1")
        assert first.status_code == second.status_code == 200
        assert "idempotent-replayed" not in first.headers
        assert second.headers["idempotent-replayed"] == "true"
        for r in (first, second):
            assert r.headers["content-type"].startswith("text/event-stream")
        assert second.text == first.text and streamed_text(second) == "only once"
        assert second.text.rstrip().endswith("data: [DONE]")

        sdk = openai.AsyncOpenAI(base_url=g.v1, api_key=g.api_key, max_retries=0)
        stream = await sdk.chat.completions.create(
            model="big",
            messages=BODY["messages"],
            stream=True,
            extra_headers=idem("stream-1"),
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await sdk.close()
        assert text == "only once"
        assert len(fake_openai.requests) == 1


async def test_a_broken_stream_is_not_stored(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A stream the upstream cut after its first events is not replayed: the retry with
    the same key reaches the upstream and gets a whole answer."""
    fake_openai.script(Reply(text="cut short here", break_after=2), Reply(text="whole"))
    body = {**BODY, "stream": True}
    async with gateway(tmp_path, fake_openai) as g:
        broken = await post(g, body, "stream-2")
        assert broken.status_code == 200  # the head had gone out before the cut
        assert "error" in broken.text
        retried = await post(g, body, "stream-2")
        assert "idempotent-replayed" not in retried.headers
        assert streamed_text(retried) == "whole"
        assert len(fake_openai.requests) == 2


async def test_upstream_failure_is_not_stored(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A 5xx answer is not replayed: a retry with the same key reaches the upstream."""
    async with gateway(tmp_path, fake_openai) as g:
        r = await g.admin.put("/admin/v1/routing-config", json={"max_attempts": 1})
        assert r.status_code == 200, r.text
        fake_openai.script(*[Reply(status=500)] * 3)  # one attempt, two backoff retries
        failed = await post(g, {**BODY, "model": "small"}, "retry-1")
        assert failed.status_code >= 500
        calls = len(fake_openai.requests)
        fake_openai.script(Reply(text="recovered"))
        ok = await post(g, {**BODY, "model": "small"}, "retry-1")
        assert ok.status_code == 200 and "idempotent-replayed" not in ok.headers
        assert ok.json()["choices"][0]["message"]["content"] == "recovered"
        assert (calls, len(fake_openai.requests)) == (3, 4)
