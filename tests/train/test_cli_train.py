"""``liquid train`` / ``liquid evaluate`` end to end on small generated tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from liquidcore import load_model
from liquidcore.train.artifacts import load_artifact
from liquidcore.train.cli import main

COLS = ["--stream", "sensor", "--time", "ts", "--target", "y", "--features", "u,v"]
SMALL = ["--units", "8", "--backbone-units", "16", "--window", "16", "--threads", "1"]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_train_writes_artifact_metrics_and_plot_and_learns(
    csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code = main(
        [
            "train",
            str(csv_path),
            "--out",
            str(run),
            *COLS,
            *SMALL,
            "--epochs",
            "6",
            "--lr",
            "0.02",
            "--name",
            "demo",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "trainable parameters" in out
    m = _metrics(run)
    assert m["parameters_in_use"] == m["parameters"] > 0  # a dense CfC: nothing masked
    hist = m["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert hist[-1]["train_loss"] < 0.8 * hist[0]["train_loss"]
    assert hist[-1]["valid_loss"] < hist[0]["valid_loss"]
    assert m["finished"] is True
    assert m["data"]["streams"] == {"train": 5, "valid": 1}
    assert set(m["metrics"]) == {"train", "valid"}
    assert {"mse", "mae", "loss"} <= set(m["metrics"]["valid"])
    png = (run / "loss_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    model = load_model(run / "model")
    assert model.version == m["model_version"]
    assert model.feature_names == ["u", "v"]
    assert model.output_names == ["y"]
    # Inputs are normalised in the model; regression outputs come back in target units.
    assert model.normalized
    assert model.head.scaled
    assert model.metadata["training"]["window"] == 16
    # The median gap is the default Δt and the time unit.
    gaps = pd.read_csv(csv_path).groupby("sensor")["ts"].diff().dropna()
    assert model.default_dt == pytest.approx(float(gaps.median()), rel=0.2)


def test_resume_matches_an_uninterrupted_run(csv_path: Path, tmp_path: Path) -> None:
    args = [
        *COLS,
        *SMALL,
        "--epochs",
        "4",
        "--backbone-dropout",
        "0.2",
        "--lr",
        "0.01",
        "--name",
        "same",
        "--quiet",
    ]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["train", str(csv_path), "--out", str(whole), *args]) == 0
    assert main(["train", str(csv_path), "--out", str(parts), *args, "--stop-after", "2"]) == 0
    paused = _metrics(parts)
    assert paused["finished"] is False
    assert paused["epochs_done"] == 2
    # Without --resume an existing run is not overwritten.
    assert main(["train", str(csv_path), "--out", str(parts), *args]) == 2
    # A changed setting that would change the result is refused.
    assert (
        main(["train", str(csv_path), "--out", str(parts), *args, "--resume", "--lr", "0.5"]) == 2
    )
    assert main(["train", str(csv_path), "--out", str(parts), *args, "--resume"]) == 0
    a, b = _metrics(whole), _metrics(parts)
    drop = ("seconds", "train_seconds")
    ha = [{k: v for k, v in h.items() if k not in drop} for h in a["history"]]
    hb = [{k: v for k, v in h.items() if k not in drop} for h in b["history"]]
    assert ha == hb
    wa = load_file(str(whole / "model" / "weights.safetensors"))
    wb = load_file(str(parts / "model" / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert bool((wa[k] == wb[k]).all()), k
    assert a["model_version"] == b["model_version"]


def test_evaluate_scores_an_artifact(
    csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert (
        main(["train", str(csv_path), "--out", str(run), *COLS, *SMALL, "--epochs", "2", "--quiet"])
        == 0
    )
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", str(run / "model"), str(csv_path), "--output", str(out_json)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out_json.read_text())
    assert printed["metrics"] == saved["metrics"]
    assert printed["mode"] == "windows"
    assert printed["streams"] == 6
    assert printed["metrics"]["mse"] > 0
    assert main(["evaluate", str(run / "model"), str(csv_path), "--full-streams"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["windows"] == 6
    assert full["scored_steps"] == 6 * 60
    assert main(["evaluate", str(tmp_path / "missing"), str(csv_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_classification_from_parquet_with_last_step_loss_and_a_baseline(
    tmp_path: Path, frame: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    cols = ["--stream", "sensor", "--time", "ts", "--target", "label", "--features", "u,v"]
    run = tmp_path / "cls"
    code = main(
        [
            "train",
            str(path),
            "--out",
            str(run),
            *cols,
            "--task",
            "classification",
            "--loss-on",
            "last",
            "--model",
            "gru_d",
            "--units",
            "8",
            "--window",
            "12",
            "--epochs",
            "2",
            "--monitor",
            "accuracy",
            "--split",
            "time",
            "--quiet",
        ]
    )
    assert code == 0
    m = _metrics(run)
    assert m["task"]["task"] == "classification"
    assert m["data"]["classes"] == ["high", "low"]
    assert {"accuracy", "f1"} <= set(m["metrics"]["valid"])
    model = load_artifact(run / "model")
    assert type(model.cell).__name__ == "GRUDCell"
    assert model.version == m["model_version"]
    capsys.readouterr()
    assert main(["evaluate", str(run / "model"), str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    assert result["loss_on"] == "last"


def test_config_file_with_flag_overrides(csv_path: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model:\n  kind: ltc\n  units: 8\n  wiring: ncp\n  ode_unfolds: 2\n"
        "train:\n  epochs: 1\n  lr: 0.01\n  schedule: cosine\n"
        "data:\n  window: 8\n  stride: 8\n"
    )
    run = tmp_path / "ltc"
    assert (
        main(
            [
                "train",
                str(csv_path),
                "--out",
                str(run),
                *COLS,
                "--config",
                str(cfg),
                "--units",
                "6",
                "--quiet",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    m = _metrics(run)
    assert m["config"]["model"]["kind"] == "ltc"
    assert m["config"]["model"]["units"] == 6  # the flag wins over the file
    assert m["config"]["train"]["schedule"] == "cosine"
    model = load_model(run / "model")
    assert model.cell.get_config()["type"] in ("ltc", "mixed_memory")


def test_millisecond_timestamps_give_the_same_time_scale(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    path = tmp_path / "ms.csv"
    frame.assign(ts=(frame["ts"] * 1000).round().astype("int64")).to_csv(path, index=False)
    run = tmp_path / "ms"
    args = [*COLS, *SMALL, "--epochs", "1", "--timestamps", "ms", "--quiet"]
    assert main(["train", str(path), "--out", str(run), *args]) == 0
    seconds = tmp_path / "s.csv"
    frame.to_csv(seconds, index=False)
    ref = tmp_path / "s"
    assert (
        main(["train", str(seconds), "--out", str(ref), *COLS, *SMALL, "--epochs", "1", "--quiet"])
        == 0
    )
    got, want = load_model(run / "model"), load_model(ref / "model")
    assert got.default_dt == pytest.approx(want.default_dt, abs=1e-3)
    assert got.time_unit == pytest.approx(want.time_unit, abs=1e-3)
    assert main(["evaluate", str(run / "model"), str(path)]) == 0
