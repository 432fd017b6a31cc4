"""Python side of the load bench, driven by bench/run.sh.

Subcommands (each prints what run.sh needs on stdout):

- ``port``: a free TCP port on 127.0.0.1.
- ``wait URL --timeout S``: poll ``URL`` until it answers 200; exit 1 on timeout.
- ``check URL``: POST one chat completion (plain or ``--stream``) and fail loudly
  unless it is a 200 with content, so a run never measures a stream of errors.
- ``ttft URL``: N sequential streaming requests; time to the first content delta.
- ``mkkey BASE --token-file F``: create a client key through the admin API, print it.

The table is rendered by ``bench/report.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import orjson

BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hello"}]}


def free_port() -> int:
    """A port the kernel considers free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int | None) -> bool:
    """Whether process ``pid`` still exists (always True when no pid is given)."""
    if pid is None:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited already


async def wait_healthy(url: str, within_s: float, pid: int | None = None) -> bool:
    """True once GET ``url`` answers 200; False after ``within_s`` s or when ``pid`` exits."""
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and alive(pid):
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return True
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.2)
    return False


def _headers(api_key: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _first_content(line: bytes) -> bool:
    """True when an SSE ``data:`` line carries a non-empty content delta."""
    if not line.startswith(b"data:"):
        return False
    payload = line[5:].strip()
    if not payload or payload == b"[DONE]":
        return False
    doc = orjson.loads(payload)
    return any((c.get("delta") or {}).get("content") for c in doc.get("choices") or [])


async def stream_once(
    session: aiohttp.ClientSession, url: str, model: str, api_key: str
) -> tuple[float, bytes]:
    """One streaming request: seconds to the first content delta, and the whole body."""
    body = {**BODY, "model": model, "stream": True}
    ttft = -1.0
    raw = bytearray()
    start = time.perf_counter()
    async with session.post(url, data=orjson.dumps(body), headers=_headers(api_key)) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {(await r.read())[:500]!r}")
        async for line in r.content:
            raw += line
            if ttft < 0 and _first_content(line):
                ttft = time.perf_counter() - start
    if ttft < 0:
        raise RuntimeError(f"stream carried no content delta: {bytes(raw)[:500]!r}")
    return ttft, bytes(raw)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile, the way wrk reports them."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


async def ttft(url: str, model: str, n: int, warmup: int, api_key: str) -> str:
    """Run ``warmup`` + ``n`` sequential streams; a ``BENCH`` line with p50/p99 in µs."""
    conn = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=conn) as session:
        for _ in range(warmup):
            await stream_once(session, url, model, api_key)
        samples = [(await stream_once(session, url, model, api_key))[0] for _ in range(n)]
    us = [s * 1e6 for s in samples]
    return (
        f"BENCH requests={n} ttft_p50_us={percentile(us, 50):.0f} "
        f"ttft_p99_us={percentile(us, 99):.0f} ttft_max_us={max(us):.0f}"
    )


async def check(url: str, model: str, stream: bool, api_key: str) -> str:
    """One request that must succeed with content; returns a short description."""
    if stream:
        async with aiohttp.ClientSession() as session:
            seconds, raw = await stream_once(session, url, model, api_key)
        if b"[DONE]" not in raw:
            raise RuntimeError(f"stream did not end with [DONE]: {raw[:500]!r}")
        return f"stream ok, first content after {seconds * 1e3:.2f} ms"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=orjson.dumps({**BODY, "model": model}), headers=_headers(api_key)
        ) as r,
    ):
        raw = await r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {raw[:500]!r}")
    content = orjson.loads(raw)["choices"][0]["message"]["content"]
    if not content:
        raise RuntimeError(f"empty content: {raw[:500]!r}")
    return f"ok: {content!r}"


async def make_key(base: str, admin_token: str, name: str) -> str:
    """POST /admin/v1/apikeys with the admin token; the new client key (no limits)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {admin_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base}/admin/v1/apikeys", data=orjson.dumps({"name": name}), headers=headers
        ) as r,
    ):
        raw = await r.read()
    if r.status != 201:
        raise RuntimeError(f"creating a key: HTTP {r.status}: {raw[:500]!r}")
    key = orjson.loads(raw).get("key")
    if not isinstance(key, str) or not key:
        raise RuntimeError("creating a key: the answer carried no key")
    return key


async def recorder(base: str, admin_token: str, drain_s: float = 15.0) -> str:
    """Wait for the recorder's queue to drain, then ``BENCH dropped=N`` from /metrics:
    outcomes the recorder refused because its queue was full (they are never written)."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    deadline = time.monotonic() + drain_s
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            async with session.get(f"{base}/metrics") as r:
                text = await r.text()
            if r.status != 200:
                raise RuntimeError(f"GET /metrics: HTTP {r.status}")
            found = dict(
                line.split(" ", 1)
                for line in text.splitlines()
                if line.startswith(("tokenhub_recorder_dropped_total ", "tokenhub_recorder_queue"))
            )
            depth = float(found.get("tokenhub_recorder_queue_depth", "0"))
            if depth == 0 or time.monotonic() > deadline:
                dropped = float(found.get("tokenhub_recorder_dropped_total", "nan"))
                return f"BENCH dropped={dropped:.0f} undrained={depth:.0f}"
            await asyncio.sleep(0.2)


# --- command line ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/load.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("port")
    w = sub.add_parser("wait")
    w.add_argument("url")
    w.add_argument("--timeout", type=float, default=30)
    w.add_argument("--pid", type=int, help="give up early when this process exits")
    for name in ("check", "ttft"):
        c = sub.add_parser(name)
        c.add_argument("url")
        c.add_argument("--model", default="bench-model")
        c.add_argument("--api-key", default="")
        c.add_argument("--stream", action="store_true")
        c.add_argument("-n", type=int, default=200)
        c.add_argument("--warmup", type=int, default=20)
    k = sub.add_parser("mkkey")
    k.add_argument("base", help="TokenHub base URL, e.g. http://127.0.0.1:8080")
    k.add_argument("--token-file", type=Path, required=True, help="holds the admin token")
    k.add_argument("--name", default="bench")
    m = sub.add_parser("recorder")
    m.add_argument("base", help="TokenHub base URL")
    m.add_argument("--token-file", type=Path, required=True, help="holds the admin token")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "port":
        print(free_port())
    elif args.cmd == "wait":
        return 0 if asyncio.run(wait_healthy(args.url, args.timeout, args.pid)) else 1
    elif args.cmd == "check":
        print(asyncio.run(check(args.url, args.model, args.stream, args.api_key)))
    elif args.cmd == "ttft":
        print(asyncio.run(ttft(args.url, args.model, args.n, args.warmup, args.api_key)))
    elif args.cmd == "recorder":
        token = args.token_file.read_text().strip()
        print(asyncio.run(recorder(args.base, token)))
    else:
        token = args.token_file.read_text().strip()
        print(asyncio.run(make_key(args.base, token, args.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
