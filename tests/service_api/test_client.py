"""The Python client (``service.client``) against a real service process: typed results equal
to stepping the model offline, per-event batch outcomes, errors with the API's codes, retries
that reuse event ids (through a proxy that drops answers), and the live socket."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.client import (
    AsyncClient,
    Client,
    Event,
    Prediction,
    RetryPolicy,
    ServiceError,
)
from tests.conftest import free_port
from tests.service_api.conftest import OUTPUTS, assert_close, load, offline_outputs, outputs_list
from tests.service_process import ServiceProcess, start_service

pytestmark = pytest.mark.integration

KEY = "client-test-key-1"
T0 = 1_714_564_800.0
XS = [[20.0, 0.1, 1000.0], [21.0, 0.3, 1100.0], [19.5, -0.2, 900.0], [22.0, 0.0, 1200.0]]


@pytest.fixture(scope="module")
def service(
    artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    svc = start_service(
        ["--model", str(artifacts["pump"])], tmp_path_factory.mktemp("client"), api_key=KEY
    )
    try:
        yield svc
    finally:
        svc.stop()


class DroppingProxy:
    """A TCP proxy to ``upstream`` that, for its first ``drops`` connections, forwards the
    request and waits for the service's answer, then closes the client's connection without
    passing the answer on: the event is applied, the client sees a broken connection."""

    def __init__(self, upstream_port: int, drops: int) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.drops = drops
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._writers: list[asyncio.StreamWriter] = []

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        loop.run_forever()
        server.close()
        for w in self._writers:
            w.close()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_w]
        drop = self.dropped < self.drops
        self.dropped += drop

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()

        to_up = asyncio.create_task(pipe(reader, up_w))
        if drop:
            await up_r.read(65536)  # the service answered: the event is applied
            await asyncio.sleep(0.05)
        else:
            await pipe(up_r, writer)
        to_up.cancel()
        for w in (writer, up_w):
            w.close()


def test_sync_client_predictions_equal_offline_steps(
    service: ServiceProcess, artifacts: dict[str, Path]
) -> None:
    want = offline_outputs(load(artifacts["pump"]), [(T0 + i, x) for i, x in enumerate(XS)])
    with Client(service.url, api_key=KEY) as c:
        p0 = c.send("sync-1", T0, XS[0], id="e0")
        assert isinstance(p0, Prediction)
        assert (p0.stream_id, p0.id, p0.count, p0.duplicate) == ("sync-1", "e0", 1, False)
        assert p0.time == "2024-05-01T12:00:00.000000Z"
        named = dict(zip(("temp", "vib", "rpm"), XS[1], strict=True))
        p1 = c.send("sync-1", T0 + 1, named)  # named features; the client assigns an id
        assert p1.id is not None
        assert len(p1.id) == 16
        assert p1.dt == pytest.approx(1.0, abs=1e-9)
        batch = c.send_many("sync-1", [Event(T0 + 2, XS[2]), {"t": T0 + 3, "x": XS[3]}])
        assert (batch.applied, batch.duplicates, batch.failed) == (2, 0, 0)
        got = [p0, p1] + [r.prediction for r in batch.results if r.prediction is not None]
        assert_close([outputs_list({"outputs": p.outputs}) for p in got], want, tol=1e-5)
        assert list(p0.outputs) == list(OUTPUTS)
        assert [p.count for p in got] == [1, 2, 3, 4]
        # a repeat of an id is answered with the original prediction, marked duplicate
        again = c.send("sync-1", T0, XS[0], id="e0")
        assert again.duplicate is True
        assert again.outputs == p0.outputs
        assert c.delete("sync-1") is True
        assert c.delete("sync-1") is False
        assert c.models()["default"] == "pump"


def test_errors_carry_the_api_codes(service: ServiceProcess) -> None:
    with Client(service.url, api_key=KEY) as c:
        c.send("err-1", T0 + 10, XS[0])
        with pytest.raises(ServiceError) as late:
            c.send("err-1", T0, XS[1])
        assert (late.value.status, late.value.code) == (409, "out_of_order")
        assert late.value.details["last_t"] == pytest.approx(T0 + 10)
        with pytest.raises(ServiceError) as short:
            c.send("err-1", T0 + 11, [1.0, 2.0])
        assert (short.value.status, short.value.code) == (422, "wrong_feature_count")
    with Client(service.url, api_key="not-a-key-0000") as bad, pytest.raises(ServiceError) as e:
        bad.send("err-1", T0 + 12, XS[0])
    assert (e.value.status, e.value.code) == (401, "unauthorized")


def test_multi_stream_batch_reports_each_event(service: ServiceProcess) -> None:
    with Client(service.url, api_key=KEY) as c:
        c.send("multi-b", T0 + 5, XS[0])
        result = c.send_multi(
            [
                Event(T0, XS[0], stream_id="multi-a"),
                Event(T0 + 1, XS[1], stream_id="multi-b"),  # older than the stream's last
                Event(T0 + 2, [1.0], stream_id="multi-c"),  # invalid: skipped, others applied
                Event(T0 + 1, XS[1], stream_id="multi-a"),
            ]
        )
        assert [r.status for r in result.results] == [200, 409, 422, 200]
        assert (result.applied, result.duplicates, result.failed) == (2, 0, 2)
        assert [r.index for r in result.results] == [0, 1, 2, 3]
        assert result.results[1].error is not None
        assert result.results[1].error.code == "out_of_order"
        assert result.results[2].error is not None
        assert result.results[2].error.code == "wrong_feature_count"
        assert not result.results[2].ok
        assert result.results[3].prediction is not None
        assert result.results[3].prediction.count == 2
        with pytest.raises(ValueError, match="stream_id"):
            c.send_multi([Event(T0, XS[0])])


def test_sync_retry_after_a_lost_answer_reuses_the_event_id(service: ServiceProcess) -> None:
    """The first answer is lost after the event was applied; the retry (same id) is answered
    with the original prediction, marked duplicate: the event counts once."""
    with (
        DroppingProxy(service.port, drops=1) as proxy,
        Client(f"http://127.0.0.1:{proxy.port}", api_key=KEY, retry=RetryPolicy(3, 0.01)) as c,
    ):
        p = c.send("retry-sync", T0, XS[0])
        assert proxy.dropped == 1
    assert p.duplicate is True
    assert p.count == 1
    with Client(service.url, api_key=KEY) as direct:
        assert direct.send("retry-sync", T0 + 1, XS[1]).count == 2


@pytest.mark.anyio
async def test_async_client_retries_and_gives_up(service: ServiceProcess) -> None:
    with DroppingProxy(service.port, drops=2) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        async with AsyncClient(url, api_key=KEY, retry=RetryPolicy(3, 0.01)) as c:
            batch = await c.send_many("retry-async", [Event(T0, XS[0]), Event(T0 + 1, XS[1])])
        assert proxy.dropped == 2
        assert (batch.applied, batch.duplicates) == (0, 2)
        assert [r.prediction.count for r in batch.results if r.prediction] == [1, 2]
    with DroppingProxy(service.port, drops=5) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        async with AsyncClient(url, api_key=KEY, retry=RetryPolicy(2, 0.01)) as c:
            import httpx

            with pytest.raises(httpx.TransportError):
                await c.send("retry-async", T0 + 2, XS[2])
        assert proxy.dropped == 2  # two attempts, then the error


@pytest.mark.anyio
async def test_live_socket_sends_and_yields_predictions(service: ServiceProcess) -> None:
    async with AsyncClient(service.url, api_key=KEY) as c, c.live("live-1") as feed:
        p = await feed.send(T0, XS[0], id="w0")
        assert (p.stream_id, p.id, p.count) == ("live-1", "w0", 1)
        # several events in flight at once, each answered (matched by request id)
        futures = [
            await feed.submit({"t": T0 + 1 + i, "x": XS[i], "id": f"w{i + 1}"}) for i in range(3)
        ]
        answers = [await f for f in futures]
        assert [status for status, _ in answers] == [200, 200, 200]
        assert [m["prediction"]["count"] for _, m in answers] == [2, 3, 4]
        http = await c.send("live-1", T0 + 9, XS[3])  # from another route: on the feed too
        with pytest.raises(ServiceError) as late:
            await feed.send(T0, XS[0])
        assert late.value.code == "out_of_order"
        seen: list[Prediction] = []
        async for live in feed:
            seen.append(live)
            if live.count == http.count:
                break
        assert [q.count for q in seen] == [1, 2, 3, 4, 5]
        assert seen[-1].x == pytest.approx(XS[3])
        assert seen[-1].outputs == http.outputs
        batch = await feed.send_many([Event(T0 + 10, XS[0]), Event(T0 + 11, XS[1])])
        assert batch.applied == 2


@pytest.mark.parametrize("body_format", ["msgpack", "ndjson"])
def test_client_body_formats_answer_as_json(service: ServiceProcess, body_format: str) -> None:
    """The same events sent as MessagePack or NDJSON get the JSON client's answers."""
    answers = {}
    for fmt in ("json", body_format):
        with Client(service.url, api_key=KEY, body_format=fmt) as c:
            one = c.send(f"fmt-{body_format}-{fmt}", T0, XS[0], id="f0")
            many = c.send_many(
                f"fmt-{body_format}-{fmt}", [Event(T0 + 1 + i, x) for i, x in enumerate(XS[1:])]
            )
            multi = c.send_multi(
                [
                    Event(T0, XS[0], stream_id=f"fmtm-{body_format}-{fmt}"),
                    Event(T0, [1.0], stream_id=f"fmtm2-{body_format}-{fmt}"),
                ]
            )
            answers[fmt] = (one, many, multi)
    (j1, jm, jx), (o1, om, ox) = answers["json"], answers[body_format]
    assert (o1.outputs, o1.count, o1.id) == (j1.outputs, j1.count, j1.id)
    assert [r.prediction.outputs for r in om.results if r.prediction] == [
        r.prediction.outputs for r in jm.results if r.prediction
    ]
    assert [r.status for r in ox.results] == [r.status for r in jx.results] == [200, 422]
    assert ox.results[1].error is not None
    assert ox.results[1].error.code == "wrong_feature_count"
    with pytest.raises(ValueError, match="body_format"):
        Client(service.url, body_format="xml")


@pytest.mark.anyio
async def test_live_socket_in_messagepack(service: ServiceProcess) -> None:
    async with (
        AsyncClient(service.url, api_key=KEY, body_format="msgpack") as c,
        c.live("live-mp") as feed,
    ):
        assert feed.binary is True
        futures = [await feed.submit({"t": T0 + i, "x": XS[i], "id": f"m{i}"}) for i in range(4)]
        got = [await f for f in futures]
        assert [m["prediction"]["count"] for _, m in got] == [1, 2, 3, 4]
        with pytest.raises(ServiceError) as short:
            await feed.send(T0 + 9, [1.0])
        assert short.value.code == "wrong_feature_count"
