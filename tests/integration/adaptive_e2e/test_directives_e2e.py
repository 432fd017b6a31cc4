"""In-band ``@@tokenhub`` directives through the real gateway: they steer routing and
never reach the upstream, on the OpenAI and the Anthropic pass-through paths."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI
from tests.integration.adaptive_e2e.support import ant_sdk, gateway, oai, user

BLOCK = "@@tokenhub\nmode=cheap\nmodel=small\n@@end\nSummarise the report."


def no_directive(up: FakeOpenAI | FakeAnthropic) -> None:
    """Nothing the fake received mentions a directive."""
    assert up.requests
    for rec in up.requests:
        assert b"@@tokenhub" not in orjson.dumps(rec.json)
        assert b"@@end" not in orjson.dumps(rec.json)


async def test_line_directive_picks_the_model_and_is_stripped(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """A one-line directive naming a model routes there; the upstream never sees it."""
    async with gateway(tmp_path, fake_openai) as g:
        text = "@@tokenhub mode=cheap budget=0.5 model=small\nWhat is 2+2?"
        body = {"model": "big", "messages": user(text)}
        r = await g.client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["x-tokenhub-model"] == "small"
        assert r.headers["x-tokenhub-reason"] == "model-hint"
        (rec,) = fake_openai.requests
        assert rec.json["model"] == "small"
        assert rec.json["messages"] == [{"role": "user", "content": "What is 2+2?"}]
        no_directive(fake_openai)


async def test_mode_cheap_directive_changes_the_choice(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Under a high_confidence default the strong model wins; ``mode=cheap`` overrides it."""
    async with gateway(tmp_path, fake_openai) as g:
        r = await g.admin.put("/admin/v1/routing-config", json={"default_mode": "high_confidence"})
        assert r.status_code == 200, r.text
        plain = await g.client.post(
            "/v1/chat/completions", json={"messages": user("Explain entropy.")}
        )
        cheap = await g.client.post(
            "/v1/chat/completions",
            json={"messages": user("@@tokenhub mode=cheap\nExplain entropy.")},
        )
        assert plain.status_code == cheap.status_code == 200, cheap.text
        assert plain.headers["x-tokenhub-model"] == "big"
        assert cheap.headers["x-tokenhub-model"] == "small"
        assert fake_openai.requests[1].json["messages"][0]["content"] == "Explain entropy."
        no_directive(fake_openai)


async def test_block_directive_in_text_parts_with_the_sdk(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """A block directive inside a text part (official SDK) routes and is stripped."""
    async with gateway(tmp_path, fake_openai) as g, oai(g) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="big",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": BLOCK}]},
            ],
        )
        assert raw.headers["x-tokenhub-model"] == "small"
        assert raw.parse().choices[0].message.content == "Hello from fake"
        sent = fake_openai.requests[0].json["messages"]
        assert "Summarise the report." in orjson.dumps(sent).decode()
        no_directive(fake_openai)


async def test_anthropic_pass_through_is_stripped(
    tmp_path: Path, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    """On /v1/messages to an Anthropic model the forwarded bytes carry no directive."""
    async with gateway(tmp_path, fake_openai, fake_anthropic) as g, ant_sdk(g) as client:
        raw = await client.messages.with_raw_response.create(
            model="big",
            max_tokens=32,
            system="@@tokenhub mode=cheap\nBe brief.",
            messages=[
                {"role": "user", "content": "@@tokenhub model=claude-x budget=0.5\nHello?"},
                {"role": "assistant", "content": "Hi."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "@@tokenhub\nlatency=9000\n@@end\nMore"}],
                },
            ],
        )
        assert raw.headers["x-tokenhub-model"] == "claude-x"
        assert (await raw.parse()).content[0].text == "Hello from fake"
        (rec,) = fake_anthropic.requests
        assert rec.json["model"] == "claude-x"
        assert rec.json["messages"][0]["content"] in (
            "Hello?",
            [{"type": "text", "text": "Hello?"}],
        )
        assert fake_openai.requests == []
        no_directive(fake_anthropic)


async def test_openai_stream_is_stripped(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A streamed request's directive is honoured and stripped as well."""
    async with gateway(tmp_path, fake_openai) as g, oai(g) as client:
        stream = await client.chat.completions.create(
            model="big", messages=user("@@tokenhub model=small\nStream it"), stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from fake"
        assert fake_openai.requests[0].json["model"] == "small"
        no_directive(fake_openai)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("@@tokenhub mode=turbo", "mode"),
        ("@@tokenhub budget=lots", "budget"),
        ("@@tokenhub latency=-4", "latency"),
        ("@@tokenhub colour=blue", "colour"),
    ],
)
async def test_invalid_directive_is_400_in_each_dialect(
    tmp_path: Path, fake_openai: FakeOpenAI, line: str, key: str
) -> None:
    """A bad directive value is a 400 naming the key, in the surface's own error shape."""
    async with gateway(tmp_path, fake_openai) as g:
        r = await g.client.post(
            "/v1/chat/completions", json={"model": "big", "messages": user(f"{line}\nhi")}
        )
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and key in err["message"]
        body = {"model": "big", "max_tokens": 8, "messages": user(f"{line}\nhi")}
        r = await g.client.post("/v1/messages", json=body)
        assert r.status_code == 400, r.text
        data = r.json()
        assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
        assert key in data["error"]["message"]
        assert fake_openai.requests == []
