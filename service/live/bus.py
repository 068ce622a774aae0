"""Live feeds: every prediction of a stream, pushed to whoever watches it.

A :class:`LiveBus` carries text messages on named channels (see
:func:`service.store.keys.live_channel`). Each local subscriber has a bounded buffer: when it
is full, the oldest message is dropped and ``liquid_live_messages_dropped_total`` counts it, so
a slow WebSocket client never makes this process's memory grow.

- :class:`MemoryLiveBus`: in-process (one replica, or tests).
- :class:`RedisLiveBus`: Redis pub/sub. One pub/sub connection per process, subscribed to the
  channels that have at least one local subscriber (subscribing and unsubscribing as local
  subscribers come and go), fanning each message out to them. So predictions made by any
  process or replica reach this process's WebSocket clients. Delivery is at most once: what is
  published while the connection is down is lost (the state in the store is not).
- :class:`service.live.cluster.ClusterLiveBus`: the same on a Redis Cluster, with sharded
  pub/sub (``SSUBSCRIBE`` / ``SPUBLISH``).

Usage::

    sub = bus.subscribe(channel, maxsize=256)
    await sub.ready()            # optional: returns once messages published from now on arrive
    async for message in sub:    # ends when sub.close() or bus.close() is called
        ...
    sub.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_MAXSIZE = 256

# ARGV[1]: per message, packed little-endian u32 channel length and u32 message length;
# ARGV[2]: channel and message bytes, one after the other. Published in order. (Two arguments
# whatever the batch: redis-py packs each argument in Python. Channels are not keys: on a
# cluster PUBLISH reaches every node's subscribers whichever node runs it.)
PUBLISH_SCRIPT = """
local heads, data = ARGV[1], ARGV[2]
local hpos, dpos = 1, 1
while hpos < #heads do
  local nc, nm
  nc, nm, hpos = struct.unpack('<I4I4', heads, hpos)
  local channel = string.sub(data, dpos, dpos + nc - 1)
  local message = string.sub(data, dpos + nc, dpos + nc + nm - 1)
  dpos = dpos + nc + nm
  redis.call('PUBLISH', channel, message)
end
return 0
"""
_PUBLISH_HEAD = struct.Struct("<II")  # channel length, message length (PUBLISH_SCRIPT)


class Subscription:
    """One local subscriber of one channel: an async iterator of messages (str)."""

    def __init__(
        self,
        channel: str,
        maxsize: int,
        *,
        metrics: Metrics | None,
        on_close: Callable[[Subscription], None],
        ready: Callable[[], Any] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1; got {maxsize}")
        self.channel = channel
        self.maxsize = maxsize
        self.dropped = 0
        self._metrics = metrics
        self._on_close = on_close
        self._ready = ready
        self._buffer: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._buffer)

    def deliver(self, message: str) -> None:
        """Queue ``message`` (called by the bus); drops the oldest one when the buffer is full."""
        if self._closed:
            return
        if len(self._buffer) >= self.maxsize:
            self._buffer.popleft()
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.live_dropped.inc()
        self._buffer.append(message)
        self._wakeup.set()

    async def ready(self) -> None:
        """Return once the bus delivers what is published on the channel from now on."""
        if self._ready is not None and not self._closed:
            await self._ready()

    async def get(self) -> str:
        """The next message; ``StopAsyncIteration`` once closed."""
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._buffer.popleft()

    def get_nowait(self) -> str | None:
        return self._buffer.popleft() if self._buffer else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> str:
        return await self.get()

    def close(self) -> None:
        """Stop receiving; a pending or later ``get`` ends the iteration. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._wakeup.set()
        self._on_close(self)

    async def __aenter__(self) -> Subscription:
        await self.ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@runtime_checkable
class LiveBus(Protocol):
    async def publish(self, channel: str, message: str) -> None: ...

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        """Publish ``(channel, message)`` pairs in order (one round trip on Redis)."""
        ...

    def subscribe(self, channel: str, maxsize: int = DEFAULT_MAXSIZE) -> Subscription: ...

    def subscriber_count(self, channel: str) -> int: ...

    async def listened(self, channels: Sequence[str]) -> list[bool]:
        """Whether each of ``channels`` has a subscriber now, in any process (``True`` where
        unknown). A subscriber this misses subscribed after the call, so a message that is
        only published when this says so still reaches every subscriber that was there when
        it was made."""
        ...

    async def close(self) -> None: ...


