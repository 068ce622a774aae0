"""Steady event load against service processes while a Redis Cluster is disturbed, judged
afterwards by the chaos campaign's oracle (:func:`tests.chaos.oracle.judge`).

Each stream is one thread that posts its events in time order (ids ``<stream>-<i>``),
alternating between the services; a 503 is retried with the same event (the documented
answer to a store that cannot commit now), any other answer is recorded. Every event answered
2xx is an acknowledgement; the oracle replays them offline and compares the counts answered,
the final stored count and the exported state: lost, applied twice or corrupt.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from liquidcore.model import LiquidModel
from tests.chaos.load import Ack, PlannedEvent
from tests.chaos.oracle import Verdict, judge

T0 = 1_714_564_800.0
RETRY_503_S = 0.05
MAX_503_RETRIES = 400


@dataclass
class StreamLog:
    acks: list[Ack] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    gave_up: bool = False  # its last event still answered 503 after every retry


@dataclass
class LoadReport:
    streams: dict[str, StreamLog]
    verdict: Verdict

    @property
    def acked(self) -> int:
        return sum(len(s.acks) for s in self.streams.values())

    @property
    def statuses(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for s in self.streams.values():
            total.update(s.statuses)
        return total

    @property
    def bad_5xx(self) -> int:
        """5xx answers other than the documented 503."""
        return sum(n for code, n in self.statuses.items() if code >= 500 and code != 503)

    def check(self) -> None:
        """Something was acknowledged; no 5xx but the documented 503; nothing lost, applied
        twice or corrupt."""
        assert self.acked > 0, self.summary()
        assert self.bad_5xx == 0, self.summary()
        v = self.verdict
        assert (v.lost, v.doubled, v.corrupt) == (0, 0, 0), self.summary()

    def summary(self) -> str:
        v = self.verdict
        details = "; ".join(v.details[:3])
        return (
            f"acked={self.acked} statuses={dict(sorted(self.statuses.items()))} "
            f"lost={v.lost} doubled={v.doubled} corrupt={v.corrupt} "
            f"max_drift={v.max_drift:.1e}" + (f" ({details})" if details else "")
        )


def stored_state(client: httpx.Client, url: str) -> dict[str, Any] | None:
    """The stream's exported state (None: no state); a 503 or a dropped connection is asked
    again, anything else unexpected fails the check."""
    for _ in range(MAX_503_RETRIES):
        try:
            r = client.get(url)
        except httpx.TransportError:
            time.sleep(RETRY_503_S)
            continue
        if r.status_code == 503:
            time.sleep(RETRY_503_S)
            continue
        if r.status_code == 404:
            return None
        r.raise_for_status()
        state: dict[str, Any] = r.json()
        return state
    raise RuntimeError(f"{url} answered 503 for {MAX_503_RETRIES * RETRY_503_S:.0f} s")


class EventLoad:
    """Threads posting the events of ``streams`` to ``bases`` until :meth:`stop`."""

    def __init__(
        self,
        bases: Sequence[str],
        streams: int | Sequence[str],
        *,
        prefix: str = "load",
        features: int = 3,
    ) -> None:
        """``streams``: how many (named ``<prefix><k>``), or their names."""
        self.bases = list(bases)
        self.features = features
        if isinstance(streams, int):
            self.names = [f"{prefix}{k}" for k in range(streams)]
        else:
            self.names = list(streams)
        self.logs = {name: StreamLog() for name in self.names}
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(len(self.names))
        self._futures = [self._pool.submit(self._run, name) for name in self.names]

    def _run(self, name: str) -> None:
        log = self.logs[name]
        with httpx.Client(timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                x = tuple(float((i + j) % 7) for j in range(self.features))
                event = PlannedEvent(name, f"{name}-{i}", T0 + i, x)
                base = self.bases[i % len(self.bases)]
                for _ in range(MAX_503_RETRIES):
                    try:
                        r = client.post(f"{base}/v1/streams/{name}/events", json=event.body())
                    except httpx.TransportError:
                        log.statuses[0] += 1
                        time.sleep(RETRY_503_S)
                        continue
                    log.statuses[r.status_code] += 1
                    if r.status_code != 503:
                        break
                    time.sleep(RETRY_503_S)
                else:
                    log.gave_up = True
                    return  # the next event would be applied without this one: stop here
                if 200 <= r.status_code < 300:
                    p = r.json()
                    log.acks.append(Ack(event, p["count"], p["outputs"], p["duplicate"]))
                i += 1

    def stop(self, model: LiquidModel) -> LoadReport:
        """Stop posting, then judge every stream's acknowledged events against an offline
        replay on ``model`` and the state the service stored."""
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        with httpx.Client(timeout=30) as client:
            states = {
                name: stored_state(client, f"{self.bases[0]}/v1/streams/{name}/state")
                for name in self.names
            }
        acks = {name: log.acks for name, log in self.logs.items() if log.acks}
        gave_up = [name for name, log in self.logs.items() if log.gave_up]
        return LoadReport(self.logs, judge(model, acks, states, unresolved=gave_up))
