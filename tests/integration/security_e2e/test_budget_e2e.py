"""A key's monthly budget through the gateway: 50 concurrent OpenAI SDK requests never
spend past it, and what is recorded is exactly what was served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.security_e2e.support import (
    HELLO,
    MODEL,
    key_view,
    new_key,
    oai,
    openai_gateway,
)

# $1 per 1k input tokens, $2 per 1k output: the fake's usage (1, 5) costs $0.011.
PRICES = {"input_per_1k": 1.0, "output_per_1k": 2.0}
USAGE = (1, 5)
UNIT_COST = 0.011
BUDGET = 0.1
OVER_BUDGET = "429 budget exceeded"


async def one(client: openai.AsyncOpenAI) -> str:
    """One request: "ok", or the refusal's status and message."""
    try:
        await client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5)
    except openai.APIStatusError as exc:
        message = exc.body.get("message") if isinstance(exc.body, dict) else exc.message
        return f"{exc.status_code} {message}"
    return "ok"


async def test_concurrent_requests_never_pass_the_budget(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Some of 50 concurrent requests succeed, the rest get 429 budget exceeded, and the
    key's spend is successes x unit cost, within the budget."""
    fake_openai.script(*[Reply(usage=USAGE, delay_s=0.05) for _ in range(50)])
    async with openai_gateway(tmp_path, fake_openai, **PRICES) as g:
        key, view = await new_key(g, monthly_budget_usd=BUDGET)
        async with oai(g, key, timeout=20) as client:
            results = await asyncio.gather(*(one(client) for _ in range(50)))
        spent = (await key_view(g, view["id"]))["month_to_date_spend_usd"]
    ok = results.count("ok")
    refused = [r for r in results if r != "ok"]
    assert 0 < ok < 50
    assert len(fake_openai.requests) == ok  # nothing refused reached the upstream
    assert spent <= BUDGET
    assert abs(spent - ok * UNIT_COST) < 1e-9
    assert set(refused) == {OVER_BUDGET}, set(refused)


async def test_concurrent_refusals_say_budget_exceeded(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Every one of 50 concurrent requests the budget refuses gets 429 budget exceeded."""
    fake_openai.script(*[Reply(usage=USAGE, delay_s=0.05) for _ in range(50)])
    async with openai_gateway(tmp_path, fake_openai, **PRICES) as g:
        key, _ = await new_key(g, monthly_budget_usd=BUDGET)
        async with oai(g, key, timeout=20) as client:
            results = await asyncio.gather(*(one(client) for _ in range(50)))
    assert {r for r in results if r != "ok"} == {OVER_BUDGET}


async def test_an_exhausted_budget_is_429_not_a_routing_error(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Once the remaining budget is below one request's cost, the next one is 429."""
    async with openai_gateway(tmp_path, fake_openai, **PRICES) as g:
        fake_openai.script(Reply(usage=USAGE))
        key, _ = await new_key(g, monthly_budget_usd=0.02)
        async with oai(g, key) as client:
            assert await one(client) == "ok"  # 0.009 left: less than any reservation
            assert await one(client) == OVER_BUDGET


async def test_a_stream_settles_its_real_cost(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A streamed answer's usage is what the key is charged, not the reservation."""
    fake_openai.script(Reply(usage=(3, 7), text="streamed answer"))
    async with openai_gateway(tmp_path, fake_openai, **PRICES) as g:
        key, view = await new_key(g, monthly_budget_usd=BUDGET)
        async with oai(g, key) as client:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=HELLO,
                max_tokens=20,
                stream=True,
                stream_options={"include_usage": True},
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        spent = (await key_view(g, view["id"]))["month_to_date_spend_usd"]
    assert text == "streamed answer"
    assert abs(spent - (3 * 1.0 + 7 * 2.0) / 1000) < 1e-9
