"""One scenario: load on fresh streams, a fault injected part-way and healed, every pending
request finished, then the oracle's verdict. Several scenarios share one :class:`Cluster`; each
uses its own stream names, so they do not interfere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from liquidcore.model import LiquidModel
from tests.chaos.cluster import Cluster
from tests.chaos.faults import Fault
from tests.chaos.load import Ledger, LoadShape, run_load
from tests.chaos.oracle import TOLERANCE, Verdict, judge

EXPORT_TIMEOUT_S = 60.0


@dataclass
class Result:
    fault: Fault
    shape: LoadShape
    ledger: Ledger
    verdict: Verdict
    seconds: float

    def row(self) -> dict[str, Any]:
        t = self.ledger.tally
        return {
            "fault": self.fault.name,
            "acknowledged": self.verdict.acknowledged,
            "lost": self.verdict.lost,
            "doubled": self.verdict.doubled,
            "corrupt": self.verdict.corrupt,
            "5xx": t.status_5xx,
            "503": t.status_503,
            "4xx": sum(t.status_4xx.values()),
            "duplicates": sum(a.duplicate for acks in self.ledger.acks.values() for a in acks),
            "transport errors": t.transport_errors,
            "requests": t.requests,
            "unresolved": sum(len(v) for v in self.ledger.unresolved.values()),
            "max drift": f"{self.verdict.max_drift:.1e}",
        }


async def export_states(urls: Sequence[str], streams: Sequence[str]) -> dict[str, Any]:
    """Each stream's ``GET …/state`` (None on 404), retried until the service answers."""
    out: dict[str, Any] = {}
    deadline = time.monotonic() + EXPORT_TIMEOUT_S
    async with httpx.AsyncClient(timeout=10.0) as http:
        attempt = 0  # a replica that fails is passed over for the next
        for stream in streams:
            while True:
                url = urls[attempt % len(urls)]
                try:
                    r = await http.get(f"{url}/v1/streams/{stream}/state")
                    if r.status_code in (200, 404):
                        out[stream] = r.json() if r.status_code == 200 else None
                        break
                except httpx.TransportError:
                    pass
                attempt += 1
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no state of {stream} after {EXPORT_TIMEOUT_S} s")
                await asyncio.sleep(0.2)
    return out


async def _fault_after(delay: float, fault: Fault, cluster: Cluster) -> None:
    await asyncio.sleep(delay)
    await fault.inject(cluster)


async def run_scenario(
    cluster: Cluster,
    fault: Fault,
    shape: LoadShape,
    model: LiquidModel,
    *,
    fault_at_s: float,
    window: int = 32,
) -> Result:
    """Load ``shape`` on streams named after the fault, ``fault`` injected after
    ``fault_at_s`` seconds, then export and judge every stream."""
    start = time.monotonic()
    await asyncio.to_thread(cluster.redis.set_fsync, fault.fsync)
    mean = model.input_mean.tolist() if model.normalized else [0.0] * model.input_size
    std = model.input_std.tolist() if model.normalized else [1.0] * model.input_size
    prefix = f"chaos-{fault.name.replace('_', '-')}-s{shape.seed}"
    ledger, _ = await asyncio.gather(
        run_load(cluster.urls, shape, prefix, mean, std),
        _fault_after(fault_at_s, fault, cluster),
    )
    states = await export_states(cluster.urls, sorted(ledger.acks))
    verdict = judge(model, ledger.acks, states, window=window, unresolved=list(ledger.unresolved))
    return Result(fault, shape, ledger, verdict, time.monotonic() - start)


COLUMNS = (
    "fault",
    "acknowledged",
    "lost",
    "doubled",
    "corrupt",
    "5xx",
    "503",
    "4xx",
    "transport errors",
    "duplicates",
    "unresolved",
    "max drift",
)


def markdown_table(results: Sequence[Result]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        row = r.row()
        lines.append("| " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    lines.append("")
    lines.append(
        f"lost, doubled, corrupt: events / events / streams; max drift: largest |service − "
        f"offline replay| over every acknowledged prediction and final state (tolerance "
        f"{TOLERANCE:.0e}); 5xx excludes 503; duplicates: retries answered with the original "
        "prediction."
    )
    return "\n".join(lines)
