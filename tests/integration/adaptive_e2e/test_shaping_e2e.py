"""Output shaping through the real gateway: response_format on /v1/chat/completions and
output_format on /v1/chat, with one repair turn, strip_think and text truncation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.adaptive_e2e.support import gateway, log_row, oai, user
from tests.integration.harness import Gateway

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}
GOOD = '{"city": "Oslo", "population": 709000}'
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}


def completions(**extra: Any) -> dict[str, Any]:
    return {"model": "big", "messages": user("Largest city of Norway?"), **extra}


def native(output_format: Any) -> dict[str, Any]:
    return {
        "request": {"messages": user("Largest city of Norway?"), "model_hint": "big"},
        "output_format": output_format,
    }


async def post_native(g: Gateway, output_format: Any) -> Any:
    return await g.client.post("/v1/chat", json=native(output_format))


async def test_valid_json_schema_answer_passes(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A schema-valid answer comes back (compact) after one call, with a JSON hint sent."""
    fake_openai.script(Reply(text=f"Sure:\n```json\n{GOOD}\n```"))
    async with gateway(tmp_path, fake_openai) as g, oai(g) as client:
        resp = await client.chat.completions.create(
            model="big",
            messages=user("Largest city of Norway?"),
            response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
        )
        assert orjson.loads(resp.choices[0].message.content or "") == orjson.loads(GOOD)
        (rec,) = fake_openai.requests
        system = [m for m in rec.json["messages"] if m["role"] == "system"]
        assert system and "JSON Schema" in system[0]["content"]


async def test_invalid_then_repaired_completions(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A bad first answer gets one repair call; the client sees the repaired JSON."""
    fake_openai.script(Reply(text="Oslo, about 700k people"), Reply(text=GOOD))
    async with gateway(tmp_path, fake_openai) as g:
        r = await g.client.post(
            "/v1/chat/completions",
            json=completions(response_format=RESPONSE_FORMAT),
            headers={"X-Request-ID": "shape-repair-1"},
        )
        assert r.status_code == 200, r.text
        content = r.json()["choices"][0]["message"]["content"]
        assert orjson.loads(content) == {"city": "Oslo", "population": 709000}
        row = await log_row(g, "shape-repair-1")
        assert (row["tokens_in"], row["tokens_out"]) == (20, 10)  # both calls billed
        assert len(fake_openai.requests) == 2
        repair = fake_openai.requests[1].json["messages"]
        assert repair[-2] == {"role": "assistant", "content": "Oslo, about 700k people"}
        assert "required format" in repair[-1]["content"]
        assert {r.json["model"] for r in fake_openai.requests} == {"big"}


async def test_invalid_then_repaired_native(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """output_format json on /v1/chat repairs a schema violation with a second call."""
    fake_openai.script(Reply(text='{"city": "Oslo"}'), Reply(text=GOOD))
    async with gateway(tmp_path, fake_openai) as g:
        r = await post_native(g, {"type": "json", "schema": SCHEMA})
        assert r.status_code == 200, r.text
        data = r.json()
        assert orjson.loads(data["response"]["content"])["population"] == 709000
        assert data["negotiated_model"] == "big"
        assert len(fake_openai.requests) == 2
        assert "population" in fake_openai.requests[1].json["messages"][-1]["content"]


@pytest.mark.parametrize("surface", ["completions", "native"])
async def test_two_bad_answers_are_502_listing_errors(
    tmp_path: Path, fake_openai: FakeOpenAI, surface: str
) -> None:
    """Still invalid after the repair: 502 whose details list the schema errors."""
    fake_openai.script(Reply(text='{"city": 5}'), Reply(text='{"city": "Oslo"}'))
    async with gateway(tmp_path, fake_openai) as g:
        if surface == "completions":
            r = await g.client.post(
                "/v1/chat/completions", json=completions(response_format=RESPONSE_FORMAT)
            )
        else:
            r = await post_native(g, {"type": "json", "schema": SCHEMA})
        assert r.status_code == 502, r.text
        err = r.json()["error"]
        errors = err["details"]["errors"]
        assert any("population" in e for e in errors), errors
        assert len(fake_openai.requests) == 2


async def test_json_object_needs_json(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """response_format json_object: prose without JSON is repaired into a JSON value."""
    fake_openai.script(Reply(text="I cannot say."), Reply(text='{"answer": "Oslo"}'))
    async with gateway(tmp_path, fake_openai) as g:
        r = await g.client.post(
            "/v1/chat/completions", json=completions(response_format={"type": "json_object"})
        )
        assert r.status_code == 200, r.text
        assert orjson.loads(r.json()["choices"][0]["message"]["content"]) == {"answer": "Oslo"}
        assert len(fake_openai.requests) == 2


async def test_strip_think(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """strip_think removes the reasoning block before the JSON is checked."""
    fake_openai.script(Reply(text=f"<think>Norway... Oslo {{maybe}}</think>\n{GOOD}"))
    async with gateway(tmp_path, fake_openai) as g:
        r = await post_native(g, {"type": "json", "schema": SCHEMA, "strip_think": True})
        assert r.status_code == 200, r.text
        content = r.json()["response"]["content"]
        assert "think" not in content and orjson.loads(content)["city"] == "Oslo"
        assert len(fake_openai.requests) == 1
        fake_openai.script(Reply(text="<think>hmm</think>The answer is Oslo."))
        r = await post_native(g, {"type": "text", "strip_think": True})
        assert r.json()["response"]["content"] == "The answer is Oslo."


async def test_text_max_tokens_truncates(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A text format with max_tokens cuts a long answer to a prefix of it."""
    long = " ".join(f"word{i}" for i in range(200))
    fake_openai.script(Reply(text=long), Reply(text=long))
    async with gateway(tmp_path, fake_openai) as g:
        r = await post_native(g, {"type": "text", "max_tokens": 10})
        assert r.status_code == 200, r.text
        cut = r.json()["response"]["content"]
        assert 0 < len(cut) < len(long) // 4 and long.startswith(cut)
        r = await post_native(g, "text")
        assert r.json()["response"]["content"] == long
        assert len(fake_openai.requests) == 2
