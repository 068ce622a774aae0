"""Load from many concurrent clients: one asyncio task per stream sends that stream's events in
time order over HTTP, alternating between the replicas, and retries an unanswered request with
the same event ids (on the next replica) until it is acknowledged, so every event that is
acknowledged once is in the ledger, with the answer the service gave.

A request is *acknowledged* when the service answers 200 for the event (applied, or marked a
duplicate of an applied one). Everything else is counted: transport errors (refused, reset,
timed out), 503, other 5xx, and 4xx (none is expected: every event is valid and in order).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

# Event times are unrelated to the wall clock: 2026-01-01T00:00:00Z onwards.
T0 = 1_767_225_600.0
# Requests carry one event mostly, sometimes a short batch of the same stream.
BATCH_SIZES = (1, 1, 1, 1, 2, 3)
MAX_BACKOFF_S = 1.0
MAX_RETRY_AFTER_S = 2.0
SAMPLES_KEPT = 5


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    stream_id: str
    id: str
    t: float
    x: tuple[float, ...]

    def body(self) -> dict[str, Any]:
        return {"t": self.t, "x": list(self.x), "id": self.id}


class EventSource:
    """One stream's events, drawn on demand from its own seeded generator: irregular gaps (a
    tenth of them zero: equal timestamps are legal) and inputs around the model's statistics."""

    def __init__(
        self, stream_id: str, seed: int, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.stream_id = stream_id
        self._rng = random.Random(seed)
        self._mean, self._std = list(mean), list(std)
        self._t = T0 + self._rng.uniform(0, 10)
        self._n = 0

    def take(self, k: int) -> list[PlannedEvent]:
        out = []
        for _ in range(k):
            if self._n and self._rng.random() >= 0.1:
                self._t += round(self._rng.expovariate(4.0), 3) + 0.001
            x = tuple(
                m + s * self._rng.gauss(0, 1) for m, s in zip(self._mean, self._std, strict=True)
            )
            out.append(PlannedEvent(self.stream_id, f"{self.stream_id}-e{self._n}", self._t, x))
            self._n += 1
        return out


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledged event and the service's answer for it."""

    event: PlannedEvent
    count: int
    outputs: Any  # as answered: a list, or an object keyed by output name
    duplicate: bool


@dataclass
class Tally:
    """What the clients saw, request by request."""

    requests: int = 0
    transport_errors: int = 0
    status_503: int = 0
    status_5xx: int = 0  # 5xx other than 503
    status_4xx: Counter[str] = field(default_factory=Counter)  # "409 out_of_order" -> n
    samples: list[str] = field(default_factory=list)  # first few unexpected answers

    def sample(self, text: str) -> None:
        if len(self.samples) < SAMPLES_KEPT:
            self.samples.append(text[:300])


@dataclass
class Ledger:
    acks: dict[str, list[Ack]] = field(default_factory=dict)
    rejected: dict[str, list[PlannedEvent]] = field(default_factory=dict)  # 4xx: not applied
    unresolved: dict[str, list[PlannedEvent]] = field(default_factory=dict)  # never answered
    tally: Tally = field(default_factory=Tally)

    @property
    def acknowledged(self) -> int:
        return sum(len(a) for a in self.acks.values())


@dataclass(frozen=True)
class LoadShape:
    streams: int = 200
    rate: float = 400.0  # events per second offered, all streams together
    duration_s: float = 20.0  # new events are sent this long; then only retries
    drain_s: float = 60.0  # a request still unanswered this long after is given up
    request_timeout_s: float = 10.0
    seed: int = 0


class StreamClient:
    """Drives one stream: a request at a time, retried until acknowledged."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        urls: Sequence[str],
        source: EventSource,
        ledger: Ledger,
        rng: random.Random,
    ) -> None:
        self.http, self.urls, self.source, self.ledger, self.rng = http, urls, source, ledger, rng
        self.sent = 0  # requests so far: picks the replica, so a stream alternates between them

    async def run(self, shape: LoadShape, load_until: float, give_up_at: float) -> None:
        interval = shape.streams / shape.rate
        await asyncio.sleep(self.rng.uniform(0, interval))
        while time.monotonic() < load_until:
            batch = self.source.take(self.rng.choice(BATCH_SIZES))
            if not await self.send(batch, give_up_at):
                self.ledger.unresolved.setdefault(self.source.stream_id, []).extend(batch)
                return
            await asyncio.sleep(interval * len(batch) * self.rng.uniform(0.5, 1.5))

    async def send(self, batch: list[PlannedEvent], give_up_at: float) -> bool:
        """Send until the service answers for every event; False when it never did."""
        stream = self.source.stream_id
        body: Any = batch[0].body() if len(batch) == 1 else {"events": [e.body() for e in batch]}
        attempt = 0
        while time.monotonic() < give_up_at:
            url = self.urls[(self.sent + attempt) % len(self.urls)]
            attempt += 1
            tally = self.ledger.tally
            tally.requests += 1
            try:
                r = await self.http.post(f"{url}/v1/streams/{stream}/events", json=body)
            except httpx.TransportError:
                tally.transport_errors += 1
                await self._backoff(attempt)
                continue
            if r.status_code == 503:
                tally.status_503 += 1
                await asyncio.sleep(_retry_after(r) or self._backoff_s(attempt))
                continue
            if r.status_code >= 500:
                tally.status_5xx += 1
                tally.sample(f"{r.status_code} {url}: {r.text}")
                await self._backoff(attempt)
                continue
            self.sent += 1
            self._settle(batch, r)
            return True
        return False

    def _settle(self, batch: list[PlannedEvent], r: httpx.Response) -> None:
        """Record each event's answer: 200 acknowledged, anything else rejected."""
        data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if len(batch) == 1:
            answers = [(r.status_code, data)]
        elif r.status_code == 200:
            answers = [(item["status"], item) for item in data["results"]]
        else:
            answers = [(r.status_code, data)] * len(batch)
        stream = self.source.stream_id
        for event, (status, answer) in zip(batch, answers, strict=True):
            prediction = answer.get("prediction", answer) if len(batch) > 1 else answer
            if status == 200:
                self.ledger.acks.setdefault(stream, []).append(
                    Ack(event, prediction["count"], prediction["outputs"], prediction["duplicate"])
                )
                continue
            code = (answer.get("error") or {}).get("code", "?")
            self.ledger.tally.status_4xx[f"{status} {code}"] += 1
            self.ledger.tally.sample(f"{status} for {event.id}: {answer}")
            self.ledger.rejected.setdefault(stream, []).append(event)

    def _backoff_s(self, attempt: int) -> float:
        return min(MAX_BACKOFF_S, 0.02 * 2**attempt) * self.rng.uniform(0.5, 1.0)

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(self._backoff_s(attempt))


def _retry_after(r: httpx.Response) -> float | None:
    try:
        return min(MAX_RETRY_AFTER_S, float(r.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def stream_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]


async def run_load(
    urls: Sequence[str],
    shape: LoadShape,
    prefix: str,
    mean: Sequence[float],
    std: Sequence[float],
) -> Ledger:
    """Drive ``shape.streams`` streams named ``PREFIX-0000`` ... against ``urls`` for
    ``shape.duration_s``, then finish every pending request (up to ``shape.drain_s`` more)."""
    ledger = Ledger()
    start = time.monotonic()
    load_until = start + shape.duration_s
    give_up_at = load_until + shape.drain_s
    limits = httpx.Limits(max_connections=max(64, shape.streams), max_keepalive_connections=64)
    timeout = httpx.Timeout(shape.request_timeout_s)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        clients = [
            StreamClient(
                http,
                urls,
                EventSource(sid, shape.seed * 1_000_003 + i, mean, std),
                ledger,
                random.Random(shape.seed * 7_919 + i),
            )
            for i, sid in enumerate(stream_ids(prefix, shape.streams))
        ]
        await asyncio.gather(*(c.run(shape, load_until, give_up_at) for c in clients))
    return ledger
