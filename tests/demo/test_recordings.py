"""The demo's irregular recordings: the sampling protocol, its determinism, the file reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.demo import recordings as rec
from tests.demo.conftest import has_sktime_data

needs_data = pytest.mark.skipif(
    not has_sktime_data(), reason="the BasicMotions files come with sktime"
)

TS = """# a comment
@problemName Tiny
@classLabel true standing running
@data
{a}:{b}:{c}:{d}:{e}:{f}:Standing
{a}:{b}:{c}:{d}:{e}:{f}:Running
"""


def write_ts(tmp_path: Path, part: str = "TEST", steps: int = 5) -> Path:
    values = {k: ",".join(str(i + j) for j in range(steps)) for i, k in enumerate("abcdef")}
    (tmp_path / f"BasicMotions_{part}.ts").write_text(TS.format(**values))
    return tmp_path


def test_keep_indices_is_seeded_ordered_and_never_too_short() -> None:
    a = rec.keep_indices(100, 0.6, np.random.RandomState(1))
    b = rec.keep_indices(100, 0.6, np.random.RandomState(1))
    assert np.array_equal(a, b)
    assert np.all(np.diff(a) > 0)
    assert 40 <= a.size <= 80
    assert np.array_equal(rec.keep_indices(100, 1.0, np.random.RandomState(0)), np.arange(100))
    for seed in range(20):  # keep so low that nothing would survive: the minimum is kept
        kept = rec.keep_indices(10, 1e-9, np.random.RandomState(seed))
        assert kept.size == rec.MIN_EVENTS
        assert np.all(np.diff(kept) > 0)
    with pytest.raises(ValueError, match="keep must be in"):
        rec.keep_indices(10, 0.0, np.random.RandomState(0))


def test_recordings_keep_the_real_times(tmp_path: Path) -> None:
    x = np.arange(2 * 100 * 6, dtype=np.float32).reshape(2, 100, 6)
    out = rec.irregular(x, ["walking", "running"], keep=0.5, seed=3, prefix="r")
    kept = rec.keep_indices(100, 0.5, np.random.RandomState(3))
    first = out[0]
    assert first.name == "r-00"
    assert first.activity == "walking"
    assert first.label == 1
    np.testing.assert_allclose(first.offsets, kept * 0.1)
    np.testing.assert_array_equal(first.x, x[0, kept])
    dt = first.dt()
    assert dt[0] == pytest.approx(0.1)  # the first event: the model's default Δt
    np.testing.assert_allclose(dt[1:], np.diff(kept) * 0.1)
    assert len(set(np.round(dt, 6))) > 2  # irregular: several different gaps
    assert first.features(0) == dict(zip(rec.FEATURES, map(float, x[0, kept[0]]), strict=True))


def test_to_arrays_pads_and_masks() -> None:
    x = np.ones((2, 10, 6), dtype=np.float32)
    recs = rec.irregular(x, ["standing", "badminton"], keep=0.5, seed=0, prefix="r")
    xs, dt, y, mask = rec.to_arrays(recs)
    T = max(len(r) for r in recs)
    assert xs.shape == (2, T, 6)
    assert dt.shape == y.shape == mask.shape == (2, T)
    assert mask.sum(1).tolist() == [len(r) for r in recs]
    assert y[0].tolist() == [0] * T
    assert y[1].tolist() == [3] * T
    assert np.all(dt[~mask] == 0)
    assert np.all(xs[~mask] == 0)


def test_read_ts_parses_and_refuses(tmp_path: Path) -> None:
    write_ts(tmp_path)
    x, labels = rec.read_ts(tmp_path / "BasicMotions_TEST.ts")
    assert x.shape == (2, 5, 6)
    assert labels == ["standing", "running"]
    assert x[0, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert x[0, 4, 0] == 4
    bad = tmp_path / "bad.ts"
    bad.write_text("@data\n1,2,x:standing\n")
    with pytest.raises(ValueError, match="not a numeric series"):
        rec.read_ts(bad)
    bad.write_text("@data\n")
    with pytest.raises(ValueError, match="no @data rows"):
        rec.read_ts(bad)
    with pytest.raises(ValueError, match="unknown part"):
        rec.load_part("valid", tmp_path)


def test_missing_sktime_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(rec.DataMissingError, match="pip install sktime"):
        rec.held_out_recordings()


@needs_data
def test_the_held_out_draw_is_fixed() -> None:
    a = rec.held_out_recordings()
    b = rec.held_out_recordings()
    assert len(a) == 40
    assert sorted({r.activity for r in a}) == sorted(rec.ACTIVITIES)
    assert all(sum(r.activity == act for r in a) == 10 for act in rec.ACTIVITIES)
    for r, s in zip(a, b, strict=True):
        assert np.array_equal(r.offsets, s.offsets)
        assert np.array_equal(r.x, s.x)
    events = sum(len(r) for r in a)
    assert 0.5 * 4000 < events < 0.7 * 4000  # keep 0.6 of 40 x 100 readings
