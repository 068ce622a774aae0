"""REFERENCE, not the product: the framework's ceiling. The service's routes in FastAPI with a
pydantic parse of the same body and a canned answer; no model, no store.

    python bench/reference/bare_server.py --port 8001
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.reference.common import EventBody, MultiBody, serve

CANNED = {"outputs": [0.25, 0.25, 0.25, 0.25], "dt": 0.1, "duplicate": False, "count": 1}


def make_app(argv: list[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/streams/{stream_id}/events")
    async def one(stream_id: str, body: EventBody) -> dict[str, Any]:
        return {"stream_id": stream_id, "t": body.t, "id": body.id, **CANNED}

    @app.post("/v1/events")
    async def multi(body: MultiBody) -> dict[str, Any]:
        results = [
            {"index": i, "status": 200, "prediction": {"stream_id": e.stream_id, **CANNED}}
            for i, e in enumerate(body.events)
        ]
        return {"results": results, "applied": len(results), "duplicates": 0, "failed": 0}

    return app


if __name__ == "__main__":
    serve(make_app)
