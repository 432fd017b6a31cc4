"""Render the load bench's ``BENCH key=value`` files as Markdown, driven by bench/run.sh.

run.sh leaves one file per wrk run or probe in a directory: ``direct_c{1,8,64}`` for
nginx alone and ``{config}{round}_{probe}`` for TokenHub, where config is ``full``,
``noauth`` or ``norec``, round counts from 1 and probe is ``c1``, ``c8``, ``c64``,
``cpu``, ``rss``, ``rec`` (the recorder's dropped outcomes) or ``ttft``. Rounds are
collapsed per measure to the better value (higher throughput, lower latency and CPU),
except RSS and dropped outcomes (the higher) and failures (the sum), so a noisy
neighbour can only make a number look worse, never hide a failure.

The throughput deltas come from the paired phase when it ran: ``paired_r{round}_{config}``
are c=64 bursts against every configuration's gateway, all running at once, taken in
turn within each round; a delta is the median over rounds of the within-round ratio
(``paired_{config}`` holds each gateway's dropped outcomes at the end).

    .venv/bin/python bench/report.py DIR --out FILE [--readme bench/README.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

Results = dict[str, dict[str, float]]  # file stem -> BENCH key -> value

CONFIGS = {
    "full": "full (auth + limits + recording)",
    "noauth": "no auth (CLIENT_AUTH=false)",
    "norec": "no recording (RECORDING=false)",
}
STEM = re.compile(r"^(?P<cfg>[a-z]+)(?P<round>\d+)_(?P<probe>[a-z0-9]+)$")
PAIRED = re.compile(r"^paired_r(?P<round>\d+)_(?P<cfg>[a-z]+)$")
HIGHER_IS_BETTER = {"rps", "requests"}
HIGHER_IS_WORSE_KEPT = {"rss_kb", "hwm_kb", "dropped", "undrained"}  # keep the worse round


def read_results(directory: Path) -> Results:
    """``{file stem: {key: value}}`` from every ``*.txt`` holding a ``BENCH`` line."""
    out: Results = {}
    for path in sorted(directory.glob("*.txt")):
        for line in path.read_text().splitlines():
            if line.startswith("BENCH "):
                pairs = (kv.split("=", 1) for kv in line.split()[1:])
                out.setdefault(path.stem, {}).update({k: float(v) for k, v in pairs})
    return out


def _pick(key: str, values: list[float]) -> float:
    if key.startswith("err_"):
        return sum(values)
    if key in HIGHER_IS_BETTER or key in HIGHER_IS_WORSE_KEPT:
        return max(values)
    return min(values)


def collapse(results: Results) -> Results:
    """Merge the rounds: ``full1_c64`` and ``full2_c64`` become ``full_c64``."""
    grouped: dict[str, dict[str, list[float]]] = {}
    out: Results = {}
    for stem, values in results.items():
        m = STEM.match(stem)
        if m is None or m["cfg"] not in CONFIGS:
            out[stem] = dict(values)
            continue
        slot = grouped.setdefault(f"{m['cfg']}_{m['probe']}", {})
        for key, value in values.items():
            slot.setdefault(key, []).append(value)
    for stem, keyed in grouped.items():
        out[stem] = {key: _pick(key, vals) for key, vals in keyed.items()}
    return out


def rounds(results: Results) -> list[int]:
    """The round numbers present, ascending."""
    found = {int(m["round"]) for s in results if (m := STEM.match(s)) is not None}
    return sorted(found)


Reader = Callable[[Results], float | None]


def get(stem: str, key: str, scale: float = 1.0) -> Reader:
    """A reader for one value of one result file, scaled."""

    def read(r: Results) -> float | None:
        value = r.get(stem, {}).get(key)
        return None if value is None else value * scale

    return read


def errors(prefix: str) -> Reader:
    """Socket errors plus non-2xx over every wrk run whose stem starts with ``prefix``."""

    def read(r: Results) -> float | None:
        runs = [v for k, v in r.items() if k.startswith(prefix) and "err_status" in v]
        if not runs:
            return None
        return sum(v[k] for v in runs for k in v if k.startswith("err_"))

    return read


def cell(fmt: str, value: float | None) -> str:
    """A formatted number, or a dash when it was not measured."""
    return "—" if value is None else fmt.format(value)


@dataclass(frozen=True)
class Measure:
    """One measure as read for any configuration prefix (``full``, ``direct``, ...)."""

    label: str
    probe: str
    key: str
    fmt: str
    scale: float = 1.0

    def of(self, prefix: str) -> Reader:
        return get(f"{prefix}_{self.probe}", self.key, self.scale)


THROUGHPUT = Measure("throughput, c=64 (req/s)", "c64", "rps", "{:,.0f}")
P50_C1 = Measure("latency p50, c=1 (ms)", "c1", "p50_us", "{:.2f}", 1e-3)
P99_C1 = Measure("latency p99, c=1 (ms)", "c1", "p99_us", "{:.2f}", 1e-3)
P50_C8 = Measure("latency p50, c=8 (ms)", "c8", "p50_us", "{:.2f}", 1e-3)
P99_C8 = Measure("latency p99, c=8 (ms)", "c8", "p99_us", "{:.2f}", 1e-3)
P99_C64 = Measure("latency p99, c=64 (ms)", "c64", "p99_us", "{:.1f}", 1e-3)
CPU = Measure("gateway CPU per request, c=64 (ms)", "cpu", "cpu_ms_per_req", "{:.3f}")
RSS = Measure("gateway RSS after the c=64 run (MB)", "rss", "rss_kb", "{:.0f}", 1 / 1024)
DROPPED = Measure("outcomes dropped by the recorder (worst round)", "rec", "dropped", "{:.0f}")
TTFT50 = Measure("streaming time to first content p50 (ms)", "ttft", "ttft_p50_us", "{:.2f}", 1e-3)
TTFT99 = Measure("streaming time to first content p99 (ms)", "ttft", "ttft_p99_us", "{:.2f}", 1e-3)


def _target_row(
    label: str, direct: str, value: float | None, fmt: str, target: str, ok: bool | None
) -> str:
    met = "" if ok is None else ("yes" if ok else "**no**")
    if target and value is None:
        met = "not measured"
    return f"| {label} | {direct} | {cell(fmt, value)} | {target} | {met} |"


def _added_row(r: Results) -> str:
    gw, direct = P50_C1.of("full")(r), P50_C1.of("direct")(r)
    added = None if gw is None or direct is None else gw - direct
    ok = None if added is None else added <= 1
    return _target_row("added latency p50, c=1 (ms)", "—", added, "{:.2f}", "<= 1 ms", ok)


def gateway_table(r: Results) -> list[str]:
    """Direct nginx against the full configuration, with the original targets."""
    lines = [
        "| measure | direct (nginx) | through TokenHub (full) | target | met |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    targets: dict[str, tuple[str, Callable[[float], bool]]] = {
        THROUGHPUT.label: (">= 1,500", lambda v: v >= 1500),
        RSS.label: ("< 150 MB", lambda v: v < 150),
    }
    for m in (THROUGHPUT, P50_C1, P99_C1, P50_C8, P99_C8, CPU, RSS, TTFT50, TTFT99):
        value = m.of("full")(r)
        target, check = targets.get(m.label, ("", None))
        ok = None if check is None or value is None else check(value)
        lines.append(_target_row(m.label, cell(m.fmt, m.of("direct")(r)), value, m.fmt, target, ok))
        if m is P99_C8:
            lines.append(_added_row(r))
    failed = errors("full")(r)
    ok = None if failed is None else failed == 0
    lines.append(
        _target_row(
            "failed requests (socket errors + non-2xx)",
            cell("{:.0f}", errors("direct_")(r)),
            failed,
            "{:.0f}",
            "0",
            ok,
        )
    )
    lines.append(
        "| no DB write awaited on the request path | — | not visible to the rig | required | "
        "code review |"
    )
    return lines


def config_table(r: Results) -> list[str]:
    """The three configurations side by side."""
    lines = [
        "| measure | " + " | ".join(CONFIGS.values()) + " |",
        "| --- |" + " ---: |" * len(CONFIGS),
    ]
    for m in (THROUGHPUT, P99_C64, P50_C1, P99_C1, CPU, RSS):
        cells = [cell(m.fmt, m.of(cfg)(r)) for cfg in CONFIGS]
        lines.append(f"| {m.label} | " + " | ".join(cells) + " |")
    cells = [cell("{:.0f}", errors(f"{cfg}")(r)) for cfg in CONFIGS]
    lines.append("| failed requests (all rounds) | " + " | ".join(cells) + " |")
    cells = [cell(DROPPED.fmt, DROPPED.of(cfg)(r)) for cfg in CONFIGS]
    lines.append(f"| {DROPPED.label} | " + " | ".join(cells) + " |")
    return lines


def _pct(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else (a / b - 1) * 100


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def paired_rps(raw: Results) -> dict[int, dict[str, float]]:
    """Paired phase: round -> configuration -> req/s."""
    out: dict[int, dict[str, float]] = {}
    for stem, values in raw.items():
        m = PAIRED.match(stem)
        if m is not None and "rps" in values:
            out.setdefault(int(m["round"]), {})[m["cfg"]] = values["rps"]
    return dict(sorted(out.items()))


def paired_delta(raw: Results, cfg: str, base: str) -> float | None:
    """Median over the paired rounds of ``cfg``'s req/s against ``base``'s, in %."""
    ratios = sorted(
        (by_cfg[cfg] / by_cfg[base] - 1) * 100
        for by_cfg in paired_rps(raw).values()
        if by_cfg.get(cfg) and by_cfg.get(base)
    )
    return statistics.median(ratios) if ratios else None


def paired_table(raw: Results) -> list[str]:
    """Every paired round, the median req/s per configuration, and dropped outcomes."""
    by_round = paired_rps(raw)
    if not by_round:
        return []
    cfgs = [c for c in CONFIGS if any(c in row for row in by_round.values())]
    lines = [
        "| paired round | " + " | ".join(f"{c} req/s" for c in cfgs) + " | full vs norec |",
        "| ---: | " + " | ".join("---:" for _ in cfgs) + " | ---: |",
    ]
    for n, row in by_round.items():
        cells = [cell("{:,.0f}", row.get(c)) for c in cfgs]
        ratio = _pct(row.get("full"), row.get("norec"))
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {cell('{:+.1f}%', ratio)} |")
    medians = [statistics.median(row[c] for row in by_round.values() if c in row) for c in cfgs]
    total = cell("{:+.1f}%", paired_delta(raw, "full", "norec"))
    lines.append(
        "| median | " + " | ".join(f"{m:,.0f}" for m in medians) + f" | {total} (median) |"
    )
    dropped = [cell("{:,.0f}", get(f"paired_{c}", "dropped")(raw)) for c in cfgs]
    lines.append("| outcomes dropped | " + " | ".join(dropped) + " | |")
    return lines


def delta_table(r: Results, raw: Results) -> list[str]:
    """What authentication and recording cost, against the issues' targets."""
    tp, cpu, p50 = THROUGHPUT, CPU, P50_C1
    paired = bool(paired_rps(raw))

    def throughput(cfg: str, base: str) -> float | None:
        if paired:
            return paired_delta(raw, cfg, base)
        return _pct(tp.of(cfg)(r), tp.of(base)(r))

    how = " (paired rounds, median)" if paired else " (best rounds)"
    rows: list[tuple[str, float | None, str, str, Callable[[float], bool] | None]] = [
        (
            "auth cost: CPU per request, full minus no auth (ms)",
            _diff(cpu.of("full")(r), cpu.of("noauth")(r)),
            "{:+.3f}",
            "<= 0.1 ms",
            lambda v: v <= 0.1,
        ),
        (
            "auth cost: throughput, full vs no auth" + how,
            throughput("full", "noauth"),
            "{:+.1f}%",
            ">= -10%",
            lambda v: v >= -10,
        ),
        (
            "auth cost: latency p50 c=1, full minus no auth (ms)",
            _diff(p50.of("full")(r), p50.of("noauth")(r)),
            "{:+.2f}",
            "",
            None,
        ),
        (
            "recording cost: throughput, full vs no recording" + how,
            throughput("full", "norec"),
            "{:+.1f}%",
            ">= -10%",
            lambda v: v >= -10,
        ),
        (
            "recording cost: CPU per request, full minus no recording (ms)",
            _diff(cpu.of("full")(r), cpu.of("norec")(r)),
            "{:+.3f}",
            "",
            None,
        ),
    ]
    lines = ["| delta | value | target | met |", "| --- | ---: | --- | --- |"]
    for label, value, fmt, target, check in rows:
        met = "" if check is None or value is None else ("yes" if check(value) else "**no**")
        lines.append(f"| {label} | {cell(fmt, value)} | {target} | {met} |")
    return lines


