"""API keys and tenant isolation across every route, the WebSocket included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from service.app import create_app
from tests.service_api.conftest import make_client

T0 = 1_714_564_800.0
KEY_A = "key-a-0123456789"
KEY_B = "key-b-0123456789"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture
def secured(make_settings: Any) -> Iterator[Any]:
    settings = make_settings(api_keys=f"{KEY_A}:plant-a,{KEY_B}:plant-b")
    with make_client(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-123"},
        {"Authorization": f"Basic {KEY_A}"},
        {"Authorization": "Bearer"},
        {"Authorization": KEY_A},
    ],
)
def test_requests_without_a_valid_key_are_401(secured: Any, headers: dict[str, str]) -> None:
    for method, path in [
        ("POST", "/v1/streams/s/events"),
        ("POST", "/v1/events"),
        ("GET", "/v1/streams/s"),
        ("GET", "/v1/streams/s/prediction"),
        ("GET", "/v1/streams/s/state"),
        ("PUT", "/v1/streams/s/state"),
        ("DELETE", "/v1/streams/s"),
        ("GET", "/v1/models"),
    ]:
        r = secured.request(
            method,
            path,
            headers={**headers, "content-type": "application/json"},
            content=json.dumps({"t": T0, "x": [1, 2, 3]}),
        )
        assert r.status_code == 401, (method, path)
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert secured.get("/v1/streams/s", headers=A).status_code == 404  # nothing was written


def test_health_and_metrics_need_no_key(secured: Any) -> None:
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/readyz").status_code == 200
    assert secured.get("/metrics").status_code == 200


def test_tenants_see_only_their_own_streams(secured: Any) -> None:
    a1 = secured.post("/v1/streams/s/events", json={"t": T0, "x": [1, 2, 3], "id": "e1"}, headers=A)
    assert a1.status_code == 200
    secured.post("/v1/streams/s/events", json={"t": T0 + 1, "x": [2, 2, 3]}, headers=A)
    state_a = secured.get("/v1/streams/s/state", headers=A).json()
    # B sees no stream "s" anywhere
    assert secured.get("/v1/streams/s", headers=B).status_code == 404
    assert secured.get("/v1/streams/s/state", headers=B).status_code == 404
    assert (
        secured.get("/v1/streams/s/prediction", params={"at": T0 + 5}, headers=B).status_code == 404
    )
    assert secured.delete("/v1/streams/s", headers=B).status_code == 404
    # B's writes make B's own stream and leave A's untouched
    b1 = secured.post(
        "/v1/streams/s/events", json={"t": T0 - 50, "x": [1, 2, 3], "id": "e1"}, headers=B
    )
    assert b1.json()["reset"] == "first_event"
    assert b1.json()["duplicate"] is False
    multi = {"events": [{"stream_id": "s", "t": T0 - 40, "x": [1, 2, 3]}]}
    assert secured.post("/v1/events", json=multi, headers=B).json()["results"][0]["status"] == 200
    assert secured.put("/v1/streams/s/state", json=state_a, headers=B).status_code == 200
    assert secured.get("/v1/streams/s", headers=B).json()["count"] == 2
    assert secured.delete("/v1/streams/s", headers=B).status_code == 204
    assert secured.get("/v1/streams/s/state", headers=A).json() == state_a
    # A's retry is still a duplicate of A's event (B's "e1" did not touch A's window)
    again = secured.post(
        "/v1/streams/s/events", json={"t": T0, "x": [1, 2, 3], "id": "e1"}, headers=A
    )
    assert again.json()["duplicate"] is True
    assert again.json()["outputs"] == a1.json()["outputs"]


def test_live_feed_is_per_tenant(secured: Any) -> None:
    with (
        secured.websocket_connect("/v1/streams/s/live", headers=B) as ws_b,
        secured.websocket_connect(f"/v1/streams/s/live?token={KEY_A}") as ws_a,
    ):
        ws_a.receive_json()
        ws_b.receive_json()
        secured.post("/v1/streams/s/events", json={"t": T0, "x": [1, 2, 3]}, headers=A)
        secured.post("/v1/streams/s/events", json={"t": T0 + 7, "x": [1, 2, 3]}, headers=B)
        assert ws_a.receive_json()["prediction"]["t"] == T0
        assert ws_b.receive_json()["prediction"]["t"] == T0 + 7  # not A's prediction
        ws_a.send_text(json.dumps({"t": T0 + 1, "x": [1, 2, 3], "request_id": 1}))
        msgs = [ws_a.receive_json(), ws_a.receive_json()]
        assert {m["type"] for m in msgs} == {"result", "prediction"}
        # B's next message is its own, not A's event sent on A's socket
        secured.post("/v1/streams/s/events", json={"t": T0 + 8, "x": [1, 2, 3]}, headers=B)
        assert ws_b.receive_json()["prediction"]["t"] == T0 + 8
    assert secured.get("/v1/streams/s", headers=A).json()["count"] == 2
    assert secured.get("/v1/streams/s", headers=B).json()["count"] == 2


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/streams/s/live", {}),
        ("/v1/streams/s/live?token=nope-nope-nope", {}),
        ("/v1/streams/s/live", {"Authorization": "Bearer nope-nope-nope"}),
    ],
)
def test_live_feed_refuses_bad_credentials_with_1008(
    secured: Any, path: str, headers: dict[str, str]
) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as info,
        secured.websocket_connect(path, headers=headers) as ws,
    ):
        ws.receive_json()
    assert info.value.code == 1008
    assert info.value.reason.startswith("unauthorized")


def test_without_keys_everyone_is_the_default_tenant(client: Any) -> None:
    client.post("/v1/streams/s/events", json={"t": T0, "x": [1, 2, 3]})
    assert (
        client.get("/v1/streams/s", headers={"Authorization": "Bearer anything"}).status_code == 200
    )
