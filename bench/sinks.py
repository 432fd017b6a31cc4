import asyncio, time, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tokenhub.config import load_settings
from tokenhub.services import start_services, stop_services
from tokenhub.types import Outcome, Usage, Decision, Attempt, ModelConfig, Policy

async def main():
    import tempfile
    d = tempfile.mkdtemp()
    s = await start_services(load_settings({"TOKENHUB_DATA_DIR": d, "TOKENHUB_CREDENTIALS_FILE": d+"/none"}))
    m = ModelConfig("demo/small", "demo-mock", weight=4, input_per_1k=0.001, output_per_1k=0.002)
    def outcome(i):
        dec = Decision(model=m, provider_id="demo-mock", reason="routed-weight-4", estimated_tokens=12,
                       ranked=[("demo/small", -0.1), ("demo/tiny", 0.2), ("demo/medium", 0.3)],
                       attempts=[Attempt("demo/small", "demo-mock", latency_ms=3.0)], policy=Policy())
        return Outcome(f"req-{i}", "openai", time.time(), 200, 5.0, model="demo/small", provider="demo-mock",
                       api_key_id="k1", usage=Usage(10, 20), cost_usd=0.00005, decision=dec)
    batch = [outcome(i) for i in range(500)]
    for sink in s.recorder.sinks:
        t0 = time.process_time(); w0 = time.perf_counter()
        for _ in range(4):
            await sink.write(batch)
        await asyncio.sleep(0.05)
        t1 = time.process_time(); w1 = time.perf_counter()
        print(f"{sink.name:10s} cpu/outcome={(t1-t0)/2000*1e6:7.1f}us wall/batch={(w1-w0)/4*1000:7.1f}ms")
    await stop_services(s)
asyncio.run(main())