def runs_table(raw: Results) -> list[str]:
    """Every round of every configuration, so the spread behind the best-of is visible."""
    lines = [
        "| config | round | req/s c=64 | CPU ms/req | p50 c=1 (ms) | p99 c=1 (ms) | RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in rounds(raw):
        for cfg in CONFIGS:
            prefix = f"{cfg}{n}"
            if not any(s.startswith(prefix + "_") for s in raw):
                continue
            cells = [cell(m.fmt, m.of(prefix)(raw)) for m in (THROUGHPUT, CPU, P50_C1, P99_C1, RSS)]
            lines.append(f"| {cfg} | {n} | " + " | ".join(cells) + " |")
    return lines


def render(raw: Results, meta: dict[str, str]) -> str:
    """The whole Markdown block: header, the four tables."""
    r = collapse(raw)
    n = len(rounds(raw))
    load = cell("{:.2f}", get("load_start", "load1")(raw))
    lines = [
        f"Measured {meta['date']} on {meta['machine']}; wrk and nginx share the cores with "
        "the gateway, so absolute numbers are lower than on a dedicated load host. "
        f"1-min load average before the run: {load}.",
        f"Each wrk run lasts {meta['duration']}; TTFT: {meta['ttft_n']} sequential streams "
        f"(full config). Each configuration ran {n} time(s), each a fresh TokenHub process "
        "with a fresh data dir; the tables show the better round per measure (higher "
        "req/s, lower latency and CPU), the higher RSS and the failures of all rounds.",
        "",
        *gateway_table(r),
        "",
        *config_table(r),
        "",
        *delta_table(r, raw),
        "",
        "Every round:",
        "",
        *runs_table(raw),
    ]
    if paired_rps(raw):
        lines += [
            "",
            f"Paired throughput, c=64: every configuration's gateway running at once, one "
            f"{meta['paired_duration']} burst against each per round, in rotating order "
            "(the throughput deltas above are the median of these rounds' ratios):",
            "",
            *paired_table(raw),
        ]
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/report.py")
    p.add_argument("dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--duration", default="10s")
    p.add_argument("--ttft-n", default="200")
    p.add_argument("--paired-duration", default="5s")
    p.add_argument("--readme", type=Path)
    args = p.parse_args(argv)
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "duration": args.duration,
        "ttft_n": args.ttft_n,
        "paired_duration": args.paired_duration,
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
