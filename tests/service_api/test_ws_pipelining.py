"""A live socket that pipelines: many messages sent before any answer is read.

The promise (service/live/session.py): messages are applied in the order they arrive and
answered in that order, with at most ``ws_max_in_flight`` answered at once; errors (invalid
input, the store down: test_live.py) are answers like any other and the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from liquidcore.numerics import replay_mismatch
from service.app import create_app
from tests.service_api.conftest import make_client, outputs_list
from tests.service_api.test_live import FakeSocket, wait_for

T0 = 1_714_564_800.0


def answers(ws: Any, n: int) -> list[dict[str, Any]]:
    """The next ``n`` answers (results and errors), skipping the live feed's predictions."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        m = ws.receive()
        msg = (
            json.loads(m["text"])
            if m.get("text") is not None
            else msgspec.msgpack.decode(m["bytes"])
        )
        if msg["type"] != "prediction":
            out.append(msg)
    return out


def _message(i: int, *, bad: bool = False) -> dict[str, Any]:
    x = [1.0, 2.0] if bad else [1.0, 2.0, float(i)]
    return {"t": T0 + i, "x": x, "id": f"e{i}", "request_id": i}


@pytest.mark.parametrize("in_flight", [1, 4, 64])
def test_pipelined_messages_are_applied_and_answered_in_order(
    make_settings: Any, in_flight: int
) -> None:
    bad = {5, 17, 18}
    with (
        make_client(create_app(make_settings(ws_max_in_flight=in_flight))) as c,
        c.websocket_connect("/v1/streams/pipe/live") as ws,
    ):
        ws.receive_json()
        for i in range(40):  # nothing read until all are sent
            if i % 2:
                ws.send_bytes(msgspec.msgpack.encode(_message(i, bad=i in bad)))
            else:
                ws.send_text(json.dumps(_message(i, bad=i in bad)))
        got = answers(ws, 40)
        assert c.get("/v1/streams/pipe").json()["count"] == 40 - len(bad)
    assert [a["request_id"] for a in got] == list(range(40))
    assert [a["status"] for a in got] == [422 if i in bad else 200 for i in range(40)]
    counts = [a["prediction"]["count"] for a in got if a["status"] == 200]
    assert counts == list(range(1, 41 - len(bad)))  # applied in the order sent


def test_pipelined_answers_equal_one_at_a_time(client: Any) -> None:
    """The same events answered the same whether pipelined or sent one by one."""
    with client.websocket_connect("/v1/streams/p1/live") as ws:
        ws.receive_json()
        for i in range(10):
            ws.send_text(json.dumps(_message(i)))
        piped = answers(ws, 10)
    with client.websocket_connect("/v1/streams/p2/live") as ws:
        ws.receive_json()
        single = []
        for i in range(10):
            ws.send_text(json.dumps(_message(i)))
            single += answers(ws, 1)
    for a, b in zip(piped, single, strict=True):
        pa, pb = a["prediction"], b["prediction"]
        assert pa.pop("stream_id") == "p1"
        assert pb.pop("stream_id") == "p2"
        # pipelined events share batched steps: floats to the replay contract, the rest equal
        ya, yb = outputs_list(pa), outputs_list(pb)
        assert replay_mismatch([ya], [yb], pa["count"]) is None
        del pa["outputs"], pb["outputs"]
        assert pa == pb


def test_many_sockets_pipelining_each_get_their_own_answers_in_order(client: Any) -> None:
    with (
        client.websocket_connect("/v1/streams/m0/live") as w0,
        client.websocket_connect("/v1/streams/m1/live") as w1,
        client.websocket_connect("/v1/streams/m2/live") as w2,
    ):
        sockets = [w0, w1, w2]
        for ws in sockets:
            ws.receive_json()
        for i in range(20):  # interleaved across sockets
            for ws in sockets:
                ws.send_text(json.dumps(_message(i)))
        for k, ws in enumerate(sockets):
            got = answers(ws, 20)
            assert [a["request_id"] for a in got] == list(range(20))
            assert {a["prediction"]["stream_id"] for a in got} == {f"m{k}"}
            assert [a["prediction"]["count"] for a in got] == list(range(1, 21))
    for k in range(3):
        assert client.get(f"/v1/streams/m{k}").json()["count"] == 20


@pytest.mark.anyio
async def test_a_full_window_stops_reading_the_socket(make_settings: Any) -> None:
    """With ``ws_max_in_flight`` messages unanswered (the client does not read answers), the
    session takes no more frames; once the client reads again every message is answered, in
    order."""
    app = create_app(make_settings(ws_max_in_flight=3))
    async with app.router.lifespan_context(app):
        # accept and subscribed pass; the first answer (or feed message) stalls
        sock = FakeSocket(app, "/v1/streams/full/live", stall_after=3)
        await sock.connect()
        for i in range(10):
            await sock.inbox.put({"type": "websocket.receive", "text": json.dumps(_message(i))})
        await wait_for(lambda: sock.inbox.qsize() == 7)  # three read: the window
        await asyncio.sleep(0.2)
        assert sock.inbox.qsize() == 7  # and no more while none is answered
        sock.unstall.set()
        await wait_for(lambda: sock.inbox.qsize() == 0)

        def replies() -> list[dict[str, Any]]:
            texts = [json.loads(m["text"]) for m in sock.sent if m.get("text")]
            return [t for t in texts if t["type"] == "result"]

        await wait_for(lambda: len(replies()) == 10)
        assert [r["request_id"] for r in replies()] == list(range(10))
        assert [r["prediction"]["count"] for r in replies()] == list(range(1, 11))
        await sock.disconnect()
