"""The Python client of the service: sync and async, typed results, safe retries, live feeds.

::

    from service.client import Client, AsyncClient, Event

    with Client("http://127.0.0.1:8000") as c:
        p = c.send("pump-1", 1714564800.0, [21.5, 0.1, 1000.0])   # -> Prediction
        batch = c.send_multi([Event(1714564801.0, [21.0, 0.2, 990.0], stream_id="pump-2")])

    async with AsyncClient(url) as c:
        async with c.live("pump-1") as feed:        # the stream's WebSocket
            await feed.send(1714564802.0, [21.4, 0.1, 1003.0])
            async for p in feed: ...                # every prediction of the stream

Every event gets an id before its first attempt, so retries (transport errors, 502/503/504)
are idempotent: the service answers a repeat with the original prediction (``duplicate``).
Refusals raise :class:`ServiceError` with the API's error ``code``; per-event outcomes of a
batch are in :class:`BatchResult`.
"""

from service.client.http import AsyncClient, Client
from service.client.live import LiveStream
from service.client.types import BatchResult, Event, ItemResult, Prediction, ServiceError
from service.client.wire import RetryPolicy

__all__ = [
    "AsyncClient",
    "BatchResult",
    "Client",
    "Event",
    "ItemResult",
    "LiveStream",
    "Prediction",
    "RetryPolicy",
    "ServiceError",
]
