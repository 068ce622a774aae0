"""No poisoned states through the API (issue 16, item 2), on the demo model whose state goes
non-finite when one feature is 3e38 at Δt = 0. Two guards: features beyond ``max_abs_input``
are a 422 ``value_out_of_range`` before anything runs; with that limit lifted, the engine
refuses the event whose step went non-finite (422 ``non_finite_state``). Either way the stream
keeps its state, ``GET …/state`` stays 200 and every later output is finite."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from service.app import create_app
from service.settings import DEMO_MODEL_DIR
from tests.service_api.conftest import make_client

T0 = 1_767_225_600.0
X = [0.1, -0.2, 9.6, 0.01, 0.0, -0.02]  # acc_x..gyr_z
POISON = [0.1, -0.2, 9.6, 0.01, 3e38, -0.02]  # gyr_y = 3e38 overflows the demo model


def _demo(make_settings: Any, store_settings: dict[str, Any], **kw: Any) -> Any:
    settings = make_settings(models=[DEMO_MODEL_DIR], **store_settings, **kw)
    return make_client(create_app(settings))


@pytest.fixture
def limited(make_settings: Any, store_settings: dict[str, Any]) -> Iterator[Any]:
    """The demo model with the default ``max_abs_input``."""
    with _demo(make_settings, store_settings) as c:
        yield c


@pytest.fixture
def unlimited(make_settings: Any, store_settings: dict[str, Any]) -> Iterator[Any]:
    """The demo model with only the float32 range as the input limit."""
    with _demo(make_settings, store_settings, max_abs_input=math.inf) as c:
        yield c


def _outputs(prediction: dict[str, Any]) -> list[float]:
    return [float(v) for v in prediction["outputs"].values()]


def _assert_healthy(client: Any, stream: str, state: dict[str, Any]) -> None:
    """The stream kept ``state``, exports it, and answers finite predictions afterwards."""
    r = client.get(f"/v1/streams/{stream}/state")
    assert r.status_code == 200
    assert r.json() == state
    ahead = client.get(f"/v1/streams/{stream}/prediction?at={T0 + 30}")
    assert ahead.status_code == 200
    assert all(math.isfinite(v) for v in _outputs(ahead.json()))
    later = client.post(f"/v1/streams/{stream}/events", json={"t": T0 + 1, "x": X})
    assert later.status_code == 200
    assert all(math.isfinite(v) for v in _outputs(later.json()))
    assert later.json()["count"] == state["count"] + 1
    assert client.get(f"/v1/streams/{stream}/state").status_code == 200


def test_a_value_beyond_max_abs_input_is_422_value_out_of_range(limited: Any) -> None:
    assert limited.post("/v1/streams/p/events", json={"t": T0, "x": X}).status_code == 200
    state = limited.get("/v1/streams/p/state").json()
    r = limited.post("/v1/streams/p/events", json={"t": T0, "x": POISON})
    assert r.status_code == 422
    error = r.json()["error"]
    assert (error["code"], error["details"]["field"]) == ("value_out_of_range", "x[4]")
    named = dict(zip(["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"], POISON, strict=True))
    r = limited.post("/v1/streams/p/events", json={"t": T0, "x": named})
    assert (r.status_code, r.json()["error"]["details"]["field"]) == (422, "x.gyr_y")
    _assert_healthy(limited, "p", state)


def test_a_step_that_goes_non_finite_is_422_and_the_state_kept(unlimited: Any) -> None:
    assert unlimited.post("/v1/streams/p/events", json={"t": T0, "x": X}).status_code == 200
    state = unlimited.get("/v1/streams/p/state").json()
    r = unlimited.post("/v1/streams/p/events", json={"t": T0, "x": POISON, "id": "bad"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "non_finite_state"
    assert r.json()["error"]["details"]["id"] == "bad"
    _assert_healthy(unlimited, "p", state)


def test_in_a_batch_only_the_poisoning_event_is_refused(unlimited: Any) -> None:
    events = [
        {"t": T0, "x": X, "id": "a"},
        {"t": T0, "x": POISON, "id": "bad"},
        {"t": T0 + 0.5, "x": X, "id": "b"},
    ]
    body = unlimited.post("/v1/streams/q/events", json=events).json()
    assert [r["status"] for r in body["results"]] == [200, 422, 200]
    assert (body["applied"], body["failed"]) == (2, 1)
    assert body["results"][1]["error"]["code"] == "non_finite_state"
    assert body["results"][2]["prediction"]["dt"] == 0.5  # after a, as if bad was never sent
    # the same two good events alone give the same answers
    alone = unlimited.post("/v1/streams/r/events", json=[events[0], events[2]]).json()
    for got, want in zip([body["results"][0], body["results"][2]], alone["results"], strict=True):
        assert _outputs(got["prediction"]) == pytest.approx(_outputs(want["prediction"]), abs=1e-6)
    state = unlimited.get("/v1/streams/q/state").json()
    assert [e["id"] for e in state["recent"]] == ["a", "b"]
    assert all(math.isfinite(v) for v in state["h"])


def test_a_multi_stream_request_refuses_per_item(unlimited: Any) -> None:
    events = [
        {"stream_id": "m1", "t": T0, "x": X},
        {"stream_id": "m2", "t": T0, "x": X},
        {"stream_id": "m1", "t": T0, "x": POISON},
        {"stream_id": "m2", "t": T0 + 0.5, "x": X},
    ]
    body = unlimited.post("/v1/events", json={"events": events}).json()
    assert [r["status"] for r in body["results"]] == [200, 200, 422, 200]
    assert body["results"][2]["error"]["code"] == "non_finite_state"
    assert unlimited.get("/v1/streams/m1").json()["count"] == 1
    assert unlimited.get("/v1/streams/m2").json()["count"] == 2
