"""From a long-format table to a trained artifact, and scoring an artifact on new data.

``train_table`` is what ``liquid train`` runs: read and check the table, split it (by stream
or by time), cut windows with real Δt, fit the input normalisation (and target scale) on the
training rows, build the model, train it, and write the output directory::

    OUT/model/          the artifact (liquidcore.checkpoint format; served as is)
    OUT/metrics.json    configuration, data summary, per-epoch history, final metrics
    OUT/loss_curve.png  train and validation loss per epoch
    OUT/state/          the training state a --resume continues from

``evaluate_table`` is what ``liquid evaluate`` runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from liquidcore.data.longformat import Columns, Stream, read_table, streams_from_frame
from liquidcore.data.sequences import DatasetSplits, SequenceSet, Task, TaskSpec
from liquidcore.data.windows import (
    cut_windows,
    fit_normalization,
    fit_target_scale,
    median_dt,
    split_streams,
)
from liquidcore.train.artifacts import load_artifact, save_artifact
from liquidcore.train.config import DataConfig, ModelConfig, OptimConfig
from liquidcore.train.factory import build_model
from liquidcore.train.plots import plot_loss_curves
from liquidcore.train.protocol import count_parameters, count_parameters_in_use, loss_scale_of
from liquidcore.train.trainer import Log, evaluate, fit, resolve_device, seed_everything

MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
PLOT_FILE = "loss_curve.png"


@dataclass(frozen=True)
class TrainJob:
    """Everything ``liquid train`` was asked to do."""

    data: Path
    out: Path
    columns: Columns
    task: Task
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    windows: DataConfig = field(default_factory=DataConfig)
    valid_data: Path | None = None
    test_data: Path | None = None
    name: str = "model"
    resume: bool = False
    progress: bool | None = None
    stop_after: int | None = None
    max_batches: int | None = None


def _windows(
    streams: Sequence[Stream], cfg: DataConfig, default_dt: float, what: str
) -> SequenceSet:
    try:
        return cut_windows(
            streams,
            cfg.window,
            cfg.effective_stride,
            default_dt=default_dt,
            pad_short=cfg.pad_short,
        )
    except ValueError as exc:
        raise ValueError(f"{what} data: {exc}") from exc


def _load_streams(
    path: Path, columns: Columns, task: Task, classes: Sequence[str] | None, cfg: DataConfig
) -> tuple[list[Stream], tuple[str, ...], tuple[str, ...], tuple[str, ...] | None]:
    table = streams_from_frame(
        read_table(path),
        columns,
        task=task,
        classes=classes,
        horizon=cfg.horizon,
        time_unit=cfg.timestamps,
    )
    return table.streams, table.feature_names, table.output_names, table.classes


def prepare(job: TrainJob) -> tuple[DatasetSplits, dict[str, Any]]:
    """Read, check, split and window the data; returns the splits and the fitted statistics."""
    streams, feats, outs, classes = _load_streams(
        job.data, job.columns, job.task, None, job.windows
    )
    if classes is not None and len(classes) < 2:
        raise ValueError(
            f"target column {job.columns.targets[0]!r} has a single class {classes[0]!r}; "
            "classification needs at least two"
        )
    columns = Columns(job.columns.time, job.columns.targets, feats, job.columns.stream)
    if job.valid_data is not None:
        train_streams = streams
        valid_streams, *_ = _load_streams(job.valid_data, columns, job.task, classes, job.windows)
        split = "file"
    else:
        train_streams, valid_streams = split_streams(
            streams,
            job.windows.valid_fraction,
            by="time" if job.windows.split == "time" else "stream",
            seed=job.optim.seed,
        )
        split = job.windows.split
    default_dt = (
        job.windows.default_dt if job.windows.default_dt is not None else median_dt(train_streams)
    )
    time_unit = (
        job.windows.time_unit
        if job.windows.time_unit is not None
        else (default_dt if default_dt > 0 else 1.0)
    )
    spec = TaskSpec(
        task=job.task,
        n_features=len(feats),
        n_outputs=len(classes) if classes is not None else len(outs),
        loss_on=job.windows.loss_on,  # type: ignore[arg-type]
        feature_names=feats,
        output_names=outs,
        time_unit=time_unit,
        default_dt=default_dt,
    )
    train = _windows(train_streams, job.windows, default_dt, "training")
    valid = _windows(valid_streams, job.windows, default_dt, "validation")
    test = None
    if job.test_data is not None:
        test_streams, *_ = _load_streams(job.test_data, columns, job.task, classes, job.windows)
        test = _windows(test_streams, job.windows, default_dt, "test")
    stats: dict[str, Any] = {"input_mean": None, "input_std": None}
    if job.windows.normalize_inputs:
        mean, std = fit_normalization(train_streams)
        stats.update(input_mean=mean.tolist(), input_std=std.tolist())
    stats.update(target_mean=None, target_std=None)
    if job.task == "regression" and job.windows.scale_targets:
        tmean, tstd = fit_target_scale(train_streams)
        stats.update(target_mean=tmean.tolist(), target_std=tstd.tolist())
    summary: dict[str, Any] = {
        "split": split,
        "streams": {"train": len(train_streams), "valid": len(valid_streams)},
        "rows": {
            "train": int(sum(len(s) for s in train_streams)),
            "valid": int(sum(len(s) for s in valid_streams)),
        },
        "windows": {"train": len(train), "valid": len(valid)},
        "classes": list(classes) if classes is not None else None,
        "columns": {
            "stream": columns.stream,
            "time": columns.time,
            "features": list(feats),
            "targets": list(columns.targets),
        },
    }
    if test is not None:
        summary["windows"]["test"] = len(test)
    splits = DatasetSplits(spec, train, valid, test, info=summary)
    return splits, stats


def _clean(value: Any) -> Any:
    """JSON without NaN/inf (they become null), so every JSON reader accepts the file."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    return value


