"""What the reference servers share: the request body (pydantic, the same shape as the
service's), and running a FastAPI app under uvicorn with one torch thread."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel


class EventBody(BaseModel):
    """One event: the body of ``POST /v1/streams/{id}/events``."""

    t: float
    x: list[float]
    id: str | None = None


class EventsBody(BaseModel):
    """Several events of one stream: ``{"events": [...]}``."""

    events: list[EventBody]


class StreamEventBody(EventBody):
    stream_id: str


class MultiBody(BaseModel):
    """The body of ``POST /v1/events``."""

    events: list[StreamEventBody]


def serve(app: Any, argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    args, rest = p.parse_known_args(argv)
    import torch
    import uvicorn

    torch.set_num_threads(args.threads)
    uvicorn.run(app(rest), host="127.0.0.1", port=args.port, log_level="warning")
