"""GET /metrics of a running gateway after a known mix of traffic."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.harness import gateway_settings, run_gateway
from tests.integration.observe_e2e.helpers import Samples, chat, eventually, scrape, value

PAIR = {"model": "m-a", "provider": "a"}
IN_PER_1K, OUT_PER_1K = 0.01, 0.02  # small enough for the default $0.05 budget
USAGE = (10, 5)  # the fake's (prompt, completion) tokens per answer


async def test_metrics_count_known_traffic(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Requests, tokens, cost, latency, TTFT and failovers add up to the traffic sent;
    nothing is left in flight and the recorder gauges are exported."""
    fake_openai.script(Reply(status=500), Reply(text="recovered"))
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("m-a", "a", input_per_1k=IN_PER_1K, output_per_1k=OUT_PER_1K)
        first = await chat(g, "m-a")  # 500, then retried on the same model
        assert (
            first.status_code == 200 and first.headers["x-tokenhub-reason"] == "retried-transient"
        )
        for _ in range(3):
            assert (await chat(g, "m-a")).status_code == 200
        for _ in range(2):
            streamed = await chat(g, "m-a", stream=True)
            assert streamed.status_code == 200 and "[DONE]" in streamed.text
        bad = await g.client.post("/v1/chat/completions", content=b"{oops")
        assert bad.status_code == 400

        async def settled() -> Samples | None:
            s = await scrape(g)
            done = value(s, "tokenhub_requests_total", status="200", **PAIR) == 6
            return s if done and value(s, "tokenhub_requests_total", status="400") == 1 else None

        s = await eventually(settled)

    ok = 6
    assert value(s, "tokenhub_requests_total", model="none", provider="none", status="400") == 1
    assert value(s, "tokenhub_input_tokens_total", **PAIR) == ok * USAGE[0]
    assert value(s, "tokenhub_output_tokens_total", **PAIR) == ok * USAGE[1]
    each = USAGE[0] / 1000 * IN_PER_1K + USAGE[1] / 1000 * OUT_PER_1K
    assert value(s, "tokenhub_cost_usd_total", **PAIR) == pytest.approx(ok * each)
    assert value(s, "tokenhub_request_latency_ms_count", **PAIR) == ok
    assert value(s, "tokenhub_request_latency_ms_bucket", le="+Inf", **PAIR) == ok
    assert value(s, "tokenhub_request_latency_ms_sum", **PAIR) > 0
    assert value(s, "tokenhub_time_to_first_token_ms_count", **PAIR) == 2
    assert value(s, "tokenhub_failovers_total", error_class="transient") == 1
    assert value(s, "tokenhub_failovers_total") == 1
    assert value(s, "tokenhub_requests_in_flight") == 0
    assert ("tokenhub_recorder_queue_depth", frozenset()) in s
    assert value(s, "tokenhub_recorder_dropped_total") + value(s, "tokenhub_recorder_dropped") == 0
    assert value(s, "tokenhub_provider_health_state", provider="a") == 0
