"""REFERENCE, not the product: the naive design. Each request: Redis GET of the stream's
state, one ``model.step`` per event (batch of one), Redis SET. Same model as the service.

    python bench/reference/naive_server.py --port 8002 --redis-url redis://... --model DIR
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis
import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.reference.common import EventBody, EventsBody, serve
from liquidcore.checkpoint import load_model


def make_app(argv: list[str]) -> FastAPI:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--model", required=True)
    args = p.parse_args(argv)
    model = load_model(args.model)
    r = aioredis.Redis.from_url(args.redis_url)
    app = FastAPI()

    def step(raw: bytes | None, events: list[EventBody]) -> tuple[bytes, list[list[float]]]:
        if raw is None:
            last_t, h = None, model.init_state(1)
        else:
            (last_t,) = struct.unpack("<d", raw[:8])
            h = torch.from_numpy(np.frombuffer(raw[8:], dtype="<f4").copy()).reshape(1, -1)
        outs = []
        with torch.inference_mode():
            for e in events:
                dt = model.default_dt if last_t is None else e.t - last_t
                y, h = model.step(
                    torch.tensor([e.x], dtype=torch.float32), torch.tensor([dt]).float(), h
                )
                outs.append(model.present(y)[0].tolist())
                last_t = e.t
        return struct.pack("<d", last_t) + h.numpy().astype("<f4").tobytes(), outs

    async def apply(stream_id: str, events: list[EventBody]) -> list[list[float]]:
        key = f"naive:{{{stream_id}}}"
        new, outs = step(await r.get(key), events)
        await r.set(key, new)
        return outs

    @app.post("/v1/streams/{stream_id}/events")
    async def post(stream_id: str, body: EventBody | EventsBody) -> Any:
        if isinstance(body, EventsBody):
            outs = await apply(stream_id, body.events)
            return JSONResponse({"results": [{"outputs": o} for o in outs]})
        (out,) = await apply(stream_id, [body])
        return JSONResponse({"stream_id": stream_id, "t": body.t, "outputs": out})

    return app


if __name__ == "__main__":
    serve(make_app)
