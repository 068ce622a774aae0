"""The short chaos run of the default suite: two replicas on a real Redis (AOF), a few seconds
of load from concurrent retrying clients, one replica SIGKILLed part-way (and not restarted, so
the run stays short: the clients fail over). Every acknowledged event must be applied exactly
once, as the offline replay computes it. The long campaign is ``make chaos``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from liquidcore.checkpoint import load_model
from service.settings import DEMO_MODEL_DIR
from tests.chaos.campaign import run_scenario
from tests.chaos.cluster import Cluster
from tests.chaos.faults import Fault
from tests.chaos.load import LoadShape

pytestmark = [pytest.mark.integration]


async def _kill_first_replica(cluster: Cluster) -> None:
    await asyncio.to_thread(cluster.replicas[0].kill)


def test_a_replica_killed_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    model = load_model(DEMO_MODEL_DIR)
    shape = LoadShape(streams=24, rate=150.0, duration_s=3.0, drain_s=20.0, request_timeout_s=5.0)
    kill = Fault("replica_sigkill_no_restart", "SIGKILL one replica", _kill_first_replica)
    with Cluster.start(tmp_path) as cluster:
        result = asyncio.run(run_scenario(cluster, kill, shape, model, fault_at_s=1.2))
    verdict, tally = result.verdict, result.ledger.tally
    assert verdict.details == []
    assert (verdict.lost, verdict.doubled, verdict.corrupt) == (0, 0, 0)
    assert verdict.streams == shape.streams
    assert verdict.acknowledged >= 100
    assert result.ledger.unresolved == {}
    assert tally.status_5xx == 0
    assert not tally.status_4xx
    assert tally.transport_errors >= 1  # the kill was felt: requests to it failed over
