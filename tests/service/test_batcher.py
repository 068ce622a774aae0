"""Batch formation without a model or a store: max_batch, max_delay, grouping, backpressure."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from service.engine.batcher import Batcher, BatcherClosed, group_by_stream

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Item:
    stream_key: str
    n: int


async def test_full_batches_form_without_waiting() -> None:
    b: Batcher[int] = Batcher(max_batch=4, max_delay_s=10.0)
    for i in range(10):
        await b.put(i)
    t0 = time.monotonic()
    assert await b.next_batch() == [0, 1, 2, 3]
    assert await b.next_batch() == [4, 5, 6, 7]
    assert time.monotonic() - t0 < 1.0  # did not wait for max_delay
    assert len(b) == 2


async def test_a_partial_batch_waits_at_most_max_delay() -> None:
    b: Batcher[int] = Batcher(max_batch=100, max_delay_s=0.05)
    await b.put(1)
    t0 = time.monotonic()
    assert await b.next_batch() == [1]
    waited = time.monotonic() - t0
    assert 0.03 <= waited < 0.5


async def test_items_arriving_within_the_delay_join_the_batch() -> None:
    b: Batcher[int] = Batcher(max_batch=100, max_delay_s=0.1)

    async def produce() -> None:
        await b.put(1)
        await asyncio.sleep(0.02)
        await b.put(2)
        await asyncio.sleep(0.02)
        await b.put(3)

    producer = asyncio.create_task(produce())
    assert await b.next_batch() == [1, 2, 3]
    await producer


async def test_a_batch_closes_as_soon_as_it_is_full() -> None:
    b: Batcher[int] = Batcher(max_batch=3, max_delay_s=5.0)

    async def produce() -> None:
        for i in range(3):
            await asyncio.sleep(0.01)
            await b.put(i)

    producer = asyncio.create_task(produce())
    t0 = time.monotonic()
    assert await b.next_batch() == [0, 1, 2]
    assert time.monotonic() - t0 < 1.0
    await producer


async def test_the_delay_counts_from_enqueueing_so_waited_items_do_not_wait_again() -> None:
    b: Batcher[int] = Batcher(max_batch=100, max_delay_s=0.05)
    await b.put(1)
    await asyncio.sleep(0.08)  # e.g. the previous batch was being computed
    t0 = time.monotonic()
    assert await b.next_batch() == [1]
    assert time.monotonic() - t0 < 0.03


async def test_next_batch_waits_for_a_first_item() -> None:
    b: Batcher[str] = Batcher(max_batch=8, max_delay_s=0.0)
    task = asyncio.create_task(b.next_batch())
    await asyncio.sleep(0.02)
    assert not task.done()
    await b.put("a")
    assert await asyncio.wait_for(task, 1.0) == ["a"]


async def test_futures_and_pending_metadata() -> None:
    b: Batcher[str] = Batcher(max_batch=8, max_delay_s=0.0)
    f1 = await b.put("a")
    f2, f3 = await b.put_many(["b", "c"])
    pending = await b.next_pending()
    assert [p.item for p in pending] == ["a", "b", "c"]
    assert [p.future for p in pending] == [f1, f2, f3]
    assert all(p.enqueued_at <= time.monotonic() for p in pending)
    for p in pending:
        p.future.set_result(p.item.upper())
    assert await asyncio.gather(f1, f2, f3) == ["A", "B", "C"]


async def test_put_many_is_contiguous_across_concurrent_producers() -> None:
    b: Batcher[tuple[str, int]] = Batcher(max_batch=1000, max_delay_s=0.0)
    await asyncio.gather(
        b.put_many([("x", i) for i in range(50)]), b.put_many([("y", i) for i in range(50)])
    )
    items = await b.next_batch()
    first = items[0][0]
    assert [s for s, _ in items[:50]] == [first] * 50


async def test_close_drains_then_ends() -> None:
    b: Batcher[int] = Batcher(max_batch=2, max_delay_s=10.0)
    await b.put_many([1, 2, 3])
    b.close()
    with pytest.raises(BatcherClosed):
        await b.put(4)
    assert await b.next_batch() == [1, 2]
    assert await b.next_batch() == [3]  # no waiting for max_delay once closed
    assert await b.next_batch() == []


async def test_close_wakes_a_waiting_consumer() -> None:
    b: Batcher[int] = Batcher(max_batch=2, max_delay_s=10.0)
    task = asyncio.create_task(b.next_batch())
    await asyncio.sleep(0.01)
    b.close()
    assert await asyncio.wait_for(task, 1.0) == []


async def test_backpressure_when_the_queue_is_full() -> None:
    b: Batcher[int] = Batcher(max_batch=2, max_delay_s=0.0, max_queue=4)
    await b.put_many([1, 2, 3, 4])
    blocked = asyncio.create_task(b.put(5))
    await asyncio.sleep(0.02)
    assert not blocked.done()
    assert await b.next_batch() == [1, 2]
    await asyncio.wait_for(blocked, 1.0)
    assert len(b) == 3
    # a request larger than the whole queue still gets in once the queue is empty
    await b.next_batch()
    await b.next_batch()
    await asyncio.wait_for(b.put_many(list(range(10))), 1.0)
    assert len(b) == 10


def test_validation() -> None:
    with pytest.raises(ValueError, match="max_batch must be greater than 0"):
        Batcher(0, 0.01)
    with pytest.raises(ValueError, match="max_delay_s"):
        Batcher(1, -1.0)
    with pytest.raises(ValueError, match="max_queue"):
        Batcher(8, 0.01, max_queue=4)


def test_group_by_stream_keeps_arrival_order_per_stream() -> None:
    items = [Item("b", 0), Item("a", 1), Item("b", 2), Item("c", 3), Item("a", 4), Item("b", 5)]
    groups: dict[str, list[Item]] = group_by_stream(items)
    assert list(groups) == ["b", "a", "c"]  # streams in order of first appearance
    assert groups["b"] == [Item("b", 0), Item("b", 2), Item("b", 5)]
    assert groups["a"] == [Item("a", 1), Item("a", 4)]
    assert groups["c"] == [Item("c", 3)]
    assert group_by_stream([]) == {}


def test_group_by_stream_with_a_key_function() -> None:
    pairs = [("s1", 1), ("s2", 2), ("s1", 3)]
    assert group_by_stream(pairs, key=lambda p: p[0]) == {
        "s1": [("s1", 1), ("s1", 3)],
        "s2": [("s2", 2)],
    }
