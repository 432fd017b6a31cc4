"""The adapter contract: one small protocol every provider module implements.

An adapter speaks one provider protocol. It translates a neutral ``ChatRequest`` to the
wire and back, classifies failures into ``ProviderError(error_class)``, and streams
neutral ``Chunk`` values. It never retries and never chooses a model: that is the
router's job.

Streaming contract: ``stream()`` returns an async iterator. An HTTP error status or a
connection failure must be raised as ``ProviderError`` *before* the first chunk is
yielded (so the router can still fail over); a failure after that is raised from the
iterator as ``ProviderError`` too, and the surface ends the stream with an error event.
Closing the iterator (``aclose()``) must cancel the upstream request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, runtime_checkable

from tokenhub.types import ChatRequest, ChatResponse, Chunk, Dialect, ProviderConfig, Target

CredentialLookup = Callable[[str], str | None]
"""provider id -> api key, or None. The one seam through which adapters get secrets
(memory now, the vault later). Called per request: it must be an in-memory lookup."""


@runtime_checkable
class Adapter(Protocol):
    """A provider protocol bound to one configured provider."""

    config: ProviderConfig
    dialect: Dialect  # the wire dialect, for byte pass-through; Dialect.NONE if none

    async def complete(self, req: ChatRequest, target: Target) -> ChatResponse: ...

    def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]: ...

    async def list_models(self) -> list[str]:
        """Model ids the provider serves (``GET /v1/models`` or equivalent)."""
        ...

    async def close(self) -> None: ...


AdapterFactory = Callable[[ProviderConfig, CredentialLookup], Adapter]
