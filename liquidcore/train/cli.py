"""``liquid train`` and ``liquid evaluate``.

``main(argv) -> int`` takes the arguments after ``liquid`` (``["train", ...]`` or
``["evaluate", ...]``) and never raises: bad data or options print one line
``liquid <command>: error: ...`` on stderr and return 2; a diverged training returns 1; an
interrupt returns 130 (a run with an output directory can then be resumed with ``--resume``).

Settings come from, in increasing priority: defaults, a JSON/YAML ``--config`` file (sections
``model``, ``train``, ``data``), and flags given on the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liquidcore.data.longformat import Columns
from liquidcore.data.sequences import LOSS_ON, TASKS
from liquidcore.data.windows import SPLIT_BY
from liquidcore.train.config import (
    CFC_MODES,
    MODEL_KINDS,
    MONITORS,
    OPTIMIZERS,
    SCHEDULES,
    TIMESTAMP_UNITS,
    WIRINGS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    load_config_file,
)

# flag dest -> (config section, key)
_MODEL_FLAGS = {
    "model": "kind",
    "units": "units",
    "mode": "mode",
    "backbone_units": "backbone_units",
    "backbone_layers": "backbone_layers",
    "backbone_activation": "backbone_activation",
    "backbone_dropout": "backbone_dropout",
    "wiring": "wiring",
    "motor_neurons": "motor_neurons",
    "sparsity": "sparsity",
    "wiring_seed": "wiring_seed",
    "mixed_memory": "mixed_memory",
    "ode_unfolds": "ode_unfolds",
    "ode_steps": "ode_steps",
}
_TRAIN_FLAGS = {
    k: k
    for k in (
        "epochs",
        "batch_size",
        "lr",
        "optimizer",
        "weight_decay",
        "schedule",
        "decay",
        "min_lr_ratio",
        "clip_norm",
        "patience",
        "monitor",
        "seed",
        "device",
    )
}
_DATA_FLAGS = {
    k: k
    for k in (
        "window",
        "stride",
        "valid_fraction",
        "split",
        "loss_on",
        "horizon",
        "pad_short",
        "normalize_inputs",
        "scale_targets",
        "default_dt",
        "time_unit",
        "timestamps",
    )
}


class _UsageError(Exception):
    """argparse's complaint, turned into our one-line error and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _UsageError(message)


def _names(values: Sequence[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return tuple(out) or None


def _columns_args(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("columns")
    g.add_argument("--stream", help="stream id column (omit: the whole table is one stream)")
    g.add_argument(
        "--time", required=required, help="timestamp column: epoch seconds or date-times"
    )
    g.add_argument(
        "--target",
        action="append",
        required=required,
        help="target column(s); repeat or comma-separate (classification: one label column)",
    )
    if required:
        g.add_argument(
            "--features",
            action="append",
            help="feature columns (default: every other numeric column)",
        )


def build_parser() -> argparse.ArgumentParser:
    root = _Parser(prog="liquid", description="Train and evaluate liquid models.")
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train a model on long-format timestamped data (CSV or Parquet)",
        description="Train a liquid (CfC/LTC) model or a baseline on long-format data: one "
        "row per (stream, timestamp) with feature and target columns. Writes OUT/model (the "
        "artifact), OUT/metrics.json, OUT/loss_curve.png and a resumable OUT/state.",
    )
    t.add_argument("data", type=Path, help="training table (.csv, .tsv, .parquet)")
    t.add_argument("--out", type=Path, required=True, help="output (run) directory")
    t.add_argument("--task", choices=TASKS, default="regression")
    _columns_args(t, required=True)
    t.add_argument("--valid-data", type=Path, help="validation table (default: split DATA)")
    t.add_argument("--test-data", type=Path, help="held-out table scored after training")
    t.add_argument("--config", type=Path, help="JSON/YAML file with model/train/data sections")
    t.add_argument("--name", default=None, help="model name (default: the output dir's name)")

    m = t.add_argument_group("model")
    m.add_argument("--model", choices=MODEL_KINDS, help="cell or baseline (default cfc)")
    m.add_argument("--units", type=int, help="neurons / hidden units (default 64)")
    m.add_argument("--mode", choices=CFC_MODES, help="CfC mode")
    m.add_argument("--backbone-units", type=int)
    m.add_argument("--backbone-layers", type=int)
    m.add_argument("--backbone-activation")
    m.add_argument("--backbone-dropout", type=float)
    m.add_argument("--wiring", choices=WIRINGS, help="wiring of ltc / wired_cfc (default ncp)")
    m.add_argument("--motor-neurons", type=int)
    m.add_argument("--sparsity", type=float)
    m.add_argument("--wiring-seed", type=int)
    m.add_argument("--mixed-memory", action="store_true", default=None)
    m.add_argument("--ode-unfolds", type=int, help="LTC solver unfolds per step")
    m.add_argument("--ode-steps", type=int, help="ODE-RNN baseline RK4 steps per interval")

    o = t.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int)
    o.add_argument("--batch-size", type=int)
    o.add_argument("--lr", type=float)
    o.add_argument("--optimizer", choices=OPTIMIZERS)
    o.add_argument("--weight-decay", type=float)
    o.add_argument("--schedule", choices=SCHEDULES)
    o.add_argument("--decay", type=float, help="exponential schedule: LR factor per epoch")
    o.add_argument("--min-lr-ratio", type=float, help="cosine schedule: final LR / LR")
    o.add_argument("--clip-norm", type=float, help="gradient norm clip (0: off)")
    o.add_argument("--patience", type=int, help="early stopping patience in epochs (0: off)")
    o.add_argument("--monitor", choices=MONITORS, help="validation metric for the best model")
    o.add_argument("--seed", type=int)
    o.add_argument("--device", help="cpu, cuda, cuda:N or auto")

    d = t.add_argument_group("windows")
    d.add_argument("--window", type=int, help="window length in rows (default 32)")
    d.add_argument("--stride", type=int, help="rows between window starts (default window/2)")
    d.add_argument("--valid-fraction", type=float)
    d.add_argument("--split", choices=SPLIT_BY, help="hold out whole streams or each one's end")
    d.add_argument("--loss-on", choices=LOSS_ON, help="score every step or the last one")
    d.add_argument("--horizon", type=int, help="predict the targets this many rows ahead")
    d.add_argument("--pad-short", action="store_true", default=None)
    d.add_argument("--no-normalize", dest="normalize_inputs", action="store_false", default=None)
    d.add_argument("--no-scale-targets", dest="scale_targets", action="store_false", default=None)
    d.add_argument("--default-dt", type=float, help="Δt of a stream's first row, seconds")
    d.add_argument("--time-unit", type=float, help="seconds per model time unit")
    d.add_argument(
        "--timestamps",
        choices=TIMESTAMP_UNITS,
        help="unit of numeric timestamps: epoch seconds (default), ms, us or ns",
    )

    r = t.add_argument_group("run")
    r.add_argument("--resume", action="store_true", help="continue the run in --out")
    r.add_argument("--stop-after", type=int, help="stop after N epochs of this invocation")
    r.add_argument("--max-batches", type=int, help="cap batches per epoch (smoke runs)")
    r.add_argument("--threads", type=int, help="torch CPU threads")
    bar = r.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None)
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    r.add_argument("--quiet", action="store_true", help="no per-epoch lines")

    e = sub.add_parser(
        "evaluate",
        help="score a model artifact on held-out data",
        description="Score an artifact on a table: MSE/MAE or accuracy/macro-F1. Columns, "
        "windows and classes default to those the model was trained with.",
    )
    e.add_argument("artifact", type=Path, help="model artifact directory")
    e.add_argument("data", type=Path, help="table to score (.csv, .tsv, .parquet)")
    _columns_args(e, required=False)
    e.add_argument("--window", type=int)
    e.add_argument("--stride", type=int)
    e.add_argument("--loss-on", choices=LOSS_ON)
    e.add_argument("--full-streams", action="store_true", help="score each stream as one sequence")
    e.add_argument("--batch-size", type=int, default=512)
    e.add_argument("--device", default="cpu")
    e.add_argument("--output", type=Path, help="also write the metrics JSON here")
    e.add_argument("--threads", type=int, help="torch CPU threads")
    return root


