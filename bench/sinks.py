"""CPU per outcome of each recorder sink, in-process, on the embedded default (SQLite).

    .venv/bin/python bench/sinks.py [--batches 8] [--batch-size 500]

Starts the services as ``tokenhub`` would (temp data dir), then hands each sink of the
recorder the same batches of realistic outcomes and prints the process CPU time (every
thread: the database sinks run in the writer's thread) per outcome and the wall time
per batch. Nothing else runs, so the numbers are the sinks' own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tokenhub.config import load_settings
from tokenhub.services import start_services, stop_services
from tokenhub.types import Attempt, Decision, ModelConfig, Outcome, Policy, Usage

MODEL = ModelConfig("demo/small", "demo-mock", weight=4, input_per_1k=0.001, output_per_1k=0.002)


def outcome(i: int) -> Outcome:
    decision = Decision(
        model=MODEL,
        provider_id="demo-mock",
        reason="routed-weight-4",
        estimated_tokens=12,
        ranked=[("demo/small", -0.1), ("demo/tiny", 0.2), ("demo/medium", 0.3)],
        attempts=[Attempt("demo/small", "demo-mock", latency_ms=3.0)],
        policy=Policy(),
    )
    return Outcome(
        f"req-{i}",
        "openai",
        time.time(),
        200,
        5.0,
        model="demo/small",
        provider="demo-mock",
        api_key_id="k1",
        usage=Usage(10, 20),
        cost_usd=0.00005,
        decision=decision,
    )


async def main(batches: int, size: int) -> None:
    data = tempfile.mkdtemp(prefix="tokenhub-sinks-")
    env = {"TOKENHUB_DATA_DIR": data, "TOKENHUB_CREDENTIALS_FILE": f"{data}/none"}
    services = await start_services(load_settings(env))
    try:
        assert services.recorder is not None, "recording is off"
        for sink in services.recorder.sinks:
            work = [[outcome(b * size + i) for i in range(size)] for b in range(batches)]
            await sink.write(work[0][:10])  # warm: statements prepared, engines connected
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for batch in work:
                await sink.write(batch)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            print(
                f"{sink.name:8s} cpu/outcome={cpu / (batches * size) * 1e6:6.1f} us"
                f"  wall/batch={wall / batches * 1000:6.1f} ms"
            )
    finally:
        await stop_services(services)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=500)
    a = p.parse_args()
    asyncio.run(main(a.batches, a.batch_size))
