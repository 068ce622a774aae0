"""Engine CPU per event, in-process: the demo model, the embedded store, one torch thread,
``B`` events over ``B`` streams per submit (no HTTP, no Redis). Prints CPU µs per event and the
per-batch stage breakdown (``liquid_stage_seconds``).

    .venv/bin/python bench/engine_inprocess.py [B] [ROUNDS] [ids]    # ids: an id on every event
"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np
import torch

from service.engine import Engine
from service.engine.config import EngineConfig
from service.engine.registry import ModelRegistry
from service.gc_tuning import tune_gc_for_serving
from service.live.bus import MemoryLiveBus
from service.metrics import Metrics
from service.settings import DEMO_MODEL_DIR
from service.store import MemoryStore


async def run(batch: int, rounds: int, ids: bool) -> None:
    torch.set_num_threads(1)
    registry = ModelRegistry.load([DEMO_MODEL_DIR])
    name = next(iter(registry.as_mapping()))
    metrics = Metrics()
    config = EngineConfig(max_delay_s=0.0005, max_batch=batch)
    engine = Engine(registry, MemoryStore(), MemoryLiveBus(), metrics, config)
    await engine.start()
    tune_gc_for_serving()
    streams = [f"s{i}" for i in range(batch)]
    x = np.random.default_rng(0).standard_normal((batch, registry.model(name).input_size))
    x = (x * 0.1).astype(np.float32)

    async def one(r: int) -> None:
        t = np.full(batch, 1_700_000_000.0 + r * 0.1)
        event_ids = [f"e{r}-{i}" for i in range(batch)] if ids else [None] * batch
        await engine.submit_columns("acme", name, streams, t, x, event_ids, time.time())

    for r in range(30):  # warm-up; the dedupe windows fill up
        await one(r)
    cpu = time.process_time()
    for r in range(30, 30 + rounds):
        await one(r)
    per_event = (time.process_time() - cpu) / rounds / batch * 1e6
    print(f"B={batch} ids={ids}: {per_event:.1f} µs CPU per event")
    for stage, hist in metrics.stages.items():
        samples = {s.name.rsplit("_", 1)[-1]: s.value for s in hist.collect()[0].samples}
        if samples.get("count"):
            print(f"  {stage:12s} {samples['sum'] / samples['count'] * 1e3:.3f} ms per batch")
    await engine.stop()


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    asyncio.run(run(batch, rounds, "ids" in sys.argv[3:]))


if __name__ == "__main__":
    main()
