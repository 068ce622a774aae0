"""Slow and stalled clients cost bounded time: headers trickled (slowloris) and bodies shorter
than their Content-Length get 408 and a closed socket, a WebSocket client that stops reading
is cut off, a silent WebSocket is closed. Real sockets against real ``liquid serve`` processes
where the guard is uvicorn's protocol; the ASGI app directly where it is the app's."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.websockets import WebSocketDisconnect

from service.app import create_app
from tests.service_api.conftest import make_client, metric_value
from tests.service_api.test_bad_input import post_scope
from tests.service_api.test_live import FakeSocket, wait_for

T0 = 1_714_564_800.0
# Generous bounds: how long a test waits for the server to act, far above the timeouts set.
WAIT_S = 20.0


def read_until_closed(sock: socket.socket, wait_s: float = WAIT_S) -> bytes:
    """Everything the server sends until it closes the socket (or ``wait_s`` passes)."""
    sock.settimeout(wait_s)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.integration
def test_slowloris_sockets_are_closed_after_the_header_timeout(services: Any) -> None:
    service = services(["--header-timeout-s", "1"])
    socks = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(20)]
    start = time.monotonic()
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
    open_socks = set(socks)
    answers: dict[socket.socket, bytes] = {}
    closed_after: list[float] = []
    while open_socks and time.monotonic() - start < WAIT_S:
        for s in list(open_socks):
            try:
                s.sendall(b"X")  # one more header byte: the trickle goes on
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                chunk = b""
            answers[s] = answers.get(s, b"") + chunk
            if not chunk:
                open_socks.discard(s)
                closed_after.append(time.monotonic() - start)
        time.sleep(0.1)
    for s in socks:
        s.close()
    assert not open_socks, f"{len(open_socks)} trickling sockets still open after {WAIT_S} s"
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers.values() if a)
    assert any(b'"request_timeout"' in a for a in answers.values())
    print(f"20 slowloris sockets closed after {min(closed_after):.2f}-{max(closed_after):.2f} s")
    assert httpx.get(f"{service.url}/healthz").status_code == 200  # the server still serves


@pytest.mark.integration
def test_a_body_shorter_than_its_content_length_gets_408(services: Any) -> None:
    service = services(["--body-timeout-s", "1"])
    with socket.create_connection(("127.0.0.1", service.port)) as s:
        s.sendall(
            b"POST /v1/streams/short/events HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"t": 17145'
        )
        answer = read_until_closed(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert httpx.get(f"{service.url}/v1/streams/short").status_code == 404  # nothing applied


@pytest.mark.anyio
async def test_the_body_timeout_is_the_apps_own(make_settings: Any) -> None:
    """A body that never comes, at the ASGI level (any server): 408, nothing applied."""
    app = create_app(make_settings(body_timeout_s=0.2))
    async with app.router.lifespan_context(app):
        first = True
        never = asyncio.Event()

        async def receive() -> Any:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b'{"t": 1', "more_body": True}
            await never.wait()
            raise AssertionError("unreachable")

        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        await asyncio.wait_for(app(post_scope("/v1/streams/late/events"), receive, send), WAIT_S)
        assert sent[0]["status"] == 408
        assert (b"connection", b"close") in sent[0]["headers"]
        assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"
        assert await app.state.ctx.engine.stream_info("default", "pump", "late") is None


def raw_websocket(port: int, path: str) -> socket.socket:
    """A WebSocket handshake on a socket with a small receive buffer, whose reader never reads
    again."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return s


@pytest.mark.integration
def test_a_websocket_client_that_stops_reading_is_cut_off(
    services: Any, artifacts: dict[str, Path]
) -> None:
    args = ["--model", str(artifacts["pump"]), "--ws-send-timeout-s", "1"]
    service = services([*args, "--max-events-per-request", "2000"])
    sock = raw_websocket(service.port, "/v1/streams/stalled/live")
    try:
        with httpx.Client(base_url=service.url, timeout=30) as c:
            gone = False
            for k in range(60):  # predictions of ~300 bytes until the socket's buffers are full
                batch = [{"t": T0 + k * 2000 + i, "x": [1, 2, 3]} for i in range(2000)]
                assert c.post("/v1/streams/stalled/events", json=batch).status_code == 200
                text = c.get("/metrics").text
                if metric_value(text, "liquid_websocket_connections") == 0:
                    gone = True
                    break
            assert gone, "the stalled subscriber is still connected"
            deadline = time.monotonic() + WAIT_S
            while metric_value(c.get("/metrics").text, "liquid_live_send_timeouts_total") < 1:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            # the server still serves, and a reading subscriber is unaffected
            assert c.get("/readyz").status_code == 200
    finally:
        sock.close()


@pytest.mark.anyio
async def test_a_stalled_send_ends_the_session(make_settings: Any) -> None:
    """The app's own send timeout (any server): the session ends and is counted."""
    app = create_app(make_settings(ws_send_timeout_s=0.2))
    async with app.router.lifespan_context(app):
        # accepted, subscribed, then the first prediction is never taken
        sock = FakeSocket(app, "/v1/streams/st/live", stall_after=3)
        await sock.connect()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.post("/v1/streams/st/events", json={"t": T0, "x": [1, 2, 3]})
            assert r.status_code == 200
            await wait_for(lambda: not app.state.ctx.sessions, WAIT_S)
            text = (await c.get("/metrics")).text
            assert metric_value(text, "liquid_live_send_timeouts_total") == 1
            assert metric_value(text, "liquid_websocket_connections") == 0
        await sock.disconnect()


def test_a_silent_websocket_is_closed_after_the_idle_timeout(make_settings: Any) -> None:
    with (  # noqa: PT012
        make_client(create_app(make_settings(ws_idle_timeout_s=0.3))) as c,
        pytest.raises(WebSocketDisconnect) as info,
        c.websocket_connect("/v1/streams/quiet/live") as ws,
    ):
        assert ws.receive_json()["type"] == "subscribed"
        ws.receive_json()  # nothing comes: the server closes
    assert info.value.code == 1000
    assert info.value.reason == "idle timeout"
