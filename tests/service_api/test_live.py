"""The live WebSocket: the feed, events sent on the socket, close codes, a stalled consumer and
shutdown. (A subscriber fed by another process is in test_processes.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from starlette.websockets import WebSocketDisconnect

from service.app import create_app
from tests.redis_process import private_redis
from tests.service_api.conftest import make_client, metric_value

T0 = 1_714_564_800.0


def receive_n(ws: Any, n: int) -> list[dict[str, Any]]:
    return [ws.receive_json() for _ in range(n)]


def test_feed_carries_every_prediction_of_the_stream(client: Any) -> None:
    with client.websocket_connect("/v1/streams/w/live") as ws:
        assert ws.receive_json() == {"type": "subscribed", "stream_id": "w", "model": "pump"}
        posted = [
            client.post(
                "/v1/streams/w/events", json={"t": T0 + i, "x": [1, 2, i], "id": f"e{i}"}
            ).json()
            for i in range(3)
        ]
        client.post("/v1/streams/other/events", json={"t": T0, "x": [1, 2, 3]})  # not this stream
        multi = {"events": [{"stream_id": "w", "t": T0 + 5, "x": [1, 2, 3]}]}
        posted.append(client.post("/v1/events", json=multi).json()["results"][0]["prediction"])
        got = receive_n(ws, 4)
        assert [m["type"] for m in got] == ["prediction"] * 4
        for message, p in zip(got, posted, strict=True):
            live = message["prediction"]
            assert live.pop("x") is not None
            assert live == p
        # a duplicate is an answer, not a new prediction: nothing more is sent for it
        client.post("/v1/streams/w/events", json={"t": T0, "x": [1, 2, 0], "id": "e0"})
        client.post("/v1/streams/w/events", json={"t": T0 + 6, "x": [1, 2, 3]})
        assert ws.receive_json()["prediction"]["t"] == T0 + 6
        text = client.get("/metrics").text
        assert metric_value(text, "liquid_websocket_connections") == 1
    assert metric_value(client.get("/metrics").text, "liquid_websocket_connections") == 0


def _collect(ws: Any, n: int) -> tuple[dict[Any, dict[str, Any]], list[dict[str, Any]]]:
    """``n`` messages: replies by request_id, and live predictions (order between them is free)."""
    replies: dict[Any, dict[str, Any]] = {}
    feed = []
    for _ in range(n):
        m = ws.receive_json()
        if m["type"] == "prediction":
            feed.append(m["prediction"])
        else:
            replies[m["request_id"]] = m
    return replies, feed


def test_events_sent_on_the_socket_are_answered(client: Any) -> None:
    with client.websocket_connect("/v1/streams/ws1/live") as ws:
        ws.receive_json()
        ws.send_text(json.dumps({"t": T0, "x": [1, 2, 3], "id": "a", "request_id": "r1"}))
        replies, feed = _collect(ws, 2)
        r1 = replies["r1"]
        assert r1["type"] == "result"
        assert r1["status"] == 200
        assert r1["prediction"]["id"] == "a"
        assert r1["prediction"]["count"] == 1
        assert feed[0]["id"] == "a"
        # a list, with an integer correlation id
        ws.send_text(
            json.dumps(
                {
                    "events": [{"t": T0 + 1, "x": [1, 2, 3]}, {"t": T0 + 2, "x": [3, 2, 1]}],
                    "request_id": 2,
                }
            )
        )
        replies, feed = _collect(ws, 3)
        assert replies[2]["type"] == "result"
        assert replies[2]["applied"] == 2
        assert [p["count"] for p in feed] == [2, 3]
        # errors come back on the socket, which stays open
        ws.send_text("{not json")
        err = ws.receive_json()
        assert (err["type"], err["request_id"], err["status"]) == ("error", None, 400)
        assert err["error"]["code"] == "invalid_json"
        assert err["error"]["message"]
        ws.send_text(json.dumps({"t": T0 + 3, "x": [1, 2], "request_id": "r3"}))
        err = ws.receive_json()
        assert err["type"] == "error"
        assert err["request_id"] == "r3"
        assert err["status"] == 422
        assert err["error"]["code"] == "wrong_feature_count"
        ws.send_text(json.dumps({"t": T0, "x": [1, 2, 3], "request_id": "r4"}))
        err = ws.receive_json()
        assert err["status"] == 409
        assert err["error"]["code"] == "out_of_order"
        ws.send_text(json.dumps({"t": T0 + 3, "x": [1, 2, 3], "request_id": {"no": 1}}))
        assert ws.receive_json()["error"]["code"] == "invalid_event"
        ws.send_text(json.dumps({"t": T0 + 4, "x": [1, 2, 3], "request_id": "r5"}))
        replies, _ = _collect(ws, 2)
        assert replies["r5"]["prediction"]["count"] == 4
    assert client.get("/v1/streams/ws1").json()["count"] == 4


def test_a_binary_frame_is_messagepack_answered_in_messagepack(client: Any) -> None:
    with client.websocket_connect("/v1/streams/bin/live") as ws:
        ws.receive_json()
        ws.send_bytes(msgspec.msgpack.encode({"t": T0, "x": [1, 2, 3], "request_id": "b"}))
        answers = [ws.receive() for _ in range(2)]  # the answer (binary) and the feed (text)
        (binary,) = [m["bytes"] for m in answers if m.get("bytes") is not None]
        (text,) = [m["text"] for m in answers if m.get("text") is not None]
        reply = msgspec.msgpack.decode(binary)
        assert reply["type"] == "result"
        assert reply["request_id"] == "b"
        feed = json.loads(text)["prediction"]
        assert feed.pop("x") == [1, 2, 3]
        assert reply["prediction"] == feed
    assert client.get("/v1/streams/bin").json()["count"] == 1


def test_an_undecodable_binary_frame_gets_an_error_and_the_socket_stays_open(client: Any) -> None:
    with client.websocket_connect("/v1/streams/bin2/live") as ws:
        ws.receive_json()
        ws.send_bytes(json.dumps({"t": T0, "x": [1, 2, 3], "request_id": "b"}).encode())
        reply = msgspec.msgpack.decode(ws.receive_bytes())
        assert reply["type"] == "error"
        assert reply["status"] == 400
        assert reply["error"]["code"] == "invalid_json"
        assert "MessagePack" in reply["error"]["message"]
        assert client.get("/v1/streams/bin2").status_code == 404  # nothing applied
        ws.send_bytes(msgspec.msgpack.encode({"t": T0, "x": [1, 2], "request_id": 7}))
        reply = msgspec.msgpack.decode(ws.receive_bytes())
        assert (reply["request_id"], reply["error"]["code"]) == (7, "wrong_feature_count")
        ws.send_text(json.dumps({"t": T0, "x": [1, 2, 3], "request_id": "t"}))  # still open
        replies, _ = _collect(ws, 2)
        assert replies["t"]["status"] == 200
    assert client.get("/v1/streams/bin2").json()["count"] == 1


def test_oversized_socket_message_is_refused(make_settings: Any) -> None:
    with (
        make_client(create_app(make_settings(max_body_bytes=1024))) as c,
        c.websocket_connect("/v1/streams/big/live") as ws,
    ):
        ws.receive_json()
        ws.send_text(json.dumps([{"t": T0 + i, "x": [1, 2, 3]} for i in range(100)]))
        err = ws.receive_json()
        assert err["status"] == 413
        assert err["error"]["code"] == "payload_too_large"
        assert c.get("/v1/streams/big").status_code == 404


def test_model_filter(make_settings: Any, artifacts: dict[str, Path]) -> None:
    settings = make_settings(models=[artifacts["pump"], artifacts["plain"]])
    with (
        make_client(create_app(settings)) as c,
        c.websocket_connect("/v1/streams/f/live?model=plain") as ws,
    ):
        assert ws.receive_json()["model"] == "plain"
        c.post("/v1/streams/f/events", json={"t": T0, "x": [1, 2, 3]})  # pump: filtered out
        c.post("/v1/streams/f/events?model=plain", json={"t": T0, "x": [1, 2]})
        assert ws.receive_json()["prediction"]["model"] == "plain"
        ws.send_text(json.dumps({"t": T0 + 1, "x": [1, 2]}))  # to the selected model
        replies, _feed = _collect(ws, 2)
        assert replies[None]["prediction"]["model"] == "plain"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/v1/streams/bad%20id/live", "invalid_stream_id"),
        ("/v1/streams/-x/live", "invalid_stream_id"),
        ("/v1/streams/ok/live?model=nope", "unknown_model"),
    ],
)
def test_close_codes_for_invalid_requests(client: Any, path: str, reason: str) -> None:
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect(path) as ws:
        ws.receive_json()
    assert info.value.code == 1008
    assert info.value.reason.startswith(reason)


# -- driving the ASGI app directly: a transport that stalls, and shutdown ---------------------
class FakeSocket:
    """A WebSocket client at the ASGI level whose transport can stall: ``send`` blocks once
    ``stall_after`` messages were sent, as a socket whose peer stopped reading does."""

    def __init__(self, app: Any, path: str, stall_after: int | None = None) -> None:
        self.app = app
        self.path = path
        self.sent: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stall_after = stall_after
        self.unstall = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if self.stall_after is not None and len(self.sent) >= self.stall_after:
            await self.unstall.wait()

    async def connect(self) -> None:
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"test")],
            "client": ("127.0.0.1", 5000),
            "server": ("test", 80),
            "subprotocols": [],
            "state": {},
        }
        await self.inbox.put({"type": "websocket.connect"})
        self.task = asyncio.create_task(self.app(scope, self._receive, self._send))
        await wait_for(
            lambda: any(m.get("text", "").startswith('{"type": "subscribed"') for m in self.sent)
        )

    async def disconnect(self) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        self.unstall.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)


async def wait_for(check: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ok = check()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_a_stalled_consumer_costs_bounded_memory(make_settings: Any) -> None:
    buffer = 8
    app = create_app(make_settings(live_buffer=buffer))
    async with app.router.lifespan_context(app):
        sock = FakeSocket(app, "/v1/streams/slow/live", stall_after=2)  # accept, subscribed
        await sock.connect()
        session = next(iter(app.state.ctx.sessions))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            total = 0
            for k in range(10):
                batch = [{"t": T0 + k * 100 + i, "x": [1, 2, 3]} for i in range(100)]
                r = await c.post("/v1/streams/slow/events", json=batch)
                assert r.status_code == 200
                total += 100
                assert len(session._sub) <= buffer  # never more than the buffer holds

            async def settled() -> bool:
                text = (await c.get("/metrics")).text
                dropped = metric_value(text, "liquid_live_messages_dropped_total")
                # the one message the stalled send holds, the buffer, the drops: all of them
                return dropped + len(session._sub) + 1 >= total

            await wait_for(settled)
            text = (await c.get("/metrics")).text
            assert metric_value(text, "liquid_live_messages_dropped_total") >= total - buffer - 1
            assert metric_value(text, "liquid_websocket_connections") == 1
        assert len(sock.sent) == 2  # nothing piled up on the send side
        assert len(session._sub) == buffer
        await sock.disconnect()
        assert app.state.ctx.sessions == set()
        assert (
            metric_value(
                app.state.ctx.metrics.render_latest()[0].decode(), "liquid_websocket_connections"
            )
            == 0
        )


@pytest.mark.anyio
async def test_shutdown_closes_sockets_with_going_away(make_settings: Any) -> None:
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        sock = FakeSocket(app, "/v1/streams/bye/live")
        await sock.connect()
    assert sock.task is not None
    await asyncio.wait_for(sock.task, 5)
    closes = [m for m in sock.sent if m["type"] == "websocket.close"]
    assert closes
    assert closes[0]["code"] == 1001


@pytest.mark.integration
def test_an_event_sent_while_redis_is_down_gets_an_error_and_the_socket_stays_open(
    make_settings: Any, tmp_path: Path
) -> None:
    with private_redis(tmp_path) as server:
        app = create_app(make_settings(redis_url=server.url, retry_after_s=3))
        with make_client(app) as c, c.websocket_connect("/v1/streams/down/live") as ws:
            assert ws.receive_json()["type"] == "subscribed"
            server.stop()
            ws.send_text(json.dumps({"t": T0, "x": [1, 2, 3], "request_id": "while-down"}))
            reply = ws.receive_json()
            assert reply["type"] == "error"
            assert reply["request_id"] == "while-down"
            assert reply["status"] == 503
            assert reply["error"]["code"] == "unavailable"
            for i in range(5):  # pipelined: an error each, in the order sent
                ws.send_text(json.dumps({"t": T0 + i, "x": [1, 2, 3], "request_id": i}))
            piped = [ws.receive_json() for _ in range(5)]
            assert [(m["request_id"], m["status"]) for m in piped] == [(i, 503) for i in range(5)]
            r = c.post("/v1/streams/down/events", json={"t": T0, "x": [1, 2, 3]})
            assert r.status_code == 503
            assert r.headers["retry-after"] == "3"
            assert r.json()["error"]["code"] == "unavailable"
            server.start()  # same port, empty
            ws.send_text(json.dumps({"t": T0, "x": [1, 2, 3], "request_id": "back"}))
            reply = ws.receive_json()
            while reply["type"] == "prediction":  # the live feed may come first
                reply = ws.receive_json()
            assert reply["request_id"] == "back"
            assert reply["status"] == 200
            assert reply["prediction"]["count"] == 1


@pytest.mark.integration
@pytest.mark.anyio
async def test_subscribers_that_leave_leave_nothing_behind(
    make_settings: Any, redis_url: str
) -> None:
    """Hundreds of sockets on distinct streams, all open at once, then all closed: no session,
    subscription, channel, pub/sub subscription or task is left."""
    import gc

    import redis.asyncio as aioredis

    from service.api.routers.live import LiveSession
    from service.live.bus import Subscription

    app = create_app(make_settings(redis_url=redis_url))
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        bus = ctx.live
        baseline = len(asyncio.all_tasks())
        for _round in range(2):
            socks = [FakeSocket(app, f"/v1/streams/churn-{i}/live") for i in range(300)]
            await asyncio.gather(*(s.connect() for s in socks))
            assert len(ctx.sessions) == 300
            await asyncio.gather(*(s.disconnect() for s in socks))
            del socks
        await wait_for(lambda: not bus._subscribed and not bus._outstanding)
        assert ctx.sessions == set()
        assert bus._local.subscribers == {}
        assert bus._confirmed == {}
        client = aioredis.Redis.from_url(redis_url)
        try:
            assert await client.pubsub_channels("liquid:live:*") == []
        finally:
            await client.aclose()
        # the bus's two tasks (control, reader) started with the first subscriber; no more
        assert len(asyncio.all_tasks()) <= baseline + 2
        gc.collect()
        left = [o for o in gc.get_objects() if type(o) in (LiveSession, Subscription)]
        assert left == []
        text = ctx.metrics.render_latest()[0].decode()
        assert metric_value(text, "liquid_websocket_connections") == 0
