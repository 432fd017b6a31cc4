"""Scriptable fake OpenAI and Anthropic servers on loopback sockets.

    async with FakeOpenAI() as up:
        up.script(Reply(status=429, headers={"Retry-After": "2"}), Reply(text="hi"))
        ... point an adapter or the gateway at up.base_url ...
        assert up.requests[0].json["model"] == "gpt-4o-mini"

Each chat request takes the next scripted ``Reply`` (FIFO); when none is left it gets
``Reply()``. ``requests`` records every request except ``GET /health``; recorded
headers are a dict with lower-cased keys that also answers lookups in any case
(``headers["Authorization"]``). Streams follow the real event sequences of each API.

``FakeOpenAI`` also serves ``POST /v1/embeddings`` from the same script: input ``i``
gets ``fake_embedding(input, dims)`` (``dims`` = the request's ``dimensions`` or 4),
base64-encoded when asked; ``Reply.usage[0]`` is the prompt token count, and
``status``, ``headers``, ``delay_s``, ``body`` and ``break_after`` work as for chat.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import struct
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web


@dataclass
class Reply:
    """What the fake answers to one chat request.

    ``text`` is sent whenever it is non-empty, also alongside a ``tool_call`` (use
    ``text=""`` for a bare tool call). ``body`` replaces the whole default body: a dict
    is sent as JSON; a str as is (as an SSE body when the request streams and status is
    200, for hand-written event sequences). ``break_after`` drops the connection after
    that many stream events (for non-streamed requests, before any body byte).
    """

    status: int = 200
    text: str = "Hello from fake"
    tool_call: tuple[str, str] | None = None  # (name, arguments JSON text)
    usage: tuple[int, int] = (10, 5)  # (prompt, completion) tokens
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0
    body: dict[str, Any] | str | None = None
    break_after: int | None = None
    finish_reason: str | None = None  # default: stop / tool_calls


class Headers(dict[str, str]):
    """A plain dict of lower-cased header names whose lookups ignore case."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class Recorded:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    json: Any


def sse(data: Any, event: str | None = None) -> bytes:
    """One SSE event (with its blank line); ``data`` is JSON-encoded unless bytes/str."""
    payload = data if isinstance(data, str | bytes) else orjson.dumps(data)
    text = payload.decode() if isinstance(payload, bytes) else payload
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def pieces(text: str, n: int = 3) -> list[str]:
    """``text`` cut into about ``n`` consecutive, non-empty pieces."""
    if not text:
        return []
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


