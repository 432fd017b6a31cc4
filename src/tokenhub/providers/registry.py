"""The name registry of adapter types: ``ProviderConfig.type`` -> adapter class."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tokenhub.providers.anthropic import AnthropicAdapter
from tokenhub.providers.base import Adapter, CredentialLookup
from tokenhub.providers.mock import MockAdapter
from tokenhub.providers.openai import OpenAIAdapter
from tokenhub.providers.vllm import VLLMAdapter
from tokenhub.types import Clock, ProviderConfig, monotonic

ADAPTER_TYPES: Mapping[str, type] = MappingProxyType(
    {
        "openai": OpenAIAdapter,
        "anthropic": AnthropicAdapter,
        "vllm": VLLMAdapter,
        "mock": MockAdapter,
    }
)
"""Read-only; every class takes ``(config, credentials, *, clock)``."""

_KEYED_TYPES = frozenset({"openai", "anthropic"})


def create_adapter(
    config: ProviderConfig, credentials: CredentialLookup, *, clock: Clock = monotonic
) -> Adapter:
    """A new adapter for ``config``; raises ``ValueError`` for an unknown type."""
    cls = ADAPTER_TYPES.get(config.type)
    if cls is None:
        known = ", ".join(sorted(ADAPTER_TYPES))
        raise ValueError(f"unknown provider type {config.type!r} (known: {known})")
    adapter: Adapter = cls(config, credentials, clock=clock)
    return adapter


def needs_api_key(type: str) -> bool:
    """Whether providers of this type need an API key (openai, anthropic) or not."""
    return type in _KEYED_TYPES
