"""State stores: versioned compare-and-set, TTL, delete, concurrency. The Redis store runs on
the harness's private redis-server (never a mock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from service.store import CasWrite, MemoryStore, RedisStore, StateStore, Versioned, make_store
from service.store.base import ttl_ms

pytestmark = pytest.mark.anyio


async def test_create_then_compare_and_set(store: StateStore) -> None:
    assert await store.load_many(["k"]) == [None]
    assert await store.cas_many([CasWrite("k", 0, b"one", 60)]) == [True]
    assert await store.load_many(["k"]) == [Versioned(1, b"one")]
    # expected 0 means "must not exist": a second creator loses
    assert await store.cas_many([CasWrite("k", 0, b"other", 60)]) == [False]
    assert await store.cas_many([CasWrite("k", 1, b"two", 60)]) == [True]
    # a stale writer that read version 1 loses, and changes nothing
    assert await store.cas_many([CasWrite("k", 1, b"stale", 60)]) == [False]
    assert await store.cas_many([CasWrite("k", 5, b"future", 60)]) == [False]
    assert await store.load_many(["k"]) == [Versioned(2, b"two")]


async def test_many_keys_in_order_with_mixed_outcomes(store: StateStore) -> None:
    await store.cas_many([CasWrite("a", 0, b"a1", 60), CasWrite("b", 0, b"b1", 60)])
    won = await store.cas_many(
        [
            CasWrite("a", 1, b"a2", 60),
            CasWrite("b", 0, b"nope", 60),
            CasWrite("c", 0, b"c1", None),
            CasWrite("b", 1, b"b2", 60),
        ]
    )
    assert won == [True, False, True, True]
    got = await store.load_many(["c", "missing", "a", "b"])
    assert got == [Versioned(1, b"c1"), None, Versioned(2, b"a2"), Versioned(2, b"b2")]
    assert await store.load_many([]) == []
    assert await store.cas_many([]) == []


async def test_binary_payloads_are_kept_exactly(store: StateStore) -> None:
    payload = bytes(range(256)) * 40
    await store.cas_many([CasWrite("bin", 0, payload, 60)])
    assert (await store.load_many(["bin"]))[0] == Versioned(1, payload)


async def test_delete(store: StateStore) -> None:
    await store.cas_many([CasWrite("k", 0, b"x", 60)])
    assert await store.delete("k") is True
    assert await store.delete("k") is False
    assert await store.load_many(["k"]) == [None]
    # versions start again after a delete
    assert await store.cas_many([CasWrite("k", 0, b"y", 60)]) == [True]
    assert await store.load_many(["k"]) == [Versioned(1, b"y")]


async def test_ping(store: StateStore) -> None:
    assert await store.ping() is True


async def test_concurrent_writers_lose_no_update(make_store: Callable[[], StateStore]) -> None:
    """Several clients increment one counter by load + CAS, retrying on conflict."""
    stores = [make_store() for _ in range(4)]
    conflicts = 0

    async def increment(s: StateStore, times: int) -> None:
        nonlocal conflicts
        for _ in range(times):
            while True:
                (cur,) = await s.load_many(["counter"])
                version, value = (0, 0) if cur is None else (cur.version, int(cur.payload))
                await asyncio.sleep(0)  # let the others interleave between load and write
                (ok,) = await s.cas_many([CasWrite("counter", version, b"%d" % (value + 1), 60)])
                if ok:
                    break
                conflicts += 1

    await asyncio.gather(*(increment(s, 25) for s in stores))
    (final,) = await stores[0].load_many(["counter"])
    assert final is not None
    assert int(final.payload) == 100
    assert final.version == 100
    assert conflicts > 0  # the race was real


def test_cas_write_validation() -> None:
    with pytest.raises(ValueError, match="expected_version"):
        CasWrite("k", -1, b"", 1)
    with pytest.raises(ValueError, match="ttl_s"):
        CasWrite("k", 0, b"", 0)
    assert ttl_ms(None) == 0
    assert ttl_ms(0.0001) == 1
    assert ttl_ms(1.0001) == 1001


def test_make_store() -> None:
    assert isinstance(make_store(None), MemoryStore)
    assert isinstance(make_store(""), MemoryStore)
    assert isinstance(make_store(None), StateStore)


# --- memory store: TTL with a controlled clock ------------------------------------------------


async def test_memory_ttl_expires_and_is_reset_by_writes() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    await store.cas_many([CasWrite("k", 0, b"a", 10), CasWrite("forever", 0, b"f", None)])
    now[0] += 9
    assert await store.cas_many([CasWrite("k", 1, b"b", 10)]) == [True]  # TTL restarts
    now[0] += 9
    assert await store.load_many(["k"]) == [Versioned(2, b"b")]
    now[0] += 1.5
    assert await store.load_many(["k", "forever"]) == [None, Versioned(1, b"f")]
    # an expired key no longer exists: CAS against its old version fails, creation works
    assert await store.cas_many([CasWrite("k", 2, b"c", 10)]) == [False]
    assert await store.cas_many([CasWrite("k", 0, b"c", 10)]) == [True]
    assert await store.delete("forever") is True


async def test_memory_sweeps_expired_keys() -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    await store.cas_many([CasWrite(f"old{i}", 0, b"x", 1) for i in range(500)])
    now[0] += 2
    for i in range(3):  # enough later writes to trigger a sweep
        await store.cas_many([CasWrite(f"new{i}-{j}", 0, b"y", 100) for j in range(400)])
    assert len(store) == 1200


# --- redis store ------------------------------------------------------------------------------


@pytest.mark.integration
async def test_redis_layout_and_ttl(redis_url: str) -> None:
    store = RedisStore(redis_url)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await store.cas_many([CasWrite("liquid:s:t:m:{s1}", 0, b"payload", 30)])
        fields = await raw.hgetall("liquid:s:t:m:{s1}")
        assert fields[b"v"] == b"1"
        assert fields[b"d"] == b"payload"
        assert len(fields[b"w"]) == 8
        assert 29_000 < await raw.pttl("liquid:s:t:m:{s1}") <= 30_000
        await store.cas_many([CasWrite("liquid:s:t:m:{s1}", 1, b"p2", None)])
        assert await raw.pttl("liquid:s:t:m:{s1}") == -1  # no TTL: persisted
        # real expiry
        await store.cas_many([CasWrite("short", 0, b"x", 0.05)])
        assert (await store.load_many(["short"]))[0] == Versioned(1, b"x")
        await asyncio.sleep(0.12)
        assert await store.load_many(["short"]) == [None]
    finally:
        await raw.aclose()
        await store.close()


@pytest.mark.integration
async def test_redis_reloads_a_flushed_script(redis_url: str) -> None:
    store = RedisStore(redis_url)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        assert await store.cas_many([CasWrite("k", 0, b"a", 60)]) == [True]
        await raw.script_flush()
        won = await store.cas_many([CasWrite("k", 1, b"b", 60), CasWrite("j", 0, b"c", 60)])
        assert won == [True, True]
        assert await store.load_many(["k", "j"]) == [Versioned(2, b"b"), Versioned(1, b"c")]
    finally:
        await raw.aclose()
        await store.close()


@pytest.mark.integration
async def test_redis_call_resent_after_a_dropped_reply_is_not_a_conflict(redis_url: str) -> None:
    """redis-py resends a command after a connection error; the writes of a CAS call that had
    landed must then report success (its token matches), not a conflict that would re-apply
    events. A key the first call lost stays lost on the resend."""
    store = RedisStore(redis_url)
    try:
        await store.cas_many([CasWrite("taken", 0, b"other", 60)])
        writes = [CasWrite("k", 0, b"a", 60), CasWrite("taken", 0, b"mine", 60)]
        assert await store.cas_group(writes, b"token-01") == [True, False]
        assert await store.cas_group(writes, b"token-01") == [True, False]  # the resend
        assert await store.cas_group(writes, b"token-02") == [False, False]  # another writer
        got = await store.load_many(["k", "taken"])
        assert got == [Versioned(1, b"a"), Versioned(1, b"other")]
    finally:
        await store.close()


async def _command_calls(raw: aioredis.Redis) -> dict[str, int]:
    """Commands the server ran since the last CONFIG RESETSTAT, by name."""
    stats = await raw.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


@pytest.mark.integration
async def test_redis_batch_is_one_command_each_way(redis_url: str) -> None:
    """A batch of 200 keys (existing, absent, stale, expired) is loaded by one EVALSHA and
    committed by one EVALSHA that answers won/lost per key, in order."""
    store = RedisStore(redis_url)
    raw = aioredis.Redis.from_url(redis_url)
    keys = [f"liquid:s:t:m:{{s{i}}}" for i in range(200)]
    try:
        # even keys exist at version 1; every fourth of them is then bumped to version 2
        await store.cas_many([CasWrite(k, 0, b"old", 60) for k in keys[::2]])
        await store.cas_many([CasWrite(k, 1, b"newer", 60) for k in keys[::4]])
        await raw.config_resetstat()
        loaded = await store.load_many(keys)
        want_versions = [2 if i % 4 == 0 else 1 if i % 2 == 0 else 0 for i in range(200)]
        assert [0 if r is None else r.version for r in loaded] == want_versions
        # every writer assumes version 1 (what it "read" earlier): odd keys are absent, keys
        # at version 2 moved on; only the keys still at version 1 win
        won = await store.cas_many([CasWrite(k, 1, b"p%d" % i, 30) for i, k in enumerate(keys)])
        assert won == [v == 1 for v in want_versions]
        calls = await _command_calls(raw)  # (commands run inside a script count too)
        assert calls.get("evalsha") == 2
        assert not {"eval", "script|load", "multi"} & set(calls)
        after = await store.load_many(keys)
        for i, r in enumerate(after):
            if want_versions[i] == 1:
                assert r == Versioned(2, b"p%d" % i)
            elif want_versions[i] == 2:
                assert r == Versioned(2, b"newer")
            else:
                assert r is None
        # the winners' TTL was set by the batch write; the losers' is untouched
        assert 29_000 < await raw.pttl(keys[2]) <= 30_000
        assert 59_000 < await raw.pttl(keys[0]) <= 60_000
    finally:
        await raw.aclose()
        await store.close()


@pytest.mark.integration
async def test_redis_batch_recovers_from_a_script_flush(redis_url: str) -> None:
    """After SCRIPT FLUSH (as after a server restart) both the load and the CAS calls answer
    NOSCRIPT once, load their script and run: same results as before the flush."""
    store = RedisStore(redis_url)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        assert await store.cas_many([CasWrite("a", 0, b"1", 60)]) == [True]
        assert await store.load_many(["a", "b"]) == [Versioned(1, b"1"), None]
        await raw.script_flush()
        assert await store.load_many(["a", "b"]) == [Versioned(1, b"1"), None]
        await raw.script_flush()
        won = await store.cas_many(
            [CasWrite("a", 1, b"2", 60), CasWrite("b", 1, b"x", 60), CasWrite("c", 0, b"3", 60)]
        )
        assert won == [True, False, True]
        got = await store.load_many(["a", "b", "c"])
        assert got == [Versioned(2, b"2"), None, Versioned(1, b"3")]
    finally:
        await raw.aclose()
        await store.close()


@pytest.mark.integration
async def test_redis_ping_false_when_unreachable() -> None:
    from tests.conftest import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        assert await store.ping() is False
    finally:
        await store.close()
