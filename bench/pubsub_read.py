"""Probe: CPU per pub/sub message read by the live bus's reader, three ways.

Starts a private redis-server on a free port, publishes ``N`` messages of 300 bytes from a Lua
script (so publishing costs the client one command per 500), and reads them with redis-py's
``PubSub.get_message(timeout)`` (what ``service.live.bus.RedisLiveBus`` does),
``PubSub.parse_response(block=True)``, and a raw connection parsed in bulk by
``hiredis.Reader``. Prints CPU µs per message (this process: reader and publisher) and wall µs.

    .venv/bin/python bench/pubsub_read.py [N]
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import hiredis
import redis.asyncio as aioredis

SCRIPT = "for i=1,tonumber(ARGV[1]) do redis.call('PUBLISH','c',ARGV[2]) end"
MESSAGE = b"x" * 300
CHUNK = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _raw_reader(port: int, n: int) -> Callable[[], Awaitable[None]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n")
    await writer.drain()
    parser = hiredis.Reader()

    async def read() -> None:
        assert not writer.is_closing()  # held here: a collected StreamWriter closes the socket
        got = 0
        while got < n:
            parser.feed(await reader.read(65536))
            while (reply := parser.gets()) is not False:
                got += isinstance(reply, list) and reply[0] == b"message"

    return read


async def _redis_py_reader(port: int, n: int, mode: str) -> Callable[[], Awaitable[None]]:
    pubsub = aioredis.Redis(port=port).pubsub()
    await pubsub.subscribe("c")
    await pubsub.get_message(timeout=1)  # the confirmation

    async def read() -> None:
        got = 0
        while got < n:
            if mode == "get_message":
                msg = await pubsub.get_message(timeout=1.0)
            else:
                msg = await pubsub.handle_message(await pubsub.parse_response(block=True))
            got += bool(msg) and msg["type"] == "message"

    return read


async def measure(port: int, n: int, mode: str) -> None:
    publisher = aioredis.Redis(port=port)
    if mode == "hiredis bulk":
        read = await _raw_reader(port, n)
    else:
        read = await _redis_py_reader(port, n, mode)
    await asyncio.sleep(0.1)
    cpu, wall = time.process_time(), time.perf_counter()
    task = asyncio.create_task(read())
    for _ in range(0, n, CHUNK):
        await publisher.eval(SCRIPT, 0, CHUNK, MESSAGE)  # type: ignore[misc]
        await asyncio.sleep(0)
    await task
    cpu_us = (time.process_time() - cpu) / n * 1e6
    wall_us = (time.perf_counter() - wall) / n * 1e6
    print(f"{mode:>16}: {cpu_us:5.1f} µs CPU per message, {wall_us:5.1f} µs wall")
    await publisher.aclose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        for mode in ("get_message", "parse_response", "hiredis bulk"):
            asyncio.run(measure(port, n, mode))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
