"""Python side of the load bench, driven by bench/run.sh.

Subcommands (each prints what run.sh needs on stdout):

- ``port``: a free TCP port on 127.0.0.1.
- ``wait URL --timeout S``: poll ``URL`` until it answers 200; exit 1 on timeout.
- ``check URL``: POST one chat completion (plain or ``--stream``) and fail loudly
  unless it is a 200 with content, so a run never measures a stream of errors.
- ``ttft URL``: N sequential streaming requests; time to the first content delta.
- ``report DIR``: turn the ``BENCH key=value`` lines in DIR into a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

Results = dict[str, dict[str, float]]  # file stem -> BENCH key -> value

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


# --- report ---------------------------------------------------------------------------


def read_results(directory: Path) -> Results:
    """``{file stem: {key: value}}`` from every ``*.txt`` holding a ``BENCH`` line."""
    out: Results = {}
    for path in sorted(directory.glob("*.txt")):
        for line in path.read_text().splitlines():
            if line.startswith("BENCH "):
                pairs = (kv.split("=", 1) for kv in line.split()[1:])
                out.setdefault(path.stem, {}).update({k: float(v) for k, v in pairs})
    return out


@dataclass(frozen=True)
class Row:
    """One table line: a label, how to read each column, and the target check."""

    label: str
    direct: Callable[[Results], float | None]
    gateway: Callable[[Results], float | None]
    fmt: str
    target: str = ""
    ok: Callable[[float], bool] | None = None


def _get(stem: str, key: str, scale: float = 1.0) -> Callable[[Results], float | None]:
    def read(r: Results) -> float | None:
        value = r.get(stem, {}).get(key)
        return None if value is None else value * scale

    return read


def _none(_: Results) -> float | None:
    return None


def _added_p50(r: Results) -> float | None:
    gw, direct = r.get("gw_c1", {}).get("p50_us"), r.get("direct_c1", {}).get("p50_us")
    return None if gw is None or direct is None else (gw - direct) / 1000


def _errors(stem_prefix: str) -> Callable[[Results], float | None]:
    def read(r: Results) -> float | None:
        runs = [v for k, v in r.items() if k.startswith(stem_prefix) and "err_status" in v]
        if not runs:
            return None
        return sum(v[k] for v in runs for k in v if k.startswith("err_"))

    return read


ROWS = [
    Row(
        "throughput, c=64 (req/s)",
        _get("direct_c64", "rps"),
        _get("gw_c64", "rps"),
        "{:,.0f}",
        ">= 1,500",
        lambda v: v >= 1500,
    ),
    Row(
        "latency p50, c=1 (ms)",
        _get("direct_c1", "p50_us", 1e-3),
        _get("gw_c1", "p50_us", 1e-3),
        "{:.2f}",
    ),
    Row(
        "latency p99, c=1 (ms)",
        _get("direct_c1", "p99_us", 1e-3),
        _get("gw_c1", "p99_us", 1e-3),
        "{:.2f}",
    ),
    Row(
        "latency p50, c=8 (ms)",
        _get("direct_c8", "p50_us", 1e-3),
        _get("gw_c8", "p50_us", 1e-3),
        "{:.2f}",
    ),
    Row(
        "latency p99, c=8 (ms)",
        _get("direct_c8", "p99_us", 1e-3),
        _get("gw_c8", "p99_us", 1e-3),
        "{:.2f}",
    ),
    Row("added latency p50, c=1 (ms)", _none, _added_p50, "{:.2f}", "<= 1 ms", lambda v: v <= 1),
    Row("gateway CPU per request, c=64 (ms)", _none, _get("gw_cpu", "cpu_ms_per_req"), "{:.3f}"),
    Row(
        "gateway RSS after the c=64 run (MB)",
        _none,
        _get("gw_rss", "rss_kb", 1 / 1024),
        "{:.0f}",
        "< 150 MB",
        lambda v: v < 150,
    ),
    Row(
        "streaming time to first content p50 (ms)",
        _none,
        _get("gw_ttft", "ttft_p50_us", 1e-3),
        "{:.2f}",
    ),
    Row(
        "streaming time to first content p99 (ms)",
        _none,
        _get("gw_ttft", "ttft_p99_us", 1e-3),
        "{:.2f}",
    ),
    Row(
        "failed requests (socket errors + non-2xx)",
        _errors("direct_"),
        _errors("gw_c"),
        "{:.0f}",
        "0",
        lambda v: v == 0,
    ),
]


def _cell(fmt: str, value: float | None) -> str:
    return "—" if value is None else fmt.format(value)


def render(results: Results, meta: dict[str, str]) -> str:
    """The Markdown table, preceded by the date, machine and run parameters."""
    lines = [
        f"Measured {meta['date']} on {meta['machine']}; wrk shares the cores with the "
        f"gateway and nginx, so absolute numbers are lower than on a dedicated load host.",
        f"Each wrk run lasts {meta['duration']}; TTFT: {meta['ttft_n']} sequential streams.",
        "",
        "| measure | direct (nginx) | through TokenHub | target | met |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for row in ROWS:
        gw = row.gateway(results)
        met = "" if row.ok is None or gw is None else ("yes" if row.ok(gw) else "**no**")
        if row.ok is not None and gw is None:
            met = "not measured"
        cells = [
            row.label,
            _cell(row.fmt, row.direct(results)),
            _cell(row.fmt, gw),
            row.target,
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "| no DB write awaited on the request path | — | not visible to the rig | required | "
        "code review |"
    )
    return "\n".join(lines) + "\n"


def machine() -> str:
    """``N cores, CPU model, kernel`` for the report header."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}"


def update_readme(readme: Path, table: str) -> None:
    """Replace the text between the bench-results markers in ``readme``."""
    start, end = "<!-- bench-results:start -->", "<!-- bench-results:end -->"
    text = readme.read_text()
    head, sep1, rest = text.partition(start)
    _, sep2, tail = rest.partition(end)
    if not (sep1 and sep2):
        raise SystemExit(f"{readme}: markers {start} / {end} not found")
    readme.write_text(f"{head}{start}\n{table}{end}{tail}")


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
    r = sub.add_parser("report")
    r.add_argument("dir", type=Path)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--duration", default="10s")
    r.add_argument("--ttft-n", default="200")
    r.add_argument("--readme", type=Path)
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
    else:
        meta = {
            "date": dt.date.today().isoformat(),
            "machine": machine(),
            "duration": args.duration,
            "ttft_n": args.ttft_n,
        }
        table = render(read_results(args.dir), meta)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        if args.readme:
            update_readme(args.readme, table)
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