def write_json(path: Path, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(body), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def train_table(job: TrainJob, log: Log | None = None) -> dict[str, Any]:
    """Run a training job end to end; returns what ``metrics.json`` holds."""
    say: Log = log or (lambda _line: None)
    started = time.perf_counter()
    splits, stats = prepare(job)
    spec = splits.spec
    info = splits.info
    say(
        f"data: {info['streams']['train']} train / {info['streams']['valid']} validation "
        f"streams ({info['split']} split), {len(splits.train)} / {len(splits.valid)} windows "
        f"of {job.windows.window}; Δt default {spec.default_dt:.6g} s, time unit "
        f"{spec.time_unit:.6g} s"
    )
    metadata = {
        "training": {
            "task": spec.task,
            "loss_on": spec.loss_on,
            "columns": info["columns"],
            "classes": info["classes"],
            "window": job.windows.window,
            "stride": job.windows.effective_stride,
            "horizon": job.windows.horizon,
            "pad_short": job.windows.pad_short,
            "timestamps": job.windows.timestamps,
            "model": job.model.to_dict(),
        }
    }
    seed_everything(job.optim.seed)
    model = build_model(
        job.model,
        spec,
        input_mean=stats["input_mean"],
        input_std=stats["input_std"],
        target_mean=stats["target_mean"],
        target_std=stats["target_std"],
        name=job.name,
        metadata=metadata,
    )
    n_params, n_in_use = count_parameters(model), count_parameters_in_use(model)
    say(
        f"model: {job.model.kind} ({type(model).__name__}), {n_params:,} trainable parameters"
        f" ({n_in_use:,} in use)"
    )
    fingerprint = {
        "model": job.model.to_dict(),
        "data": job.windows.to_dict(),
        "columns": info["columns"],
        "task": spec.task,
        "sizes": splits.sizes(),
        "name": job.name,
    }
    result = fit(
        model,
        splits,
        job.optim,
        run_dir=job.out,
        resume=job.resume,
        progress=job.progress,
        log=say,
        stop_after=job.stop_after,
        max_batches=job.max_batches,
        fingerprint=fingerprint,
    )
    device = resolve_device(job.optim.device)
    scale = loss_scale_of(model, spec.n_outputs).to(device) if spec.task == "regression" else None
    final: dict[str, dict[str, float]] = {}
    for part, data in (("train", splits.train), ("valid", splits.valid), ("test", splits.test)):
        if data is not None:
            final[part] = evaluate(
                model, data, spec, batch_size=job.optim.eval_batch_size, device=device, scale=scale
            )
    model.to("cpu")
    version = save_artifact(model, job.out / MODEL_DIR)
    plot = plot_loss_curves(
        result.history,
        job.out / PLOT_FILE,
        title=f"{job.name}: {job.model.kind} on {job.data.name}",
        best_epoch=result.best_epoch,
    )
    body = {
        "name": job.name,
        "model_version": version,
        "artifact": str(job.out / MODEL_DIR),
        "plot": str(plot),
        "task": spec.to_dict(),
        "config": {
            "model": job.model.to_dict(),
            "train": job.optim.to_dict(),
            "data": job.windows.to_dict(),
        },
        "data": {"file": str(job.data), **info},
        "parameters": n_params,
        "parameters_in_use": n_in_use,
        "metrics": final,
        **result.to_dict(),
        "wall_seconds": time.perf_counter() - started,
    }
    write_json(job.out / METRICS_FILE, body)
    status = "finished" if result.finished else "paused (resume with --resume)"
    parts = "; ".join(
        f"{part}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()) for part, m in final.items()
    )
    say(f"{status} after {result.epochs_done} epoch(s), best epoch {result.best_epoch}; {parts}")
    say(f"wrote {job.out / MODEL_DIR} (version {version}), {job.out / METRICS_FILE}, {plot}")
    return body


@dataclass(frozen=True)
class EvalJob:
    """What ``liquid evaluate`` was asked: an artifact, a table and optional overrides."""

    artifact: Path
    data: Path
    stream: str | None = None
    time: str | None = None
    targets: tuple[str, ...] | None = None
    window: int | None = None
    stride: int | None = None
    full_streams: bool = False
    loss_on: str | None = None
    batch_size: int = 512
    device: str = "cpu"


def _training_meta(model: nn.Module) -> dict[str, Any]:
    meta = getattr(model, "metadata", None) or {}
    training = meta.get("training") if isinstance(meta, dict) else None
    return training if isinstance(training, dict) else {}


def evaluate_table(job: EvalJob) -> dict[str, Any]:
    """Score an artifact on a table: MSE/MAE (regression) or accuracy/macro-F1 (classes).

    Columns, task, classes and windows default to what the model was trained with (recorded in
    its metadata). ``full_streams`` scores every stream as one sequence from its first row,
    as the service would run it.
    """
    device = resolve_device(job.device)
    model = load_artifact(job.artifact, device=device)
    training = _training_meta(model)
    cols = training.get("columns") or {}
    head_kind = getattr(getattr(model, "head", None), "kind", "regression")
    task_name = str(training.get("task") or head_kind)
    if task_name not in ("regression", "classification"):
        raise ValueError(f"the artifact records an unknown task {task_name!r}")
    task: Task = "classification" if task_name == "classification" else "regression"
    feature_names = getattr(model, "feature_names", None) or cols.get("features")
    time_col = job.time or cols.get("time")
    targets = job.targets or tuple(cols.get("targets") or ())
    if not time_col or not targets:
        raise ValueError(
            "the artifact does not record its time and target columns; pass --time and --target"
        )
    if not feature_names:
        raise ValueError("the artifact does not record its feature names; it cannot be scored")
    stream_col = job.stream if job.stream is not None else cols.get("stream")
    columns = Columns(time_col, tuple(targets), tuple(feature_names), stream_col)
    classes = training.get("classes") or (
        getattr(model, "output_names", None) if task == "classification" else None
    )
    horizon = int(training.get("horizon", 0))
    table = streams_from_frame(
        read_table(job.data),
        columns,
        task=task,
        classes=classes,
        horizon=horizon,
        time_unit=str(training.get("timestamps", "s")),
    )
    default_dt = float(getattr(model, "default_dt", 1.0))
    loss_on = job.loss_on or training.get("loss_on", "all")
    if job.full_streams:
        length = max(len(s) for s in table.streams)
        windows = cut_windows(table.streams, length, length, default_dt=default_dt, pad_short=True)
    else:
        window = job.window or int(training.get("window", 0)) or None
        if window is None:
            raise ValueError("the artifact does not record its window length; pass --window")
        stride = job.stride or int(training.get("stride", max(1, window // 2)))
        windows = cut_windows(
            table.streams,
            window,
            stride,
            default_dt=default_dt,
            pad_short=bool(training.get("pad_short", False)),
        )
    n_out = int(getattr(model, "output_size", 0) or len(targets))
    spec = TaskSpec(
        task=task,
        n_features=len(feature_names),
        n_outputs=n_out,
        loss_on=loss_on,  # type: ignore[arg-type]
        time_unit=float(getattr(model, "time_unit", 1.0)),
        default_dt=default_dt,
    )
    scale = loss_scale_of(model, n_out).to(device) if task == "regression" else None
    metrics = evaluate(model, windows, spec, batch_size=job.batch_size, device=device, scale=scale)
    return {
        "artifact": str(job.artifact),
        "model_version": getattr(model, "version", None),
        "data": str(job.data),
        "task": task,
        "loss_on": loss_on,
        "streams": len(table.streams),
        "windows": len(windows),
        "scored_steps": int(windows.valid_mask().sum() if loss_on == "all" else len(windows)),
        "mode": "full_streams" if job.full_streams else "windows",
        "metrics": metrics,
    }