def _section(args: argparse.Namespace, flags: dict[str, str], base: dict[str, Any]) -> dict:
    out = dict(base)
    for dest, key in flags.items():
        value = getattr(args, dest, None)
        if value is not None:
            out[key] = value
    return out


def job_from_args(args: argparse.Namespace) -> Any:
    from liquidcore.train.pipeline import TrainJob

    file = load_config_file(args.config) if args.config else {"model": {}, "train": {}, "data": {}}
    model = ModelConfig.from_dict(_section(args, _MODEL_FLAGS, file["model"]))
    optim = OptimConfig.from_dict(_section(args, _TRAIN_FLAGS, file["train"]))
    data = DataConfig.from_dict(_section(args, _DATA_FLAGS, file["data"]))
    targets = _names(args.target)
    if targets is None:
        raise ValueError("name at least one --target column")
    columns = Columns(args.time, targets, _names(args.features), args.stream)
    return TrainJob(
        data=args.data,
        out=args.out,
        columns=columns,
        task=args.task,
        model=model,
        optim=optim,
        windows=data,
        valid_data=args.valid_data,
        test_data=args.test_data,
        name=args.name or args.out.resolve().name or "model",
        resume=args.resume,
        progress=args.progress,
        stop_after=args.stop_after,
        max_batches=args.max_batches,
    )


def _run_train(args: argparse.Namespace) -> int:
    from liquidcore.train.pipeline import train_table

    job = job_from_args(args)
    for what, value in (("--stop-after", args.stop_after), ("--max-batches", args.max_batches)):
        if value is not None and value < 1:
            raise ValueError(f"{what} must be >= 1; got {value}")

    def log(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    train_table(job, log=log)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from liquidcore.train.pipeline import EvalJob, evaluate_table, write_json

    job = EvalJob(
        artifact=args.artifact,
        data=args.data,
        stream=args.stream,
        time=args.time,
        targets=_names(args.target),
        window=args.window,
        stride=args.stride,
        full_streams=args.full_streams,
        loss_on=args.loss_on,
        batch_size=args.batch_size,
        device=args.device,
    )
    result = evaluate_table(job)
    if args.output is not None:
        write_json(args.output, result)
    print(json.dumps(result, indent=2, allow_nan=True))
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``liquid train ...`` / ``liquid evaluate ...``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = argv[0] if argv and argv[0] in ("train", "evaluate") else None
    prog = f"liquid {command}" if command else "liquid"
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        print(f"(see '{prog} --help')", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if isinstance(exc.code, int) else 0
    prog = f"liquid {args.command}"
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(int(args.threads))
    from liquidcore.train.trainer import TrainingDivergedError

    try:
        if args.command == "train":
            return _run_train(args)
        return _run_evaluate(args)
    except TrainingDivergedError as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = " (continue with --resume)" if args.command == "train" else ""
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