class _LocalFanout:
    """Local subscribers by channel (shared by both buses)."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.subscribers: dict[str, set[Subscription]] = {}

    def add(self, sub: Subscription) -> bool:
        """Register ``sub``; ``True`` if it is the channel's first local subscriber."""
        subs = self.subscribers.setdefault(sub.channel, set())
        subs.add(sub)
        return len(subs) == 1

    def remove(self, sub: Subscription) -> bool:
        """Unregister ``sub``; ``True`` if the channel has no local subscriber left."""
        subs = self.subscribers.get(sub.channel)
        if subs is None:
            return False
        subs.discard(sub)
        if subs:
            return False
        del self.subscribers[sub.channel]
        return True

    def deliver(self, channel: str, message: str) -> None:
        for sub in tuple(self.subscribers.get(channel, ())):
            sub.deliver(message)

    def discard(self, sub: Subscription) -> None:
        self.remove(sub)

    def count(self, channel: str) -> int:
        return len(self.subscribers.get(channel, ()))

    def close_all(self) -> None:
        for subs in tuple(self.subscribers.values()):
            for sub in tuple(subs):
                sub.close()
        self.subscribers.clear()


class MemoryLiveBus:
    """In-process :class:`LiveBus`."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._local = _LocalFanout(metrics)

    async def publish(self, channel: str, message: str) -> None:
        self._local.deliver(channel, message)

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        for channel, message in messages:
            self._local.deliver(channel, message)

    def subscribe(self, channel: str, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        sub = Subscription(
            channel, maxsize, metrics=self._local.metrics, on_close=self._local.discard
        )
        self._local.add(sub)
        return sub

    def subscriber_count(self, channel: str) -> int:
        return self._local.count(channel)

    async def listened(self, channels: Sequence[str]) -> list[bool]:
        count = self._local.count
        return [count(c) > 0 for c in channels]

    async def close(self) -> None:
        self._local.close_all()


class RedisLiveBus:
    """:class:`LiveBus` on Redis pub/sub with one subscriber connection per process.

    A control task keeps the Redis subscriptions equal to the set of channels that have local
    subscribers (batching SUBSCRIBE / UNSUBSCRIBE as subscribers come and go); a reader task
    fans each message out to the local subscribers. Both start with the first subscription.
    """

    def __init__(
        self,
        url: str,
        *,
        metrics: Metrics | None = None,
        socket_timeout: float | None = 5.0,
        socket_connect_timeout: float | None = 5.0,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        self.url = url
        # socket_timeout bounds publishes and (un)subscribes; the reader passes its own timeout.
        self._redis: Any = self._make_client(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout
        )
        self._publish_script = self._redis.register_script(PUBLISH_SCRIPT)
        self._pubsub: Any = self._redis.pubsub()
        self._local = _LocalFanout(metrics)
        self._reconnect_delay_s = reconnect_delay_s
        self._subscribed: set[str] = set()  # channels SUBSCRIBEd on the connection
        self._outstanding: dict[str, int] = {}  # SUBSCRIBEs sent and not yet confirmed
        self._confirmed: dict[str, asyncio.Event] = {}
        self._dirty = asyncio.Event()
        self._control: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    # --- what a Redis Cluster does differently (service.live.cluster overrides these) -------

    SUBSCRIBED = "subscribe"  # the confirmation of a subscription
    MESSAGE = "message"
    PUBLISH = "PUBLISH"

    def _make_client(self, url: str, **options: Any) -> Any:
        return aioredis.Redis.from_url(url, decode_responses=False, **options)

    async def _connect(self) -> None:
        await self._pubsub.connect()

    async def _send_subscribe(self, channels: list[str]) -> None:
        await self._pubsub.subscribe(*channels)

    async def _send_unsubscribe(self, channels: list[str]) -> None:
        await self._pubsub.unsubscribe(*channels)

    def _connection_channels(self) -> Any:
        return self._pubsub.channels

    async def _next_message(self, timeout: float) -> Any:
        # Blocks until a message arrives (closing cancels the reader). With a timeout, redis-py
        # arms an asyncio timeout per message: 13.0 µs of CPU per message against 5.9 µs
        # blocking (bench/pubsub_read.py). A broken connection still raises here, and the next
        # call reconnects and resubscribes. ``timeout`` is for the cluster's sharded reader.
        return await self._pubsub.get_message(timeout=None)

    # --- publishing -------------------------------------------------------------------------

    async def publish(self, channel: str, message: str) -> None:
        await self._redis.execute_command(self.PUBLISH, channel, message)

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        """One command for all of ``messages``: a script that PUBLISHes each pair in order.
        redis-py packs and parses every command in Python, so one PUBLISH per prediction (a
        pipeline of 256 at batch 256) cost more than the batch's model step."""
        if not messages:
            return
        heads = bytearray()
        data = bytearray()
        for channel, message in messages:
            c, m = channel.encode("utf-8"), message.encode("utf-8")
            heads += _PUBLISH_HEAD.pack(len(c), len(m))
            data += c
            data += m
        await self._publish_script(args=[bytes(heads), bytes(data)])

    # --- subscribing ------------------------------------------------------------------------

    def subscribe(self, channel: str, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        if self._closed:
            raise RuntimeError("the live bus is closed")
        event = self._confirmed.setdefault(channel, asyncio.Event())

        async def ready() -> None:
            await event.wait()

        sub = Subscription(
            channel, maxsize, metrics=self._local.metrics, on_close=self._unsubscribed, ready=ready
        )
        if self._local.add(sub):
            self._dirty.set()
            self._ensure_tasks()
        return sub

    def _unsubscribed(self, sub: Subscription) -> None:
        if self._local.remove(sub):
            self._dirty.set()

    def subscriber_count(self, channel: str) -> int:
        return self._local.count(channel)

    async def listened(self, channels: Sequence[str]) -> list[bool]:
        """One ``PUBSUB NUMSUB`` over ``channels`` (Redis answers it after every command it
        received before, SUBSCRIBEs included)."""
        if not channels:
            return []
        reply = await self._redis.pubsub_numsub(*channels)  # [(channel, count), ...]
        return [int(n) > 0 for _, n in reply]

    def _ensure_tasks(self) -> None:
        if self._control is None:
            self._control = asyncio.get_running_loop().create_task(
                self._control_loop(), name="live-bus-control"
            )

    async def _control_loop(self) -> None:
        while not self._closed:
            try:
                await self._connect()
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.get_running_loop().create_task(
                        self._read_loop(), name="live-bus-reader"
                    )
                while not self._closed:
                    await self._dirty.wait()
                    self._dirty.clear()
                    await self._reconcile()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("live bus: subscribing failed (%s); retrying", exc)
                # What redis-py resubscribes on reconnect is what the connection will have.
                self._subscribed = {
                    c.decode("utf-8") if isinstance(c, bytes) else str(c)
                    for c in self._connection_channels()
                }
                self._dirty.set()
                await asyncio.sleep(self._reconnect_delay_s)

    async def _reconcile(self) -> None:
        wanted = set(self._local.subscribers)
        add = sorted(wanted - self._subscribed)
        drop = sorted(self._subscribed - wanted)
        if drop:
            for channel in drop:
                self._subscribed.discard(channel)
                event = self._confirmed.get(channel)
                if event is not None and channel not in wanted:
                    event.clear()
            await self._send_unsubscribe(drop)
        if add:
            for channel in add:
                self._outstanding[channel] = self._outstanding.get(channel, 0) + 1
                self._subscribed.add(channel)
                self._confirmed.setdefault(channel, asyncio.Event()).clear()
            await self._send_subscribe(add)
        for channel in list(self._confirmed):
            if channel not in wanted and channel not in self._outstanding:
                del self._confirmed[channel]

    def _on_control_message(self, kind: str, channel: str) -> None:
        if kind == self.SUBSCRIBED:
            left = self._outstanding.get(channel, 0) - 1
            if left > 0:
                self._outstanding[channel] = left
                return
            self._outstanding.pop(channel, None)
            if channel in self._subscribed:
                event = self._confirmed.get(channel)
                if event is not None:
                    event.set()

    async def _read_loop(self) -> None:
        while not self._closed:
            try:
                msg = await self._next_message(1.0)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("live bus: reading failed (%s); reconnecting", exc)
                await asyncio.sleep(self._reconnect_delay_s)
                continue
            if msg is None:
                continue
            kind = msg["type"]
            channel = msg["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode("utf-8", "replace")
            if kind == self.MESSAGE:
                data = msg["data"]
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                self._local.deliver(channel, text)
            elif isinstance(kind, str):
                self._on_control_message(kind, channel)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._local.close_all()
        for task in (self._control, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                    await task
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
        await self._redis.aclose()
