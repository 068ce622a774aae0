"""The stream record codec: exact round trips, a fixed layout, and clear errors."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.store.recent import RecentEntry, RecentWindow
from service.store.record import (
    FORMAT_VERSION,
    MAGIC,
    CodecError,
    StreamRecord,
    decode_record,
    encode_record,
    f32_to_floats,
    floats_to_f32,
)


def record(**over: object) -> StreamRecord:
    fields: dict[str, object] = {
        "model": "demo",
        "version": "sha256:" + "ab" * 32,
        "h": floats_to_f32([0.1, -2.5, 3.0e-40, -0.0]),  # a denormal and a negative zero
        "x": floats_to_f32([1.0, 2.0, float(np.float32(1 / 3))]),
        "last_t": 1_700_000_000.123456,
        "count": 42,
        "created": 1_699_999_000.5,
        "updated": 1_700_000_001.25,
        "recent": (
            RecentEntry("e-1", 1_699_999_999.0, 0.5, (0.25, -1.0), "first_event", 41),
            RecentEntry("ü-2", 1_700_000_000.123456, 1.123456, (1 / 3, 2.0), None, 42),
        ),
    }
    fields.update(over)
    fields["recent"] = RecentWindow.of(fields["recent"])  # type: ignore[arg-type]
    return StreamRecord(**fields)  # type: ignore[arg-type]


def test_round_trip_is_exact() -> None:
    rec = record()
    data = encode_record(rec)
    back = decode_record(data)
    assert back == rec
    assert back.h == rec.h  # the float32 state bytes, bit for bit
    assert encode_record(back) == data
    assert back.recent[1].y[0] == 1 / 3  # float64 predictions survive exactly


def test_layout_header_and_raw_float32_state() -> None:
    rec = record()
    data = encode_record(rec)
    magic, version, flags = struct.unpack_from("<4sHH", data, 0)
    assert (magic, version, flags) == (MAGIC, FORMAT_VERSION, 0)
    assert struct.unpack_from("<dddQ", data, 8) == (rec.last_t, rec.created, rec.updated, 42)
    n_h, n_x, n_recent, n_y, n_model, n_version = struct.unpack_from("<IIHHHH", data, 40)
    assert (n_h, n_x, n_recent, n_y) == (4, 3, 2, 2)
    start = 56 + n_model + n_version
    assert data[start : start + 16] == rec.h
    assert np.frombuffer(data[start : start + 16], dtype="<f4").tolist() == list(rec.h_floats())


def test_empty_window_and_sizes() -> None:
    rec = record(recent=(), h=b"", x=b"", count=0)
    assert decode_record(encode_record(rec)) == rec
    assert record().state_size == 4
    assert record().input_size == 3


def test_float32_helpers_are_exact() -> None:
    values = [float(np.float32(v)) for v in (0.1, -7.25, 1e-38, 3.4e38)]
    assert f32_to_floats(floats_to_f32(values)) == tuple(values)
    with pytest.raises(CodecError):
        f32_to_floats(b"\x00\x00\x00")


finite = st.floats(allow_nan=False, allow_infinity=False)
f32 = st.floats(width=32, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    model=st.text(max_size=20),
    version=st.text(max_size=70),
    h=st.lists(f32, max_size=16),
    x=st.lists(f32, max_size=8),
    last_t=finite,
    count=st.integers(0, 2**64 - 1),
    n_y=st.integers(0, 4),
    recent=st.lists(
        st.tuples(
            st.text(max_size=40),
            finite,
            finite,
            st.integers(0, 2**64 - 1),
            st.sampled_from([None, "first_event", "gap", "model_change", "expired"]),
            st.lists(finite, min_size=4, max_size=4),
        ),
        max_size=5,
    ),
)
def test_round_trip_property(
    model: str,
    version: str,
    h: list[float],
    x: list[float],
    last_t: float,
    count: int,
    n_y: int,
    recent: list[tuple[str, float, float, int, str | None, list[float]]],
) -> None:
    rec = StreamRecord(
        model=model,
        version=version,
        h=floats_to_f32(h),
        x=floats_to_f32(x),
        last_t=last_t,
        count=count,
        created=last_t,
        updated=-last_t,
        recent=RecentWindow.of(
            RecentEntry(i, t, dt, tuple(y[:n_y]), r, c) for i, t, dt, c, r, y in recent
        ),
    )
    data = encode_record(rec)
    assert decode_record(data) == rec
    assert encode_record(decode_record(data)) == data


def test_unknown_format_version_is_named() -> None:
    data = bytearray(encode_record(record()))
    struct.pack_into("<H", data, 4, FORMAT_VERSION + 1)
    with pytest.raises(CodecError, match=rf"format version {FORMAT_VERSION + 1} is not supported"):
        decode_record(bytes(data))


def test_bad_magic() -> None:
    with pytest.raises(CodecError, match="magic"):
        decode_record(b"JUNK" + encode_record(record())[4:])


def test_every_truncation_is_an_error() -> None:
    data = encode_record(record())
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode_record(data[:n])


def test_every_single_bit_flip_is_detected() -> None:
    data = encode_record(record())
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x10
        with pytest.raises(CodecError):
            decode_record(bytes(corrupt))


def test_trailing_bytes_are_an_error() -> None:
    import zlib

    data = encode_record(record())
    body = data[:-4] + b"\x00"
    with pytest.raises(CodecError, match="trailing"):
        decode_record(body + struct.pack("<I", zlib.crc32(body)))


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)


@pytest.mark.parametrize(
    ("over", "match"),
    [({"h": b"\x00\x00\x00"}, "multiple of 4"), ({"count": -1}, "count")],
)
def test_encode_refuses_what_it_cannot_store(over: dict[str, object], match: str) -> None:
    with pytest.raises(CodecError, match=match):
        encode_record(record(**over))


@pytest.mark.parametrize(
    ("over", "match"),
    [
        (
            {
                "recent": (
                    RecentEntry("a", 0, 0, (1.0,), None, 1),
                    RecentEntry("b", 0, 0, (1.0, 2.0), None, 2),
                )
            },
            "same output size",
        ),
        ({"recent": (RecentEntry("a", 0, 0, (), "bogus", 1),)}, "unknown reset"),
        ({"recent": (RecentEntry("x" * 70000, 0, 0, (), None, 1),)}, "event id"),
        ({"recent": (RecentEntry("a", 0, 0, (), None, -1),)}, "count"),
    ],
)
def test_window_refuses_what_it_cannot_store(over: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        record(**over)


def test_nan_and_inf_state_bytes_are_kept_raw() -> None:
    # The engine never stores non-finite states, but the codec itself must not alter bytes.
    raw = floats_to_f32([math.inf, -math.inf]) + b"\x01\x00\xc0\x7f"  # a NaN with a payload
    assert decode_record(encode_record(record(h=raw))).h == raw


def encode_v1(rec: StreamRecord) -> bytes:
    """``rec`` in format version 1 (the window entry by entry), as earlier builds wrote it."""
    import zlib

    model, version = rec.model.encode(), rec.version.encode()
    entries = list(rec.recent)
    n_y = len(entries[0].y) if entries else 0
    parts = [
        struct.pack(
            "<4sHHdddQIIHHHH", MAGIC, 1, 0, rec.last_t, rec.created, rec.updated, rec.count,
            len(rec.h) // 4, len(rec.x) // 4, len(entries), n_y, len(model), len(version),
        ),
        model, version, rec.h, rec.x,
    ]  # fmt: skip
    codes = {None: 0, "first_event": 1, "gap": 2, "model_change": 3, "expired": 4}
    for e in entries:
        raw = e.event_id.encode()
        parts += [struct.pack("<H", len(raw)), raw]
        parts += [struct.pack("<ddQB", e.t, e.dt, e.count, codes[e.reset])]
        parts += [struct.pack(f"<{n_y}d", *e.y)]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def test_version_1_records_are_still_read_and_rewritten_as_the_current_version() -> None:
    rec = record()
    old = encode_v1(rec)
    assert decode_record(old) == rec
    new = encode_record(decode_record(old))
    assert struct.unpack_from("<H", new, 4) == (FORMAT_VERSION,)
    assert decode_record(new) == rec


def test_a_corrupt_version_1_window_is_an_error() -> None:
    data = bytearray(encode_v1(record()))
    for i in range(6, len(data) - 4):  # every byte but magic, version and checksum
        corrupt = bytearray(data)
        corrupt[i] ^= 0x10
        with pytest.raises(CodecError):
            decode_record(bytes(corrupt))


def entries(*ids: str) -> list[RecentEntry]:
    return [RecentEntry(e, float(i), 1.0, (float(i), -1.0), None, i + 1) for i, e in enumerate(ids)]


def test_window_finds_the_newest_entry_of_an_id() -> None:
    ids = ("a", "ü\x00b", "", "a", "ab", "\u2603")  # NUL, empty, multibyte: all findable
    window = RecentWindow.of(entries(*ids))
    assert [window.find(e) for e in ("a", "ü\x00b", "", "ab", "\u2603")] == [3, 1, 2, 4, 5]
    assert window.find("b") is None
    assert window.find("a\xffb") is None
    assert window.find("\ud800") is None  # a lone surrogate was never stored
    assert window[3] == entries(*ids)[3]
    assert window[-1] == entries(*ids)[-1]
    assert window.event_ids() == list(ids)
    with pytest.raises(IndexError):
        window[6]


def test_window_last_and_extended_match_a_list() -> None:
    all_entries = entries(*(f"e{i}" for i in range(10)))
    window = RecentWindow.of(all_entries[:4])
    for keep in (0, 1, 3, 4, 7):
        grown = window.extended(all_entries[4:]).last(keep)
        assert list(grown) == all_entries[10 - keep :] if keep else list(grown) == []
        assert [grown.find(e.event_id) for e in all_entries[10 - keep :]] == list(range(keep))
        back = decode_record(encode_record(record(recent=grown)))
        assert back.recent == grown


def test_corrupt_window_columns_are_refused() -> None:
    good = RecentWindow.of(entries("a", "b"))
    cols = dict(zip(("ids", "t", "dt", "count", "reset", "y"), good.columns(), strict=True))
    bad = [
        {"ids": b"\xffa\xff"},  # one id for two entries
        {"ids": b"a\xffb\xff"},  # not framed
        {"ids": b"\xff\xc3\xffb\xff"},  # not UTF-8
        {"reset": b"\x00\x09"},  # unknown reset code
        {"t": good.t[:8]},  # a short column
    ]
    for over in bad:
        with pytest.raises(ValueError):
            RecentWindow.from_columns(2, 2, **{**cols, **over})


entry_strategy = st.builds(
    RecentEntry,
    event_id=st.text(max_size=6),
    t=finite,
    dt=finite,
    y=st.just((0.5, -1.0)),
    reset=st.sampled_from([None, "first_event", "gap", "model_change", "expired"]),
    count=st.integers(0, 2**64 - 1),
)


@settings(max_examples=200, deadline=None)
@given(
    start=st.lists(entry_strategy, max_size=8),
    steps=st.lists(st.tuples(entry_strategy, st.integers(-1, 9)), max_size=8),
)
def test_window_operations_match_a_plain_list(
    start: list[RecentEntry], steps: list[tuple[RecentEntry, int]]
) -> None:
    """pushed / extended / last / find on the byte columns agree with the same operations on
    a list of entries (the window as format 1 kept it)."""
    window, model = RecentWindow.of(start), list(start)
    for entry, keep in steps:
        pushed = window.pushed(entry, keep)
        assert pushed.columns() == window.extended((entry,)).last(keep).columns()
        window = pushed
        model = [*model, entry][-keep:] if keep > 0 else []
        assert list(window) == model
        for probe in {e.event_id for e in model} | {"absent"}:
            newest = max((i for i, e in enumerate(model) if e.event_id == probe), default=None)
            assert window.find(probe) == newest
        assert decode_record(encode_record(record(recent=window))).recent == window