class FakeUpstream:
    """A loopback HTTP server with a reply script; subclasses add the chat endpoint."""

    chat_path = "/v1/chat"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.models: list[str] = ["fake-model"]
        self.health_status = 200
        self._queue: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._ids: Iterator[int] = itertools.count(1)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``)."""
        return f"http://127.0.0.1:{self._port}"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next chat requests, first in first out."""
        self._queue.extend(replies)

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post(self.chat_path, self._chat)
        self.add_routes(app)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/health":
            body = await request.read()
            try:
                parsed = orjson.loads(body) if body else None
            except orjson.JSONDecodeError:
                parsed = body.decode("utf-8", "replace")
            headers = Headers((k.lower(), v) for k, v in request.headers.items())
            self.requests.append(Recorded(request.path, headers, parsed))
        response: web.StreamResponse = await handler(request)
        return response

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, status=self.health_status)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(self.models_body())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        reply = self._queue.popleft() if self._queue else Reply()
        body = await request.json()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.break_after is not None and not body.get("stream"):
            return self._drop(request)
        if reply.body is not None:
            return self._custom(reply, bool(body.get("stream")))
        if reply.status != 200:
            return self._json(reply, self.error_body(reply.status), reply.status)
        if body.get("stream"):
            return await self._stream(request, reply, body)
        return self._json(reply, self.answer(reply, body), 200)

    def _json(self, reply: Reply, data: Any, status: int) -> web.Response:
        return web.Response(
            body=orjson.dumps(data),
            status=status,
            headers=reply.headers,
            content_type="application/json",
        )

    def _custom(self, reply: Reply, stream: bool) -> web.Response:
        if isinstance(reply.body, dict):
            return self._json(reply, reply.body, reply.status)
        kind = "text/event-stream" if stream and reply.status == 200 else "application/json"
        return web.Response(
            text=reply.body, status=reply.status, headers=reply.headers, content_type=kind
        )

    async def _stream(
        self, request: web.Request, reply: Reply, body: dict[str, Any]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **reply.headers,
            }
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for sent, event in enumerate(self.events(reply, body)):
            if reply.break_after is not None and sent >= reply.break_after:
                return self._drop(request, resp)
            await resp.write(event)
        await resp.write_eof()
        return resp

    def _drop(
        self, request: web.Request, resp: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        # closing the socket without the chunked terminator: the client sees a cut body
        if request.transport is not None:
            request.transport.close()
        return resp or web.Response(status=200)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # dialect hooks
    def add_routes(self, app: web.Application) -> None:
        """Register endpoints beyond health, models and chat (none by default)."""

    def models_body(self) -> Any:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        raise NotImplementedError

    def answer(self, reply: Reply, body: dict[str, Any]) -> Any:
        raise NotImplementedError

    def events(self, reply: Reply, body: dict[str, Any]) -> list[bytes]:
        raise NotImplementedError


class FakeOpenAI(FakeUpstream):
    """``POST /v1/chat/completions`` like OpenAI (and vLLM), streamed or not, and
    ``POST /v1/embeddings``."""

    chat_path = "/v1/chat/completions"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/embeddings", self._embeddings)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        reply = self._queue.popleft() if self._queue else Reply()
        body = await request.json()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.break_after is not None:
            return self._drop(request)
        if reply.body is not None:
            return self._custom(reply, False)
        if reply.status != 200:
            return self._json(reply, self.error_body(reply.status), reply.status)
        return self._json(reply, self.embedding_answer(reply, body), 200)

    def embedding_answer(self, reply: Reply, body: dict[str, Any]) -> Any:
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) or _is_tokens(raw) else list(raw or [])
        dims = int(body.get("dimensions") or 4)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector: Any = fake_embedding(item, dims)
            if as_base64:
                vector = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        prompt = reply.usage[0]
        return {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }

    def models_body(self) -> Any:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models
            ],
        }

    def error_body(self, status: int) -> Any:
        kind = {401: "invalid_request_error", 429: "rate_limit_error"}.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        return {
            "error": {"message": f"fake error {status}", "type": kind, "param": None, "code": None}
        }

    def answer(self, reply: Reply, body: dict[str, Any]) -> Any:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_call:
            name, args = reply.tool_call
            message["tool_calls"] = [
                {
                    "id": "call_fake_1",
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }
            ]
        prompt, completion = reply.usage
        return {
            "id": self._next_id("chatcmpl-fake"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    def events(self, reply: Reply, body: dict[str, Any]) -> list[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": self._next_id("chatcmpl-fake"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice], **extra})

        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": piece}) for piece in pieces(reply.text)]
        if reply.tool_call:
            name, args = reply.tool_call
            head = {
                "index": 0,
                "id": "call_fake_1",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            out.append(chunk({"tool_calls": [head]}))
            out += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})
                for a in pieces(args, 2)
            ]
        out.append(chunk({}, _finish(reply)))
        if include_usage:
            prompt, completion = reply.usage
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            out.append(sse({**base, "choices": [], "usage": usage}))
        out.append(b"data: [DONE]\n\n")
        return out


class FakeAnthropic(FakeUpstream):
    """``POST /v1/messages`` like Anthropic, with the real stream event sequence."""

    chat_path = "/v1/messages"

    def models_body(self) -> Any:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in self.models
        ]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return {"data": data, "has_more": False, "first_id": first, "last_id": last}

    def error_body(self, status: int) -> Any:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            413: "request_too_large",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": f"fake error {status}"}}

    def answer(self, reply: Reply, body: dict[str, Any]) -> Any:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        if reply.tool_call:
            name, args = reply.tool_call
            content.append(
                {
                    "type": "tool_use",
                    "id": "toolu_fake_1",
                    "name": name,
                    "input": orjson.loads(args or "{}"),
                }
            )
        prompt, completion = reply.usage
        return {
            "id": self._next_id("msg_fake"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": content,
            "stop_reason": _stop_reason(reply),
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": completion},
        }

    def events(self, reply: Reply, body: dict[str, Any]) -> list[bytes]:
        prompt, completion = reply.usage
        message = {
            "id": self._next_id("msg_fake"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": 1},
        }
        out = [sse({"type": "message_start", "message": message}, "message_start")]
        blocks = self._blocks(reply)
        for index, (start, deltas) in enumerate(blocks):
            out.append(
                sse(
                    {"type": "content_block_start", "index": index, "content_block": start},
                    "content_block_start",
                )
            )
            if index == 0:
                out.append(sse({"type": "ping"}, "ping"))
            for delta in deltas:
                out.append(
                    sse(
                        {"type": "content_block_delta", "index": index, "delta": delta},
                        "content_block_delta",
                    )
                )
            out.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        if not blocks:
            out.append(sse({"type": "ping"}, "ping"))
        delta = {"stop_reason": _stop_reason(reply), "stop_sequence": None}
        out.append(
            sse(
                {"type": "message_delta", "delta": delta, "usage": {"output_tokens": completion}},
                "message_delta",
            )
        )
        out.append(sse({"type": "message_stop"}, "message_stop"))
        return out

    def _blocks(self, reply: Reply) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        if reply.text:
            deltas = [{"type": "text_delta", "text": p} for p in pieces(reply.text)]
            blocks.append(({"type": "text", "text": ""}, deltas))
        if reply.tool_call:
            name, args = reply.tool_call
            start = {"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(args, 2)]
            blocks.append((start, deltas))
        return blocks


def fake_embedding(item: str | list[int], dims: int) -> list[float]:
    """FakeOpenAI's vector for one input: ``len(item) + 0.5 * j`` (exact in float32)."""
    return [float(len(item)) + 0.5 * j for j in range(dims)]


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, int) for x in value)


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_call else "stop")


def _stop_reason(reply: Reply) -> str:
    reason = _finish(reply)
    return {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}.get(
        reason, reason
    )
