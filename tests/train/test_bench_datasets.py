"""The benchmark datasets follow their protocols (checked on tiny sizes, by value)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from bench.datasets import basic_motions, lorenz, walker2d, xor

WALKER_FILE = Path(__file__).resolve().parents[3] / "shared/data/walker2d/walker2d_rollouts.npz"


# --- Walker2d -------------------------------------------------------------------------------


def _fake_rollouts(tmp_path: Path, n: int = 20) -> Path:
    """Rollouts whose column 0 is the step index and column 1 the rollout number."""
    rng = np.random.RandomState(0)
    arrays = {}
    for i in range(n):
        T = int(rng.randint(30, 60))
        obs = rng.standard_normal((T, 17)).astype(np.float32)
        obs[:, 0] = np.arange(T)
        obs[:, 1] = i
        arrays[f"rollout_{i:03d}"] = obs
    path = tmp_path / "walker.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _reference(path: Path, seq_len: int) -> dict[str, tuple[np.ndarray, ...]]:
    """The published loader's algorithm, step by step (scalar rng.rand() per step)."""
    with np.load(path) as z:
        data = {k + ".npy": z[k] for k in z.files}
    files = sorted(data)
    np.random.RandomState(125487).shuffle(files)
    test_n = int(0.15 * len(files))
    valid_n = int((0.15 + 0.1) * len(files))
    groups = {"train": files[valid_n:], "valid": files[test_n:valid_n], "test": files[:test_n]}
    rng = np.random.RandomState(891374)
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for name in ("train", "valid", "test"):
        xs, ts, ys = [], [], []
        for f in groups[name]:
            arr = data[f]
            x, y = arr[:-1].astype(np.float32), arr[1:].astype(np.float32)
            nx, nt, ny = [], [], []
            skip = 0
            for t in range(y.shape[0]):
                skip += 1
                if rng.rand() < 0.9:
                    nx.append(x[t])
                    nt.append(skip)
                    ny.append(y[t])
                    skip = 0
            nx_a, nt_a, ny_a = np.stack(nx), np.array(nt), np.stack(ny)
            for s in range(0, ny_a.shape[0] - seq_len, seq_len // 4):
                xs.append(nx_a[s : s + seq_len])
                ts.append(nt_a[s : s + seq_len])
                ys.append(ny_a[s : s + seq_len])
        out[name] = (np.stack(xs), np.stack(ts), np.stack(ys))
    return out


def test_walker_matches_the_published_loader_step_by_step(tmp_path: Path) -> None:
    path = _fake_rollouts(tmp_path)
    data = walker2d.load_walker2d(path, seq_len=8)
    assert data.info["rollouts"] == {"train": 15, "valid": 2, "test": 3}
    ref = _reference(path, 8)
    for name, got in (("train", data.train), ("valid", data.valid), ("test", data.test)):
        assert got is not None
        rx, rt, ry = ref[name]
        np.testing.assert_array_equal(got.x, rx)
        np.testing.assert_array_equal(got.dt, rt.astype(np.float32))
        np.testing.assert_array_equal(got.y, ry)


def test_walker_protocol_invariants(tmp_path: Path) -> None:
    data = walker2d.load_walker2d(_fake_rollouts(tmp_path), seq_len=8)
    test_ids = {int(v) for v in data.test.x[:, :, 1].ravel()} if data.test else set()
    train_ids = {int(v) for v in data.train.x[:, :, 1].ravel()}
    assert test_ids
    assert not test_ids & train_ids
    for s in (data.train, data.valid, data.test):
        assert s is not None
        assert s.steps == 8
        # elapsed times are integers >= 1 and equal the index gaps of the kept steps
        assert (s.dt >= 1).all()
        assert (s.dt == np.round(s.dt)).all()
        np.testing.assert_array_equal(np.diff(s.x[:, :, 0], axis=1), s.dt[:, 1:])
        # the target is the next raw observation: y[t] = obs[t + 1]
        np.testing.assert_array_equal(s.y[:, :, 0], s.x[:, :, 0] + 1)
        np.testing.assert_array_equal(s.y[:, :, 1], s.x[:, :, 1])
    # windows start every seq_len // 4 kept steps
    first = data.train.x[data.train.stream == 0][:, 0, 0]
    assert len(first) >= 2
    assert data.spec.loss_on == "all"
    assert data.spec.task == "regression"


@pytest.mark.skipif(not WALKER_FILE.is_file(), reason="shared Walker2d data not present")
def test_walker_real_data_sizes() -> None:
    data = walker2d.load_walker2d(WALKER_FILE)
    assert data.info["rollouts"] == {"train": 300, "valid": 40, "test": 60}
    assert data.train.x.shape[1:] == (64, 17)
    assert data.sizes() == {"train": 9684, "valid": 1272, "test": 1937}


def test_walker_reads_a_folder_of_npy_files(tmp_path: Path) -> None:
    npz = _fake_rollouts(tmp_path, n=8)
    folder = tmp_path / "walker"
    folder.mkdir()
    with np.load(npz) as z:
        for k in z.files:
            np.save(folder / f"{k}.npy", z[k])
    a = walker2d.load_walker2d(npz, seq_len=8)
    b = walker2d.load_walker2d(folder, seq_len=8)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    with pytest.raises(ValueError, match="does not exist"):
        walker2d.load_walker2d(tmp_path / "none.npz")


# --- XOR --------------------------------------------------------------------------------------


def test_event_xor_labels_are_the_parity_of_the_encoded_bits() -> None:
    rng = np.random.RandomState(5)
    for _ in range(300):
        events, elapsed, mask, label, bits = xor.event_sample(rng, 16)
        n = int(mask.sum())
        assert mask[:n].all()
        assert not mask[n:].any()
        assert (elapsed[:n] >= 1).all()
        assert label == sum(bits) % 2
        assert xor.decode_events(events, elapsed, mask) == bits
        # consecutive events differ, except a final flush of the last run
        ev = events[:n]
        assert (ev[1 : n - 1] != ev[: n - 2]).all()


def test_xor_sets_follow_the_protocol() -> None:
    s, info = xor.make_xor_set(200, 48736, pad_size=32)
    assert s.x.shape == (200, 32, 1)
    assert s.mask is not None
    assert set(np.unique(s.y).tolist()) == {0, 1}
    # elapsed times are whole steps divided by the pad size; padding has Δt 0
    steps = s.dt * 32
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-5)
    assert (s.dt[~s.mask] == 0).all()
    for i in range(200):
        assert xor.decode_events(s.x[i, :, 0], steps[i], s.mask[i]).count(1) % 2 == s.y[i]
    again, _ = xor.make_xor_set(200, 48736, pad_size=32)
    np.testing.assert_array_equal(again.x, s.x)  # a seed gives the same samples
    dense, _ = xor.make_xor_set(100, 1, pad_size=32, event_based=False)
    assert dense.mask is not None
    for i in range(100):
        n = int(dense.mask[i].sum())
        assert int(dense.x[i, :n, 0].sum()) % 2 == dense.y[i]
        np.testing.assert_allclose(dense.dt[i, :n], 1 / 32)
    assert info["size"] == 200


