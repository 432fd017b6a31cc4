"""Provider-neutral value types shared by every layer.

A surface turns its client's dialect into a :class:`ChatRequest`; the router hands it
to an adapter, which answers with a :class:`ChatResponse` or a stream of
:class:`Chunk`. Nothing here knows a wire format, and this module imports nothing of
the project.

Conventions:
- System prompts are messages with ``role="system"`` (the Anthropic side lifts them out).
- ``Message.content`` is either plain text or a list of parts; a part is a dict with
  ``{"type": "text", "text": str}`` or ``{"type": "image", "url": str}`` or
  ``{"type": "image", "media_type": str, "data": str}`` (base64).
- Tool call arguments are JSON text, as OpenAI sends them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Clock = Callable[[], float]
"""Monotonic seconds; injected wherever timeouts, cooldowns or windows are kept."""

monotonic: Clock = time.monotonic


class Dialect(StrEnum):
    """A wire dialect spoken by a surface or a provider."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    NONE = "none"  # in-process providers (mock): never a pass-through


class ErrorClass(StrEnum):
    """How a provider failure drives failover."""

    CONTEXT_OVERFLOW = "context_overflow"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    FATAL = "fatal"


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(slots=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None  # role == "tool": the call this answers
    name: str | None = None

    def text(self) -> str:
        """The message's text parts joined (images and tool data left out)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")


ToolChoice = str | dict[str, str]
"""``"auto"``, ``"none"``, ``"required"`` or ``{"name": tool_name}``."""


@dataclass(slots=True)
class ChatRequest:
    """One chat request, whatever dialect it arrived in."""

    messages: list[Message]
    model: str | None = None  # the client's model / model_hint, may be an alias later
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = None
    response_format: dict[str, Any] | None = None  # OpenAI shape
    seed: int | None = None
    user: str | None = None
    stream: bool = False
    stream_usage: bool = False  # the client asked for usage in the stream (OpenAI include_usage)
    estimated_input_tokens: int | None = None
    request_id: str = ""
    # Fast path: the body exactly as the client sent it, and its dialect. An adapter of
    # the same dialect may forward it (model swapped) instead of re-encoding the request.
    dialect: Dialect = Dialect.NONE
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ChatResponse:
    """A whole (non-streamed) answer."""

    id: str
    model: str
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"  # stop | length | tool_calls | content_filter
    usage: Usage = field(default_factory=Usage)
    created: int = 0
    # Fast path: the upstream body untouched, when the provider speaks ``dialect``.
    dialect: Dialect = Dialect.NONE
    raw: bytes | None = None


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""  # a fragment of the JSON text


@dataclass(slots=True)
class Chunk:
    """One step of a streamed answer.

    ``raw`` holds the upstream SSE event bytes (``event:``/``data:`` lines and the
    blank line) when the provider speaks ``dialect``; a surface of that dialect
    writes them through untouched. The neutral fields are always filled as well.
    A chunk may carry only ``usage`` (the final accounting) or nothing neutral at all
    (a ping or a bookkeeping event that only matters for pass-through).
    """

    text: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    role: str | None = None
    dialect: Dialect = Dialect.NONE
    raw: bytes | None = None


@dataclass(slots=True)
class ProviderConfig:
    """A configured upstream provider."""

    id: str
    type: str  # openai | anthropic | vllm | mock | any registered adapter type
    base_urls: list[str] = field(default_factory=list)  # vLLM may have several
    enabled: bool = True
    cred_store: str = "memory"  # where the key lives; the vault arrives later
    options: dict[str, Any] = field(default_factory=dict)  # adapter-specific (mock latency...)
    autoload_models: bool = False

    @property
    def base_url(self) -> str:
        return self.base_urls[0] if self.base_urls else ""


@dataclass(slots=True)
class ModelConfig:
    """A model served by one provider, with the facts routing needs."""

    id: str  # may contain slashes: Qwen/Qwen2.5-Coder-32B-Instruct
    provider_id: str
    weight: int = 5  # 0-10, capability
    max_context_tokens: int = 8192
    input_per_1k: float = 0.0  # USD
    output_per_1k: float = 0.0  # USD
    enabled: bool = True
    upstream_id: str | None = None  # the provider's own name, when it differs from id
    labels: dict[str, Any] = field(default_factory=dict)  # e.g. {"demo": True}

    @property
    def wire_name(self) -> str:
        return self.upstream_id or self.id

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.input_per_1k + usage.completion_tokens * self.output_per_1k
        ) / 1000.0


@dataclass(slots=True)
class Target:
    """What an adapter needs for one upstream call."""

    model: ModelConfig
    request_id: str
    timeout_s: float
    headers: dict[str, str] = field(default_factory=dict)  # extra upstream headers (traceparent)


@dataclass(slots=True)
class Policy:
    """Routing constraints for one request, after defaults and overrides are merged."""

    mode: str = "normal"
    max_budget_usd: float = 0.05
    max_latency_ms: int = 20000
    min_weight: int = 0


@dataclass(slots=True)
class Attempt:
    """One upstream try, kept in the routing decision."""

    model: str
    provider: str
    error_class: ErrorClass | None = None
    status: int | None = None
    message: str = ""
    latency_ms: float = 0.0
    backoff_ms: float = 0.0


@dataclass(slots=True)
class Decision:
    """Why a request went where it went."""

    model: ModelConfig | None = None
    provider_id: str = ""
    reason: str = ""
    estimated_tokens: int = 0
    estimated_cost_usd: float = 0.0
    mode: str = "normal"
    ranked: list[tuple[str, float]] = field(default_factory=list)  # (model id, score)
    excluded: dict[str, str] = field(default_factory=dict)  # model id -> why
    attempts: list[Attempt] = field(default_factory=list)
    policy: Policy | None = None  # the constraints the request was routed under
    cooldowns: list[dict[str, Any]] = field(default_factory=list)  # provider, reason, remaining_s


@dataclass(slots=True)
class Outcome:
    """The one record of a finished request, fanned out by the recorder (metrics,
    request and reward logs, TSDB, bandit, events) off the hot path."""

    request_id: str
    surface: str  # openai | anthropic | native | embeddings
    started_at: float  # wall-clock unix seconds
    status: int  # the HTTP status the client got
    latency_ms: float
    mode: str = "normal"
    model: str | None = None
    provider: str | None = None
    api_key_id: str | None = None
    stream: bool = False
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    ttft_ms: float | None = None  # streams: time to first content byte
    error_class: str | None = None  # an ErrorClass value, or "client" / "internal"
    error: str | None = None  # short message, never a secret
    reason: str = ""
    decision: Decision | None = None  # the full routing trace
