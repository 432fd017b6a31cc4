"""The built-in demo catalogue: a mock provider and four models of clearly different
weight, price and latency, registered when no provider is configured (TOKENHUB_DEMO)
so that the first request works without any provider key. Kept in memory only.
"""

from __future__ import annotations

from tokenhub.types import ModelConfig, ProviderConfig

DEMO_PROVIDER_ID = "demo-mock"

_MODELS = (
    # id, weight, context, input $/1K, output $/1K, latency ms
    ("demo/tiny", 2, 4096, 0.0001, 0.0002, 5),
    ("demo/small", 4, 16384, 0.0005, 0.0015, 15),
    ("demo/medium", 7, 65536, 0.003, 0.006, 40),
    ("demo/large", 10, 200000, 0.015, 0.06, 80),
)


def demo_provider() -> ProviderConfig:
    return ProviderConfig(
        id=DEMO_PROVIDER_ID,
        type="mock",
        enabled=True,
        options={
            "latency_ms": 10,
            "models": [m[0] for m in _MODELS],
            "demo": True,
        },
    )


def demo_models() -> list[ModelConfig]:
    return [
        ModelConfig(
            id=mid,
            provider_id=DEMO_PROVIDER_ID,
            weight=weight,
            max_context_tokens=ctx,
            input_per_1k=cin,
            output_per_1k=cout,
            labels={"demo": True, "latency_ms": latency},
        )
        for mid, weight, ctx, cin, cout, latency in _MODELS
    ]