def test_xor_splits() -> None:
    data = xor.load_xor(train_size=50, valid_size=10, test_size=20)
    assert data.sizes() == {"train": 50, "valid": 10, "test": 20}
    assert data.spec.loss_on == "last"
    assert data.spec.n_outputs == 2


def test_xor_dt_unit_rescales_only_the_time_stamps() -> None:
    paper = xor.load_xor(train_size=50, valid_size=10, test_size=20)
    bits = xor.load_xor(train_size=50, valid_size=10, test_size=20, dt_unit=1)
    np.testing.assert_array_equal(bits.train.x, paper.train.x)
    np.testing.assert_allclose(bits.train.dt, paper.train.dt * 32, rtol=1e-6)
    np.testing.assert_allclose(bits.train.dt, np.round(bits.train.dt))  # whole bits
    assert bits.spec.default_dt == 1.0
    assert paper.spec.default_dt == 1 / 32
    with pytest.raises(ValueError, match="dt_unit"):
        xor.make_xor_set(5, 1, dt_unit=0)


# --- Lorenz -----------------------------------------------------------------------------------


def test_lorenz_targets_are_the_true_future_states() -> None:
    data = lorenz.load_lorenz(
        n_traj=8, n_points=300, keep=0.4, horizon=0.05, steps_ahead=2, window=8, stride=4
    )
    s = data.train
    assert s.y.shape[2] == 6
    x = s.x.reshape(-1, 3).astype(np.float64)
    y = s.y.reshape(-1, 6).astype(np.float64)
    h = 0.01 / 4
    one = lorenz.rk4(x, h, 5 * 4)  # 0.05 = 5 grid points of 4 substeps each
    two = lorenz.rk4(one, h, 5 * 4)
    np.testing.assert_allclose(y[:, :3], one, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(y[:, 3:], two, rtol=1e-3, atol=1e-3)


def test_lorenz_observation_gaps_vary_on_the_grid() -> None:
    data = lorenz.load_lorenz(n_traj=8, n_points=300, keep=0.4, window=8)
    dt = data.train.dt[:, 1:]  # the first Δt of a trajectory is the default
    k = dt / 0.01
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
    assert (k >= 1 - 1e-6).all()
    assert len(np.unique(np.round(k))) >= 4
    assert data.spec.default_dt == pytest.approx(0.01 / 0.4)
    assert data.info["trajectories"] == {"train": 5, "valid": 1, "test": 2}


# --- BasicMotions -----------------------------------------------------------------------------


def _write_ts(path: Path, n: int = 3, T: int = 5) -> np.ndarray:
    rng = np.random.RandomState(0)
    x = rng.standard_normal((n, T, 2)).round(4)
    lines = ["# comment", "@problemName Toy", "@classLabel true Up Down", "@data"]
    for i in range(n):
        dims = [",".join(f"{v:g}" for v in x[i, :, d]) for d in range(2)]
        lines.append(":".join([*dims, "Up" if i % 2 else "Down"]))
    path.write_text("\n".join(lines) + "\n")
    return x


def test_ts_parser(tmp_path: Path) -> None:
    x = _write_ts(tmp_path / "toy.ts")
    got, labels, classes = basic_motions.read_ts(tmp_path / "toy.ts")
    np.testing.assert_allclose(got, x, atol=1e-6)
    assert labels == ["Down", "Up", "Down"]
    assert classes == ("Up", "Down")


def test_subsampling_keeps_readings_with_their_real_gaps() -> None:
    rng = np.random.RandomState(0)
    x = np.arange(2 * 20 * 1, dtype=np.float32).reshape(2, 20, 1)
    xs, dt, mask = basic_motions.subsample(x, 0.5, rng)
    for i in range(2):
        n = int(mask[i].sum())
        idx = np.round(np.cumsum(dt[i, :n]) / 0.1).astype(int) - 1  # reading index
        np.testing.assert_array_equal(xs[i, :n, 0], x[i, idx, 0])
        assert (xs[i, n:] == 0).all()


@pytest.mark.skipif(
    importlib.util.find_spec("sktime") is None, reason="sktime (ships BasicMotions) not installed"
)
def test_basic_motions_from_the_sktime_wheel() -> None:
    data = basic_motions.load_basic_motions(keep=0.5)
    assert data.sizes() == {"train": 32, "valid": 8, "test": 40}
    assert data.train.x.shape[1:] == (100, 6)
    assert data.spec.output_names == ("Standing", "Running", "Walking", "Badminton")
    assert np.bincount(data.valid.y).tolist() == [2, 2, 2, 2]
    assert 35 < data.info["mean_kept"] < 65
    assert os.path.basename(data.info["source"]) == "BasicMotions"
