"""Windows carry the real Δt, never cross streams, and splits keep streams (or times) apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from liquidcore.data import (
    Columns,
    Stream,
    cut_windows,
    fit_normalization,
    median_dt,
    split_streams,
    streams_from_frame,
)


def _stream(sid: str, times: list[float], t_before: float | None = None) -> Stream:
    n = len(times)
    x = np.arange(n, dtype=np.float32)[:, None] + 100 * int(sid[1:])
    return Stream(sid, np.asarray(times, dtype=np.float64), x, x.copy(), t_before)


def test_dt_is_the_real_gap_and_default_for_a_streams_first_row() -> None:
    s = _stream("s0", [10.0, 10.5, 12.0, 12.25, 15.0, 15.5])
    w = cut_windows([s], 3, 2, default_dt=0.7)
    np.testing.assert_allclose(w.dt, [[0.7, 0.5, 1.5], [1.5, 0.25, 2.75]], rtol=1e-6)
    np.testing.assert_array_equal(w.x[:, :, 0], [[0, 1, 2], [2, 3, 4]])
    assert w.mask is None
    np.testing.assert_array_equal(w.stream, [0, 0])


def test_windows_never_cross_streams_and_cover_full_windows_only() -> None:
    a = _stream("s1", [0, 1, 2, 3, 4, 5, 6])
    b = _stream("s2", [0, 2, 4])
    w = cut_windows([a, b], 4, 3, default_dt=1.0)
    # a: starts 0 and 3; b is shorter than a window and is skipped
    np.testing.assert_array_equal(w.x[:, :, 0], [[100, 101, 102, 103], [103, 104, 105, 106]])
    padded = cut_windows([a, b], 4, 3, default_dt=1.0, pad_short=True)
    assert len(padded) == 3
    assert padded.mask is not None
    np.testing.assert_array_equal(padded.mask[2], [True, True, True, False])
    np.testing.assert_allclose(padded.dt[2], [1.0, 2.0, 2.0, 0.0])


def test_time_split_keeps_the_real_dt_to_the_last_training_row() -> None:
    s = _stream("s3", [0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 21.0, 28.0, 36.0, 45.0])
    train, valid = split_streams([s], 0.3, by="time")
    assert len(train[0]) == 7
    assert len(valid[0]) == 3
    w = cut_windows(valid, 3, 1, default_dt=99.0)
    np.testing.assert_allclose(w.dt[0], [7.0, 8.0, 9.0])  # 28 - 21, not the default


def test_stream_split_is_disjoint_seeded_and_complete() -> None:
    streams = [_stream(f"s{i}", [0.0, 1.0]) for i in range(10)]
    tr, va = split_streams(streams, 0.2, by="stream", seed=3)
    assert len(va) == 2
    assert {s.id for s in tr} | {s.id for s in va} == {s.id for s in streams}
    assert not {s.id for s in tr} & {s.id for s in va}
    _, va2 = split_streams(streams, 0.2, by="stream", seed=3)
    assert [s.id for s in va2] == [s.id for s in va]
    with pytest.raises(ValueError, match="needs >= 2 streams"):
        split_streams(streams[:1], 0.2, by="stream")


def test_normalization_counts_each_row_once() -> None:
    s = _stream("s0", [0, 1, 2, 3])
    mean, std = fit_normalization([s])
    np.testing.assert_allclose(mean, [1.5])
    np.testing.assert_allclose(std, [np.std([0, 1, 2, 3])])
    const = Stream("c", np.arange(3.0), np.full((3, 1), 5.0, np.float32), np.zeros((3, 1)))
    assert fit_normalization([const])[1][0] == 1.0  # a constant feature is only centred


def test_median_dt_over_streams() -> None:
    assert median_dt([_stream("s0", [0, 1, 3]), _stream("s1", [0, 4])]) == 2.0
    assert median_dt([_stream("s0", [5.0])]) == 1.0


def test_rows_of_a_stream_keep_file_order_when_streams_interleave() -> None:
    df = pd.DataFrame(
        {
            "id": ["b", "a", "b", "a", "b"],
            "t": [1.0, 1.5, 2.0, 2.5, 4.0],
            "x": [10.0, 20.0, 11.0, 21.0, 12.0],
            "y": [0.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    table = streams_from_frame(df, Columns("t", ("y",), ("x",), "id"), task="regression")
    by_id = {s.id: s for s in table.streams}
    np.testing.assert_array_equal(by_id["b"].x[:, 0], [10, 11, 12])
    np.testing.assert_array_equal(by_id["a"].t, [1.5, 2.5])
