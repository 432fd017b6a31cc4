"""The embeddings capability: neutral types, the ``Embedder`` protocol, the OpenAI wire.

Embeddings are a capability beside the chat ``Adapter`` protocol, not part of it: an
adapter that can embed also implements ``Embedder`` (the OpenAI-compatible adapters and
the mock do; Anthropic has no embeddings API). The router checks with ``is_embedder``.

A model serves embeddings when its labels say ``{"kind": "embedding"}``.

Like chat, an adapter that speaks the client's dialect (OpenAI) forwards the client's
body with only ``model`` swapped, and hands back the upstream bytes in ``raw`` for the
surface to pass through; the neutral fields (vectors, usage) are always filled too.
Base64 vectors are little-endian float32, as OpenAI sends them.
"""

from __future__ import annotations

import base64
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeGuard, runtime_checkable

from tokenhub.types import Dialect, ModelConfig, Target, Usage

EncodingFormat = Literal["float", "base64"]
EMBEDDING_KIND = "embedding"

Inputs = list[str] | list[list[int]]
"""Texts, or token arrays (passed through to providers that take them)."""


@dataclass(slots=True)
class EmbeddingRequest:
    """One embeddings request, whatever dialect it arrived in."""

    inputs: Inputs
    model: str | None = None  # the client's model hint
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = None
    user: str | None = None
    request_id: str = ""
    # Fast path: the body as the client sent it; an adapter of the same dialect
    # forwards it with the model swapped.
    dialect: Dialect = Dialect.NONE
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class EmbeddingResponse:
    """The vectors, in input order, and what producing them cost."""

    model: str
    vectors: list[list[float]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)  # prompt tokens only
    # Fast path: the upstream body untouched, when the provider speaks ``dialect``.
    dialect: Dialect = Dialect.NONE
    raw: bytes | None = None


@runtime_checkable
class Embedder(Protocol):
    """An adapter that can turn inputs into vectors."""

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse: ...


def is_embedder(adapter: object) -> TypeGuard[Embedder]:
    """Whether ``adapter`` implements ``Embedder``."""
    return callable(getattr(adapter, "embed", None))


def is_embedding_model(model: ModelConfig) -> bool:
    """Whether ``model`` is marked as an embedding model (``labels["kind"]``)."""
    return model.labels.get("kind") == EMBEDDING_KIND


# --- float32 vectors as base64 ---------------------------------------------------------


def pack_vector(vector: list[float]) -> str:
    """A vector as base64 of little-endian float32, OpenAI's ``encoding_format=base64``."""
    values = array("f", vector)
    if sys.byteorder != "little":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def unpack_vector(text: str) -> list[float]:
    """The inverse of ``pack_vector``; ``ValueError`` when ``text`` is not one."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise ValueError("base64 vector length is not a multiple of 4 bytes")
    values = array("f")
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


# --- the OpenAI wire -------------------------------------------------------------------


def build_embedding_body(req: EmbeddingRequest, model: str) -> dict[str, Any]:
    """The ``POST /v1/embeddings`` body: the client's own when it spoke OpenAI."""
    if req.dialect is Dialect.OPENAI and req.raw is not None:
        return {**req.raw, "model": model}
    body: dict[str, Any] = {
        "model": model,
        "input": req.inputs,
        "encoding_format": req.encoding_format,
    }
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    if req.user is not None:
        body["user"] = req.user
    return body


def parse_embedding_response(data: dict[str, Any], raw: bytes, model: str) -> EmbeddingResponse:
    """A neutral response from an OpenAI embeddings body (float or base64 vectors).

    Shape surprises raise ``KeyError``/``TypeError``/``ValueError``; the adapter turns
    them into a transient ``ProviderError``.
    """
    items = sorted(data["data"], key=lambda item: int(item.get("index", 0)))
    vectors = [_vector(item["embedding"]) for item in items]
    usage = data.get("usage") or {}
    return EmbeddingResponse(
        model=str(data.get("model") or model),
        vectors=vectors,
        usage=Usage(prompt_tokens=int(usage.get("prompt_tokens") or 0)),
        dialect=Dialect.OPENAI,
        raw=raw,
    )


def _vector(value: object) -> list[float]:
    if isinstance(value, str):
        return unpack_vector(value)
    if not isinstance(value, list):
        raise TypeError("embedding is neither a list nor base64")
    return [float(x) for x in value]
