"""Exactly-once inside the dedupe window, through the HTTP API (issue 16, item 1).

Equal timestamps are legal, so a retry at the stream's last time is not caught by the
time-order rule: only the dedupe window stops it from being applied twice. The window must
hold exactly ``dedupe_window`` ids (32 by default), whether they came one per request, in one
batch, or through a state import.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from service.app import create_app
from tests.service_api.conftest import make_client

T0 = 1_767_225_600.0
X = [20.0, 0.1, 1000.0]
WINDOW = 32


@pytest.fixture
def api(make_settings: Any, store_settings: dict[str, Any]) -> Iterator[Any]:
    """A client of an app on the in-process store or on the harness's Redis."""
    with make_client(create_app(make_settings(**store_settings))) as c:
        yield c


def _post(api: Any, stream: str, event_id: str, x: list[float] = X) -> dict[str, Any]:
    r = api.post(f"/v1/streams/{stream}/events", json={"t": T0, "x": x, "id": event_id})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _count(api: Any, stream: str) -> int:
    r = api.get(f"/v1/streams/{stream}")
    assert r.status_code == 200
    return int(r.json()["count"])


def _send_all(api: Any, stream: str, n: int) -> list[dict[str, Any]]:
    """``n`` events at one timestamp with ids z0..z{n-1}, one request each; inputs differ so
    that every answer is distinguishable."""
    return [_post(api, stream, f"z{i}", [20.0 + i, 0.1, 1000.0]) for i in range(n)]


def test_twenty_equal_timestamp_retries_answer_the_original(api: Any) -> None:
    originals = _send_all(api, "eq20", 20)
    assert [p["count"] for p in originals] == list(range(1, 21))
    state = api.get("/v1/streams/eq20/state").json()
    assert [e["id"] for e in state["recent"]] == [f"z{i}" for i in range(20)]
    for i, original in enumerate(originals):
        retry = _post(api, "eq20", f"z{i}", [99.0, 9.0, 9.0])  # other x: still a retry
        assert retry["duplicate"] is True
        assert retry["outputs"] == original["outputs"]
        assert (retry["count"], retry["dt"], retry["t"]) == (i + 1, original["dt"], T0)
    assert _count(api, "eq20") == 20
    assert api.get("/v1/streams/eq20/state").json()["h"] == state["h"]


@pytest.mark.parametrize("n", [WINDOW, WINDOW + 1])
def test_the_window_holds_exactly_dedupe_window_ids(api: Any, n: int) -> None:
    stream = f"w{n}"
    originals = _send_all(api, stream, n)
    recent = api.get(f"/v1/streams/{stream}/state").json()["recent"]
    assert [e["id"] for e in recent] == [f"z{i}" for i in range(n - WINDOW, n)]
    for i in range(n - WINDOW, n):  # every id of the window: a duplicate, nothing applied
        retry = _post(api, stream, f"z{i}")
        assert (retry["duplicate"], retry["outputs"]) == (True, originals[i]["outputs"])
    assert _count(api, stream) == n
    if n > WINDOW:  # the oldest id has left the window: at an equal time it applies again
        again = _post(api, stream, "z0")
        assert (again["duplicate"], again["count"]) == (False, n + 1)


def test_a_retried_batch_of_twenty_is_all_duplicates(api: Any) -> None:
    events = [{"t": T0, "x": [20.0 + i, 0.1, 1000.0], "id": f"z{i}"} for i in range(20)]
    first = api.post("/v1/streams/batch20/events", json=events).json()
    assert first["applied"] == 20
    again = api.post("/v1/streams/batch20/events", json=events).json()
    assert (again["applied"], again["duplicates"]) == (0, 20)
    for a, b in zip(first["results"], again["results"], strict=True):
        assert b["prediction"]["outputs"] == a["prediction"]["outputs"]
    assert _count(api, "batch20") == 20


def test_state_import_keeps_the_whole_window(api: Any) -> None:
    originals = _send_all(api, "src", 20)
    exported = api.get("/v1/streams/src/state").json()
    r = api.put("/v1/streams/dst/state", json=exported)
    assert r.status_code == 200, r.text
    assert [e["id"] for e in api.get("/v1/streams/dst/state").json()["recent"]] == [
        f"z{i}" for i in range(20)
    ]
    for i, original in enumerate(originals):
        retry = _post(api, "dst", f"z{i}")
        assert (retry["duplicate"], retry["outputs"]) == (True, original["outputs"])
    assert _count(api, "dst") == 20


def test_state_import_keeps_the_last_dedupe_window_entries(api: Any) -> None:
    _send_all(api, "src40", 1)
    exported = api.get("/v1/streams/src40/state").json()
    (entry,) = exported["recent"]
    exported["recent"] = [{**entry, "id": f"r{i}", "count": i + 1} for i in range(40)]
    exported["count"] = 40
    assert api.put("/v1/streams/dst40/state", json=exported).status_code == 200
    recent = api.get("/v1/streams/dst40/state").json()["recent"]
    assert [e["id"] for e in recent] == [f"r{i}" for i in range(40 - WINDOW, 40)]
