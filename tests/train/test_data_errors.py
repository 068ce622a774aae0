"""Bad data is refused with a message that names the column, the stream and the row: as a
``ValueError`` from the library, as one line and exit code 2 from ``liquid train``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from liquidcore.data import Columns, read_table, streams_from_frame
from liquidcore.train.cli import main

COLUMNS = Columns(time="ts", targets=("y",), features=("u", "v"), stream="sensor")
BASE = ["--stream", "sensor", "--time", "ts", "--target", "y", "--features", "u,v"]


def _drop_u(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["u"])


def _unsorted(df: pd.DataFrame) -> pd.DataFrame:
    rows = df.index[df["sensor"] == "s2"]
    df.loc[rows[[3, 4]], "ts"] = df.loc[rows[[4, 3]], "ts"].to_numpy()
    return df


def _duplicate(df: pd.DataFrame) -> pd.DataFrame:
    rows = df.index[df["sensor"] == "s1"]
    df.loc[rows[5], "ts"] = df.loc[rows[4], "ts"]
    return df


def _nan_feature(df: pd.DataFrame) -> pd.DataFrame:
    rows = df.index[df["sensor"] == "s3"]
    df.loc[rows[7], "v"] = np.nan
    return df


def _inf_target(df: pd.DataFrame) -> pd.DataFrame:
    rows = df.index[df["sensor"] == "s4"]
    df.loc[rows[2], "y"] = np.inf
    return df


def _text_feature(df: pd.DataFrame) -> pd.DataFrame:
    df["u"] = df["u"].astype(object)
    df.loc[df.index[10], "u"] = "n/a?"
    return df


def _bad_time(df: pd.DataFrame) -> pd.DataFrame:
    df["ts"] = df["ts"].astype(object)
    df.loc[df.index[3], "ts"] = "yesterday-ish"
    return df


# (name, how to break the table, words the one-line message must contain)
CASES: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], tuple[str, ...]]] = [
    ("missing column", _drop_u, ("missing column", "'u'")),
    ("unsorted", _unsorted, ("out-of-order", "'s2'", "'ts'")),
    ("duplicate", _duplicate, ("duplicate", "'s1'", "'ts'")),
    ("nan", _nan_feature, ("NaN", "'v'", "'s3'")),
    ("inf", _inf_target, ("infinite", "'y'", "'s4'")),
    ("not numeric", _text_feature, ("not numeric", "'u'", "n/a?")),
    ("bad timestamp", _bad_time, ("'ts'", "yesterday-ish")),
]


@pytest.mark.parametrize(("name", "breaker", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_table_raises_value_error_naming_the_place(
    frame: pd.DataFrame,
    name: str,
    breaker: Callable[[pd.DataFrame], pd.DataFrame],
    words: tuple[str, ...],
) -> None:
    bad = breaker(frame.copy())
    with pytest.raises(ValueError) as info:
        streams_from_frame(bad, COLUMNS, task="regression")
    for w in words:
        assert w in str(info.value), (name, str(info.value))


@pytest.mark.parametrize(("name", "breaker", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_table_gives_one_line_and_exit_2(
    tmp_path: Path,
    frame: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
    name: str,
    breaker: Callable[[pd.DataFrame], pd.DataFrame],
    words: tuple[str, ...],
) -> None:
    path = tmp_path / "bad.csv"
    breaker(frame.copy()).to_csv(path, index=False)
    code = main(["train", str(path), "--out", str(tmp_path / "run"), *BASE, "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("liquid train: error: ")
    for w in words:
        assert w in err[0], (name, err[0])
    assert not (tmp_path / "run" / "model").exists()


def test_too_few_rows_for_one_window(
    csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", str(csv_path), "--out", str(tmp_path / "r"), *BASE, "--window", "500"])
    err = capsys.readouterr().err
    assert code == 2
    assert "too few rows for one window" in err
    assert "500" in err
    assert "60" in err  # the longest stream's length


def test_classification_with_one_class_is_refused(
    tmp_path: Path, frame: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    frame["label"] = "same"
    path = tmp_path / "one.csv"
    frame.to_csv(path, index=False)
    args = ["--stream", "sensor", "--time", "ts", "--target", "label", "--features", "u,v"]
    code = main(
        ["train", str(path), "--out", str(tmp_path / "r"), *args, "--task", "classification"]
    )
    assert code == 2
    assert "single class" in capsys.readouterr().err


def test_missing_file_and_unknown_suffix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r"), *BASE]) == 2
    assert "does not exist" in capsys.readouterr().err
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(ValueError, match="unknown data file type"):
        read_table(odd)


def test_usage_errors_exit_2_with_one_line(
    csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(csv_path), "--out", str(tmp_path / "r")]) == 2  # no --time
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("liquid train: error:")
    assert (
        main(
            ["train", str(csv_path), "--out", str(tmp_path / "r"), *BASE, "--model", "transformer"]
        )
        == 2
    )
    assert "invalid choice" in capsys.readouterr().err
    assert main(["train", str(csv_path), "--out", str(tmp_path / "r"), *BASE, "--lr", "-1"]) == 2
    assert "lr must be > 0" in capsys.readouterr().err


def test_unknown_config_key_is_refused(
    csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"model": {"unitz": 8}}')
    code = main(["train", str(csv_path), "--out", str(tmp_path / "r"), *BASE, "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2
    assert "unitz" in err
    assert "valid keys" in err


def test_datetime_strings_parse_to_utc_epoch_seconds() -> None:
    df = pd.DataFrame(
        {
            "t": ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", "2024-01-01 00:00:01.5"],
            "x": [1.0, 2.0, 3.0],
            "y": [0.0, 1.0, 2.0],
        }
    )
    # Row 2 (01:00+01:00) is 00:00 UTC, the same instant as row 1: a duplicate.
    with pytest.raises(ValueError, match="duplicate"):
        streams_from_frame(df, Columns("t", ("y",), ("x",)), task="regression")
    df.loc[1, "t"] = "2024-01-01T01:00:00+00:30"  # 00:30 UTC
    df.loc[2, "t"] = "2024-01-01 01:00:00"  # naive: UTC
    table = streams_from_frame(df, Columns("t", ("y",), ("x",)), task="regression")
    (s,) = table.streams
    base = 1704067200.0  # 2024-01-01T00:00:00Z
    np.testing.assert_allclose(s.t, [base, base + 1800.0, base + 3600.0])


def test_horizon_shifts_targets_within_each_stream(frame: pd.DataFrame) -> None:
    table = streams_from_frame(frame, COLUMNS, task="regression", horizon=2)
    plain = streams_from_frame(frame, COLUMNS, task="regression")
    for s, p in zip(table.streams, plain.streams, strict=True):
        assert len(s) == len(p) - 2
        np.testing.assert_array_equal(s.y, p.y[2:])
        np.testing.assert_array_equal(s.x, p.x[:-2])


def test_labels_map_to_sorted_classes(frame: pd.DataFrame) -> None:
    cols = Columns("ts", ("label",), ("u", "v"), "sensor")
    table = streams_from_frame(frame, cols, task="classification")
    assert table.classes == ("high", "low")
    got = np.concatenate([s.y for s in table.streams])
    assert set(got.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="not one of the model's classes"):
        streams_from_frame(frame, cols, task="classification", classes=["high"])


def test_numeric_timestamps_in_milliseconds(frame: pd.DataFrame) -> None:
    ms = frame.assign(ts=(frame["ts"] * 1000).round())
    table = streams_from_frame(ms, COLUMNS, task="regression", time_unit="ms")
    plain = streams_from_frame(frame, COLUMNS, task="regression")
    for a, b in zip(table.streams, plain.streams, strict=True):
        np.testing.assert_allclose(a.t, b.t, atol=1e-3)
    with pytest.raises(ValueError, match="unknown time unit"):
        streams_from_frame(frame, COLUMNS, task="regression", time_unit="min")
