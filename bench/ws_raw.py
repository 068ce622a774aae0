"""A WebSocket ingest load generator cheap enough not to be the bottleneck on 2 cores.

``service.client.LiveStream`` (the Python client a user imports) spent 50–75% of a core at
9–10k events/s in the service benchmark, on a machine whose other core runs the service:
it measured the client as much as the server. This generator speaks just enough RFC 6455 for
the benchmark: the upgrade handshake, client frames built from bytes (masked with a zero key,
which leaves the payload as it is), server frames parsed in bulk in ``data_received``. Each
socket is one stream's live socket (``/v1/streams/{id}/live``); it keeps ``window`` events in
flight, one event per text frame, and times each from its send to its ``result`` frame
(answers come in order per socket). The live ``prediction`` frames every event also produces
on its own socket are read and counted, not timed. A benchmark tool, not product code.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_RESULT = b'"type":"result"'
_SUBSCRIBED = b'"type":"subscribed"'
_OK = b'"status":200'


@dataclass
class WsStats:
    latencies: list[float] = field(default_factory=list)
    results: int = 0
    predictions: int = 0
    errors: int = 0


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final client frame carrying ``payload``, masked with the key 0 (RFC 6455 5.3)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class _Socket(asyncio.Protocol):
    def __init__(self, host: str, path: str, features: int, window: int, stats: WsStats) -> None:
        self.host, self.path = host, path
        self.window, self.stats = window, stats
        self.x = ("[" + ",".join(["0.1"] * features) + "]").encode()
        self.buf = bytearray()
        self.upgraded = False
        self.subscribed = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.sent: deque[float] = deque()
        self.n = 0
        self.stop_at = 0.0
        self.transport: asyncio.Transport | None = None

    # -- connection ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"closed before subscribing: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- sending ------------------------------------------------------------------------------
    def start(self, stop_at: float) -> None:
        self.stop_at = stop_at
        self._fill()

    def _fill(self) -> None:
        assert self.transport is not None
        now = time.perf_counter()
        frames = []
        while len(self.sent) < self.window and time.monotonic() < self.stop_at:
            self.n += 1
            body = b'{"t":%.2f,"x":%s}' % (1.7e9 + self.n * 0.01, self.x)
            frames.append(client_frame(body))
            self.sent.append(now)
        if frames:
            self.transport.write(b"".join(frames))
        elif not self.sent and not self.closed.done():
            self.transport.write(client_frame(struct.pack("!H", 1000), opcode=0x8))
            self.closed.set_result(None)

    # -- receiving ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.subscribed.set_exception(ConnectionError(bytes(self.buf[:200]).decode()))
                return
            del self.buf[: end + 4]
            self.upgraded = True
        buf, at, answered = self.buf, 0, False
        while len(buf) - at >= 2:
            opcode, n = buf[at] & 0x0F, buf[at + 1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) - at < 4:
                    break
                (n,) = struct.unpack_from("!H", buf, at + 2)
                head = 4
            elif n == 127:
                if len(buf) - at < 10:
                    break
                (n,) = struct.unpack_from("!Q", buf, at + 2)
                head = 10
            if len(buf) - at < head + n:
                break
            payload = bytes(buf[at + head : at + head + n])
            at += head + n
            if opcode == 0x9:  # ping: pong with the same data
                assert self.transport is not None
                self.transport.write(client_frame(payload, opcode=0xA))
            elif opcode in (0x1, 0x2):
                answered |= self._message(payload)
        del buf[:at]
        if answered:
            self._fill()

    def _message(self, payload: bytes) -> bool:
        head = payload[:40].replace(b" ", b"")  # the hello is spaced JSON, the rest compact
        if _RESULT in head or b'"type":"error"' in head:
            t0 = self.sent.popleft()
            self.stats.latencies.append(time.perf_counter() - t0)
            self.stats.results += 1
            self.stats.errors += _OK not in payload[:80].replace(b" ", b"")
            return True
        if _SUBSCRIBED in head and not self.subscribed.done():
            self.subscribed.set_result(None)
        else:
            self.stats.predictions += 1
        return False


async def run(
    url: str, sockets: int, seconds: float, tag: str, window: int, features: int
) -> dict[str, float]:
    """Drive ``sockets`` live sockets for ``seconds``; events/s, latency and the CPU used."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    stats = WsStats()
    conns: list[_Socket] = []
    for i in range(sockets):  # connect and subscribe first: not part of the timing
        path = f"/v1/streams/{tag}-wsraw-{i}/live"
        _, proto = await loop.create_connection(
            lambda p=path: _Socket(f"{host}:{port}", p, features, window, stats), host, port
        )
        await asyncio.wait_for(proto.subscribed, 30)
        conns.append(proto)
    cpu0, t0 = time.process_time(), time.monotonic()
    for c in conns:
        c.start(t0 + seconds)
    await asyncio.wait_for(asyncio.gather(*(c.closed for c in conns)), seconds + 60)
    took = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    lat = sorted(stats.latencies)
    q = lambda p: 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")  # noqa: E731
    return {
        "events": stats.results,
        "seconds": took,
        "errors": stats.errors,
        "cpu_s": cpu,
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "predictions": stats.predictions,
    }
