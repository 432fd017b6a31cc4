"""An in-process provider with no network: deterministic answers for demos and tests.

Options (``config.options``):

- ``latency_ms`` (float, 0): slept once before answering (before the first chunk).
- ``failure_rate`` (0-1, 0): share of calls that fail, drawn from ``random.Random(seed)``.
- ``seed``: seed of that draw, so a run's failures are reproducible.
- ``error_status`` (500): the status a failure pretends; classified like a real one.
- ``models`` (list of ids): what ``list_models`` returns.
- ``dims`` (int, 8): length of embedding vectors, unless a request asks for ``dimensions``.

The answer is ``"[<model id>] "`` plus an echo of the last user message (cut to 200
characters). Tokens are counted as whitespace-separated words. ``max_tokens`` cuts the
answer (``finish_reason="length"``). With tools given and a last user message containing
``"call <tool name>"``, the answer is a call to that tool with arguments ``"{}"``.

Embeddings (``embed``) are unit vectors drawn from a hash of each input (``mock_vector``),
so equal inputs get equal vectors; an input's tokens are its words (or its token array).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tokenhub.errors import ProviderError
from tokenhub.providers.base import CredentialLookup
from tokenhub.providers.embeddings import EmbeddingRequest, EmbeddingResponse
from tokenhub.providers.errors import classify
from tokenhub.types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Clock,
    Dialect,
    ProviderConfig,
    Target,
    ToolCall,
    ToolCallDelta,
    Usage,
    monotonic,
)

ECHO_CHARS = 200
DEFAULT_DIMS = 8
_WORD = re.compile(r"\S+\s*")


def count_tokens(text: str) -> int:
    """The mock's token count: whitespace-separated words."""
    return len(text.split())


def mock_vector(item: str | list[int], dims: int) -> list[float]:
    """The mock's embedding of one input: a unit vector of ``dims`` floats from its hash."""
    key = item.encode() if isinstance(item, str) else ",".join(map(str, item)).encode()
    values: list[float] = []
    block = 0
    while len(values) < dims:
        digest = hashlib.blake2b(key, digest_size=64, salt=block.to_bytes(16, "little")).digest()
        # two bytes per value, mapped onto [-1, 1]
        values += [
            int.from_bytes(digest[i : i + 2], "little") / 32767.5 - 1.0 for i in range(0, 64, 2)
        ]
        block += 1
    values = values[:dims]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


@dataclass(slots=True)
class _Answer:
    text: str | None
    tool_call: ToolCall | None
    finish_reason: str
    usage: Usage


class MockAdapter:
    """A provider that answers in-process; see the module docstring for its options."""

    dialect: Dialect = Dialect.NONE

    def __init__(
        self, config: ProviderConfig, credentials: CredentialLookup, *, clock: Clock = monotonic
    ) -> None:
        self.config = config
        opts = config.options
        self._latency_s = float(opts.get("latency_ms", 0.0)) / 1000.0
        self._failure_rate = float(opts.get("failure_rate", 0.0))
        self._error_status = int(opts.get("error_status", 500))
        self._models = [str(m) for m in opts.get("models", [])]
        self._dims = int(opts.get("dims", DEFAULT_DIMS))
        self._random = random.Random(opts.get("seed"))
        self._ids = itertools.count(1)

    async def complete(self, req: ChatRequest, target: Target) -> ChatResponse:
        """The whole answer after the configured latency (or the configured failure)."""
        await self._before_answer()
        answer = self._answer(req, target)
        return ChatResponse(
            id=f"mock-{next(self._ids)}",
            model=target.model.id,
            content=answer.text,
            tool_calls=[answer.tool_call] if answer.tool_call else [],
            finish_reason=answer.finish_reason,
            usage=answer.usage,
            created=int(time.time()),
        )

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        """Role chunk, word chunks (or one tool-call chunk), then finish with usage."""
        await self._before_answer()
        answer = self._answer(req, target)
        yield Chunk(role="assistant")
        for word in _WORD.findall(answer.text or ""):
            yield Chunk(text=word)
        if answer.tool_call is not None:
            call = answer.tool_call
            yield Chunk(tool_calls=[ToolCallDelta(0, call.id, call.name, call.arguments)])
        yield Chunk(finish_reason=answer.finish_reason, usage=answer.usage)

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        """One ``mock_vector`` per input, after the configured latency (or failure)."""
        await self._before_answer()
        dims = req.dimensions or self._dims
        tokens = sum(
            count_tokens(item) if isinstance(item, str) else len(item) for item in req.inputs
        )
        return EmbeddingResponse(
            model=target.model.id,
            vectors=[mock_vector(item, dims) for item in req.inputs],
            usage=Usage(prompt_tokens=tokens),
        )

    async def list_models(self) -> list[str]:
        """The ids in ``options["models"]``."""
        return list(self._models)

    async def close(self) -> None:
        """Nothing to release."""

    async def _before_answer(self) -> None:
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        if self._failure_rate > 0 and self._random.random() < self._failure_rate:
            status = self._error_status
            raise ProviderError(
                classify(status, ""), f"{self.config.id}: mock failure {status}", status=status
            )

    def _answer(self, req: ChatRequest, target: Target) -> _Answer:
        prompt = sum(count_tokens(m.text()) for m in req.messages)
        last_user = next((m.text() for m in reversed(req.messages) if m.role == "user"), "")
        call = self._tool_call(req, last_user)
        if call is not None:
            return _Answer(None, call, "tool_calls", Usage(prompt, 1))
        words = _WORD.findall(f"[{target.model.id}] {last_user[:ECHO_CHARS]}".strip())
        finish = "stop"
        if req.max_tokens is not None and len(words) > req.max_tokens:
            words, finish = words[: req.max_tokens], "length"
        text = "".join(words).rstrip()
        return _Answer(text, None, finish, Usage(prompt, len(words)))

    def _tool_call(self, req: ChatRequest, last_user: str) -> ToolCall | None:
        for tool in req.tools or []:
            if f"call {tool.name}" in last_user:
                return ToolCall(id=f"call_mock_{next(self._ids)}", name=tool.name, arguments="{}")
        return None
