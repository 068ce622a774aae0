"""The MQTT pieces without a broker: topic templates, sharding, SenML (RFC 8428) decoding,
payload formats and ids, ordered acknowledgements, per-stream lanes, settings."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from service.api.errors import ApiError, ErrorCode
from service.api.parsing import FieldError
from service.engine.registry import FeatureSpec
from service.mqtt.acks import AckWindow
from service.mqtt.lanes import StreamLanes
from service.mqtt.payload import decode_events, is_senml
from service.mqtt.senml import decode_pack, feature_units
from service.mqtt.settings import broker_address
from service.mqtt.shard import Shard, stream_hash
from service.mqtt.topics import TopicTemplate
from service.mqtt.wire import derived_id
from service.settings import Settings

SPEC = FeatureSpec(2, ("temp", "hum"))
T0 = 1_767_225_600.0


# -- topics --------------------------------------------------------------------------------
def test_a_template_subscribes_matches_and_formats() -> None:
    t = TopicTemplate.parse("{tenant}/sensors/{stream_id}/events")
    assert t.subscription() == "+/sensors/+/events"
    assert t.subscription("senml") == "+/sensors/+/events/senml"
    assert t.match("acme/sensors/p-1/events") == ({"tenant": "acme", "stream_id": "p-1"}, ())
    assert t.match("acme/sensors/p-1/events/senml")[1] == ("senml",)  # type: ignore[index]
    assert t.match("acme/other/p-1/events") is None
    assert t.match("acme/sensors") is None
    assert t.format(tenant="acme", stream_id="p-1") == "acme/sensors/p-1/events"


@pytest.mark.parametrize(
    "text",
    ["sensors/events", "sensors/+/{stream_id}", "s/{stream_id}x", "s/{id}", "$SYS/{stream_id}"],
)
def test_a_bad_template_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        TopicTemplate.parse(text)


# -- sharding ------------------------------------------------------------------------------
def test_every_stream_has_exactly_one_shard_and_the_hash_is_stable() -> None:
    shards = [Shard(k, 3) for k in range(3)]
    owners = [sum(s.owns("t", f"s{i}") for s in shards) for i in range(300)]
    assert owners == [1] * 300
    share = [sum(s.owns("t", f"s{i}") for i in range(300)) for s in shards]
    assert min(share) > 60  # roughly even
    # pinned: a changed hash would move streams between replicas across an upgrade
    assert stream_hash("default", "pump-17") == 0xCB53A0B9B377EA24


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/2", "0/0"])
def test_a_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="K/N"):
        Shard.parse(text)


# -- SenML ---------------------------------------------------------------------------------
def test_rfc8428_base_fields_resolve_and_records_of_one_time_make_one_event() -> None:
    pack = [
        {
            "bn": "urn:dev:ow:10e2073a01080063:",
            "bt": T0,
            "bu": "Cel",
            "bv": 1.0,
            "n": "temp",
            "v": 20.0,
        },
        {"n": "hum", "u": "%RH", "v": 40.0},
        {"n": "temp", "v": 21.0, "t": 10},
        {"n": "hum", "u": "%RH", "v": 41.0, "t": 10},
    ]
    events = decode_pack(pack, SPEC, {"temp": "Cel", "hum": "%RH"}, now=0.0)
    assert [(e.t, e.x, e.index) for e in events] == [
        (T0, (21.0, 41.0), 0),  # bv is added to every value
        (T0 + 10, (22.0, 42.0), 2),
    ]


def test_relative_times_count_from_now_and_events_come_in_time_order() -> None:
    pack = [
        {"n": "temp", "v": 1.0, "t": -5},
        {"n": "hum", "v": 2.0, "t": -5},
        {"n": "temp", "v": 3.0, "t": -10},
        {"n": "hum", "v": 4.0, "t": -10},
    ]
    events = decode_pack(pack, SPEC, {}, now=T0)
    assert [(e.t, e.x) for e in events] == [(T0 - 10, (3.0, 4.0)), (T0 - 5, (1.0, 2.0))]


def test_the_full_name_may_name_the_feature() -> None:
    spec = FeatureSpec(1, ("dev:temp",))
    (event,) = decode_pack([{"bn": "dev:", "n": "temp", "v": 5.0, "t": T0}], spec, {}, 0.0)
    assert event.x == (5.0,)


@pytest.mark.parametrize(
    ("pack", "code", "field"),
    [
        ([{"n": "temp", "v": 1.0, "t": T0}], ErrorCode.MISSING_FEATURE, "senml@"),
        (
            [{"n": "wind", "v": 1.0, "t": T0}, {"n": "temp", "v": 1, "t": T0}],
            ErrorCode.UNKNOWN_FEATURE,
            "senml@",
        ),
        ([{"n": "temp", "u": "K", "v": 290.0, "t": T0}], ErrorCode.INVALID_EVENT, "senml[0].u"),
        ([{"n": "temp", "vs": "warm", "t": T0}], ErrorCode.INVALID_EVENT, "senml[0]"),
        ([{"n": "temp", "v": True, "t": T0}], ErrorCode.INVALID_EVENT, "senml[0].v"),
        (
            [{"n": "temp", "v": 1.0, "t": T0}, {"n": "temp", "v": 2.0, "t": T0}],
            ErrorCode.INVALID_EVENT,
            "senml[1].n",
        ),
        ([{"n": "temp", "v": 1.0, "t": T0, "foo_": 1}], ErrorCode.INVALID_EVENT, "senml[0]"),
        ([{"bver": 99, "n": "temp", "v": 1.0}], ErrorCode.INVALID_EVENT, "senml[0].bver"),
        ([{"n": "temp", "v": 1e39, "t": T0}], ErrorCode.NON_FINITE_VALUE, "senml[0].v"),
        ({"n": "temp", "v": 1.0}, ErrorCode.INVALID_EVENT, "senml"),
        ([], ErrorCode.INVALID_EVENT, "senml"),
    ],
)
def test_a_bad_pack_names_the_fault(pack: Any, code: ErrorCode, field: str) -> None:
    with pytest.raises(FieldError) as err:
        decode_pack(pack, SPEC, {"temp": "Cel"}, now=T0)
    assert err.value.code is code
    assert err.value.field.startswith(field)


def test_units_come_from_the_model_metadata() -> None:
    assert feature_units({"feature_units": {"temp": "Cel"}}) == {"temp": "Cel"}
    assert feature_units({}) == {}
    assert feature_units(None) == {}


# -- payloads ------------------------------------------------------------------------------
def _decode(payload: bytes, senml: bool = False, **kw: Any) -> list[Any]:
    args: dict[str, Any] = {"spec": SPEC, "units": {}, "max_bytes": 1024, "max_events": 3}
    args.update(kw)
    return decode_events("sensors/a/events", payload, senml_pack=senml, now=T0, **args)


def test_json_events_keep_their_ids_and_others_get_one_from_topic_and_payload() -> None:
    one = json.dumps({"t": T0, "x": [1, 2], "id": "e1"}).encode()
    assert [e.id for e in _decode(one)] == ["e1"]
    many = json.dumps({"events": [{"t": T0, "x": [1, 2]}, {"t": T0 + 1, "x": [1, 2]}]}).encode()
    ids = [e.id for e in _decode(many)]
    assert ids == [derived_id("sensors/a/events", many, 0), derived_id("sensors/a/events", many, 1)]
    assert ids == [e.id for e in _decode(many)]  # a redelivery: the same ids
    assert derived_id("sensors/b/events", many, 0) != ids[0]


@pytest.mark.parametrize(
    ("payload", "kw", "code"),
    [
        (b"x" * 2000, {}, ErrorCode.PAYLOAD_TOO_LARGE),
        (b"  ", {}, ErrorCode.INVALID_JSON),
        (b"[]", {}, ErrorCode.INVALID_EVENT),
        (json.dumps([{"t": T0, "x": [1, 2]}] * 4).encode(), {}, ErrorCode.TOO_MANY_EVENTS),
        (b'{"t": 1, "x": [1, 2], "extra": 1}', {}, ErrorCode.INVALID_EVENT),
    ],
)
def test_a_bad_payload_has_the_http_code(
    payload: bytes, kw: dict[str, Any], code: ErrorCode
) -> None:
    with pytest.raises(ApiError) as err:
        _decode(payload, **kw)
    assert err.value.code is code


def test_the_format_comes_from_the_content_type_or_the_topic_suffix() -> None:
    assert is_senml(None, ()) is False
    assert is_senml("application/json", ()) is False
    assert is_senml("application/senml+json", ()) is True
    assert is_senml(None, ("senml",)) is True
    for content_type, extra in [("text/plain", ()), (None, ("cbor",)), (None, ("a", "b"))]:
        with pytest.raises(ApiError) as err:
            is_senml(content_type, extra)
        assert err.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE


# -- acknowledgements and lanes ------------------------------------------------------------
def test_acks_leave_in_arrival_order_and_not_after_the_connection_is_gone() -> None:
    sent: list[int] = []
    window = AckWindow(lambda mid, qos: sent.append(mid))
    a, b, c = (window.receive(mid, 1) for mid in (1, 2, 3))
    c.finish()
    b.finish()
    assert sent == []  # 1 is not done: nothing behind it is acknowledged
    a.finish()
    assert sent == [1, 2, 3]
    d = window.receive(4, 1)
    q0 = window.receive(5, 0)
    window.close()
    d.finish()
    q0.finish()
    assert sent == [1, 2, 3]
    assert len(window) == 0


def test_a_lane_applies_its_stream_in_order_one_pass_at_a_time() -> None:
    passes: list[tuple[str, list[int]]] = []
    running: set[str] = set()

    async def apply(key: Any, items: list[int]) -> None:
        assert key not in running  # never two passes of one stream at once
        running.add(key)
        await asyncio.sleep(0.01)
        passes.append((key, items))
        running.discard(key)

    async def main() -> None:
        lanes: StreamLanes[int] = StreamLanes(apply)
        lanes.put("a", 1)
        lanes.put("b", 1)
        await asyncio.sleep(0)
        for i in (2, 3):
            lanes.put("a", i)
        assert await lanes.wait_idle(5)

    asyncio.run(main())
    assert [items for key, items in passes if key == "a"] == [[1], [2, 3]]
    assert [items for key, items in passes if key == "b"] == [[1]]


# -- settings ------------------------------------------------------------------------------
def test_broker_urls() -> None:
    assert broker_address("mqtt://localhost") == (False, "localhost", 1883, None, None)
    assert broker_address("mqtts://u:p%40ss@h:1") == (True, "h", 1, "u", "p@ss")
    for bad in ("http://h", "mqtt://", "mqtt://h/x", "mqtt://h:99999"):
        with pytest.raises(ValueError, match="mqtt_url"):
            broker_address(bad)


def test_settings_build_the_config_and_refuse_what_cannot_work() -> None:
    config = Settings(mqtt_url="mqtt://b:1884", mqtt_shard="1/3").mqtt_config()
    assert config is not None
    assert (config.host, config.port, config.client_id) == ("b", 1884, "liquidstream-1-of-3")
    assert str(config.shard) == "1/3"
    assert "p@ss" not in repr(Settings(mqtt_url="mqtt://u:p%40ss@b").mqtt_config())
    assert Settings().mqtt_config() is None
    assert Settings(mqtt_url="mqtt://b", redis_url="redis://r").workers == 1
    refused = [
        {"mqtt_url": "mqtt://b", "workers": 2, "redis_url": "redis://r"},
        {"mqtt_url": "mqtt://b", "mqtt_qos": 2},
        {"mqtt_url": "mqtt://b", "mqtt_predictions_topic": "{tenant}/{stream_id}/p"},
        {"mqtt_shard": "3/2"},
        {"mqtt_client_id": "has space"},
        {"mqtt_receive_maximum": 0},
    ]
    for kwargs in refused:
        with pytest.raises(ValidationError):
            Settings(**kwargs)


def test_liquid_serve_names_a_bad_mqtt_option_and_nothing_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service.cli import serve

    assert serve(["--mqtt-url", "mqtt://b", "--mqtt-shard", "5/2"]) == 2
    err = capsys.readouterr().err
    assert "mqtt_shard: a shard is K/N" in err
    assert "default factory" not in err  # no follow-on noise about workers or threads
