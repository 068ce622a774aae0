"""RSS of one ``liquid serve`` process after crowds of live subscribers connect and leave.

Each round opens ``--subscribers`` WebSocket live feeds (in groups of 200), holds them for a
second, closes them all, waits ``--settle-s`` and reads the process's VmRSS. Run it with and
without the release (``LIQUID_MEMORY_RELEASE_THRESHOLD=0``) to see what service/memory_release.py
gives back:

    .venv/bin/python bench/ws_memory.py
    LIQUID_MEMORY_RELEASE_THRESHOLD=0 .venv/bin/python bench/ws_memory.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import websockets

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def crowd(port: int, n: int) -> None:
    async def one(i: int) -> websockets.ClientConnection:
        url = f"ws://127.0.0.1:{port}/v1/streams/s{i}/live"
        return await websockets.connect(url, open_timeout=60)

    conns: list[websockets.ClientConnection] = []
    for start in range(0, n, 200):
        conns += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 200))))
    await asyncio.sleep(1)
    await asyncio.gather(*(c.close() for c in conns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    argv = [sys.executable, "-m", "service", "serve", "--port", str(args.port), "--workers", "1"]
    proc = subprocess.Popen([*argv, "--log-level", "warning"], cwd=REPO, env=dict(os.environ))
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{args.port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        release = os.environ.get("LIQUID_MEMORY_RELEASE_THRESHOLD", "default")
        print(f"memory release threshold: {release}; {args.subscribers} subscribers per round")
        print(f"start: {rss_mb(proc.pid):.1f} MB")
        for r in range(args.rounds):
            asyncio.run(crowd(args.port, args.subscribers))
            time.sleep(args.settle_s)
            print(f"after round {r + 1}: {rss_mb(proc.pid):.1f} MB", flush=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
