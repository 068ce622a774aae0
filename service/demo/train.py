"""Train the demo model: per-event activity recognition from irregular smartwatch IMU readings.

    python -m service.demo.train                    # writes service/demo_model/ (1-2 min)
    python -m service.demo.train --epochs 1 --out /tmp/demo   # a smoke run

Data: BasicMotions from the sktime package (see :mod:`service.demo.recordings`). The 40
training recordings are split into 32 for training and 8 (2 per activity) for validation; each
training recording is drawn ``--draws`` times with a different keep probability (0.35 to 0.95),
so the model sees many Δt patterns. The 40 test recordings are scored once, in the fixed draw
that ``liquid demo`` replays (keep 0.6), at every event (all-event accuracy) and at each
recording's last event (last-event accuracy).

Model: a dense CfC (16 units, one 32-unit SiLU backbone layer) with a 4-class readout head,
inputs normalised with the training readings' mean and std, time unit 0.1 s. Trained with the
project's harness (``liquidcore.train.fit``): Adam, cosine schedule, cross-entropy at every
event, the weights of the epoch with the lowest validation loss kept. Seeded and run on one CPU
thread, so a rerun on the same machine and torch build writes the same artifact (same version).

The script writes the artifact (``config.json``, ``weights.safetensors``) and ``MODEL_CARD.md``
with the numbers it printed.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liquidcore.checkpoint import save_model
from liquidcore.data import DatasetSplits, SequenceSet, TaskSpec
from liquidcore.model import LiquidModel
from liquidcore.train import ModelConfig, OptimConfig, build_model, count_parameters, evaluate, fit
from service.demo import recordings as rec
from service.settings import DEMO_MODEL_DIR

NAME = "demo"
CARD_FILE = "MODEL_CARD.md"
MAX_BYTES = 1024 * 1024
MODEL = ModelConfig(
    kind="cfc", units=16, backbone_units=32, backbone_layers=1, backbone_activation="silu"
)
SPLIT_SEED = 7  # which training recordings are held out for validation
DRAW_SEED = 1_000  # irregular draws of the training recordings: DRAW_SEED + draw index
VALID_PER_CLASS = 2
KEEP_RANGE = (0.35, 0.95)


@dataclass(frozen=True)
class Options:
    out: Path
    epochs: int = 30
    draws: int = 8
    batch_size: int = 16
    lr: float = 0.01
    seed: int = 0
    max_batches: int | None = None
    progress: bool | None = False


@dataclass(frozen=True)
class Report:
    """What the run measured on the held-out test recordings (printed and put in the card)."""

    version: str
    parameters: int
    size_bytes: int
    test_recordings: int
    test_events: int
    last_correct: int
    all_correct: int
    last_accuracy: float
    all_accuracy: float
    valid_accuracy: float
    last_by_activity: dict[str, tuple[int, int]]
    epochs: int
    best_epoch: int | None
    seconds: float
    command: str

    def lines(self) -> list[str]:
        return [
            f"model {NAME} version {self.version}: {self.parameters} parameters, "
            f"{self.size_bytes} bytes",
            f"epochs {self.epochs} (best {self.best_epoch}), validation all-event accuracy "
            f"{self.valid_accuracy:.4f}, {self.seconds:.0f} s",
            f"test recordings {self.test_recordings}, events {self.test_events}",
            f"test last-event accuracy {self.last_accuracy:.4f} "
            f"({self.last_correct}/{self.test_recordings})",
            f"test all-event accuracy {self.all_accuracy:.4f} "
            f"({self.all_correct}/{self.test_events})",
            "test last-event by activity: "
            + ", ".join(f"{a} {ok}/{n}" for a, (ok, n) in self.last_by_activity.items()),
        ]


def spec() -> TaskSpec:
    return TaskSpec(
        task="classification",
        n_features=len(rec.FEATURES),
        n_outputs=len(rec.ACTIVITIES),
        loss_on="all",
        feature_names=rec.FEATURES,
        output_names=rec.ACTIVITIES,
        time_unit=rec.PERIOD_S,
        default_dt=rec.PERIOD_S,
    )


def sequence_set(recordings: Sequence[rec.Recording]) -> SequenceSet:
    x, dt, y, mask = rec.to_arrays(recordings)
    return SequenceSet(x=x, dt=dt, y=y, mask=mask)


def training_recordings(
    draws: int, folder: str | Path | None = None
) -> tuple[list[rec.Recording], list[rec.Recording]]:
    """``(train, valid)``: ``draws`` irregular draws of each training recording, and of each
    held-out validation recording (split per activity, seeded)."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1; got {draws}")
    x, labels = rec.load_part("train", folder)
    pick = np.random.RandomState(SPLIT_SEED)
    valid_idx = np.sort(
        np.concatenate(
            [
                pick.permutation([i for i, a in enumerate(labels) if a == activity])[
                    :VALID_PER_CLASS
                ]
                for activity in rec.ACTIVITIES
            ]
        )
    )
    train_idx = np.setdiff1d(np.arange(len(labels)), valid_idx)
    keeps = np.linspace(*KEEP_RANGE, draws) if draws > 1 else np.array([rec.TEST_KEEP])
    train: list[rec.Recording] = []
    valid: list[rec.Recording] = []
    for d, keep in enumerate(keeps):
        seed = DRAW_SEED + d
        train += rec.irregular(
            x[train_idx], [labels[i] for i in train_idx], keep=float(keep), seed=seed, prefix="tr"
        )
        valid += rec.irregular(
            x[valid_idx], [labels[i] for i in valid_idx], keep=float(keep), seed=seed, prefix="va"
        )
    return train, valid


def normalization(recordings: Sequence[rec.Recording]) -> tuple[list[float], list[float]]:
    readings = np.concatenate([r.x for r in recordings]).astype(np.float64)
    std = readings.std(axis=0)
    return [float(v) for v in readings.mean(axis=0)], [float(v) if v > 1e-6 else 1.0 for v in std]


@dataclass(frozen=True)
class Scores:
    """Argmax predictions against the recordings' activities."""

    last_correct: int  # recordings right at their last event
    all_correct: int  # events right
    events: int
    last_by_activity: dict[str, tuple[int, int]]  # activity -> (right at the last event, total)


def score(model: Any, recordings: Sequence[rec.Recording]) -> Scores:
    """Score ``model`` at every event and at each recording's last event."""
    s = sequence_set(recordings)
    with torch.no_grad():
        y, _ = model(
            torch.from_numpy(s.x), torch.from_numpy(s.dt), None, torch.from_numpy(s.valid_mask())
        )
    pred = y.argmax(-1).numpy()
    mask = s.valid_mask()
    rows = np.arange(len(s))
    last = mask.sum(axis=1) - 1
    last_ok = pred[rows, last] == s.y[rows, last]
    labels = s.y[:, 0]
    return Scores(
        last_correct=int(last_ok.sum()),
        all_correct=int(((pred == s.y) & mask).sum()),
        events=int(mask.sum()),
        last_by_activity={
            a: (int(last_ok[labels == i].sum()), int((labels == i).sum()))
            for i, a in enumerate(rec.ACTIVITIES)
        },
    )


def train(opts: Options, *, log: Any = print) -> Report:
    """Train, score and write the artifact and its card to ``opts.out``."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: deterministic sums, and kind to a shared machine
    try:
        train_recs, valid_recs = training_recordings(opts.draws)
        test_recs = rec.held_out_recordings()
        task = spec()
        data = DatasetSplits(task, sequence_set(train_recs), sequence_set(valid_recs))
        mean, std = normalization(train_recs)
        torch.manual_seed(opts.seed)
        model = build_model(
            MODEL,
            task,
            input_mean=mean,
            input_std=std,
            name=NAME,
            metadata={
                "task": "per-event activity recognition (smartwatch IMU)",
                "data": "BasicMotions (UEA archive, via sktime)",
                "card": CARD_FILE,
            },
        )
        assert isinstance(model, LiquidModel)  # a liquid kind builds a LiquidModel
        optim = OptimConfig(
            epochs=opts.epochs,
            batch_size=opts.batch_size,
            lr=opts.lr,
            schedule="cosine",
            min_lr_ratio=0.05,
            clip_norm=1.0,
            patience=0,
            monitor="loss",
            seed=opts.seed,
            device="cpu",
        )
        log(
            f"training {NAME}: {len(train_recs)} training and {len(valid_recs)} validation "
            f"sequences, {count_parameters(model)} parameters, {opts.epochs} epochs"
        )
        result = fit(
            model, data, optim, log=log, progress=opts.progress, max_batches=opts.max_batches
        )
        model.eval()
        valid = evaluate(model, data.valid, task)
        scores = score(model, test_recs)
        version = save_model(model, opts.out)
    finally:
        torch.set_num_threads(threads)
    size = sum(p.stat().st_size for p in Path(opts.out).iterdir() if p.name != CARD_FILE)
    report = Report(
        version=version,
        parameters=count_parameters(model),
        size_bytes=size,
        test_recordings=len(test_recs),
        test_events=scores.events,
        last_correct=scores.last_correct,
        all_correct=scores.all_correct,
        last_accuracy=scores.last_correct / len(test_recs),
        all_accuracy=scores.all_correct / scores.events,
        last_by_activity=scores.last_by_activity,
        valid_accuracy=float(valid["accuracy"]),
        epochs=result.epochs_done,
        best_epoch=result.best_epoch,
        seconds=time.perf_counter() - started,
        command=command_line(opts),
    )
    for line in report.lines():
        log(line)
    (Path(opts.out) / CARD_FILE).write_text(model_card(report, opts))
    if size > MAX_BYTES:
        raise ValueError(f"the artifact is {size} bytes; the demo model must stay within 1 MB")
    return report


def command_line(opts: Options) -> str:
    args = ["python -m service.demo.train"]
    defaults = Options(out=DEMO_MODEL_DIR)
    for name in ("epochs", "draws", "batch_size", "lr", "seed", "max_batches"):
        value = getattr(opts, name)
        if value != getattr(defaults, name):
            args.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(args)


def _fill(text: str) -> str:
    """Wrap each paragraph of ``text`` (blocks separated by blank lines) at 96 columns."""
    return "\n\n".join(
        textwrap.fill(" ".join(block.split()), width=96) for block in text.strip().split("\n\n")
    )


def _item(text: str) -> str:
    return textwrap.fill(text, width=96, initial_indent="- ", subsequent_indent="  ")


def model_card(report: Report, opts: Options) -> str:
    """``MODEL_CARD.md`` for the artifact the run wrote, with the numbers it printed."""
    m = MODEL
    features = "\n".join(
        f"| {i} | `{name}` | {'accelerometer' if name.startswith('acc') else 'gyroscope'}, "
        f"{name[-1]} axis |"
        for i, name in enumerate(rec.FEATURES)
    )
    by_activity = ", ".join(f"{a} {ok}/{n}" for a, (ok, n) in report.last_by_activity.items())
    intro = _fill("""
        The model `liquid serve` answers with when no `--model` is given: **per-event activity
        recognition from a smartwatch's accelerometer and gyroscope, sampled irregularly.** It
        is small and exists to show the service working end to end (`liquid demo`, the page at
        `/`); it is not a product-grade activity model.""")
    data = _fill("""
        [BasicMotions](https://www.timeseriesclassification.com/description.php?Dataset=BasicMotions)
        from the UEA multivariate time-series classification archive (Bagnall et al., 2018), as
        shipped inside the `sktime` wheel (`sktime/datasets/data/BasicMotions/`; read from the
        installed package, nothing is downloaded). Four students wore a smartwatch while
        standing, walking, running and playing badminton; each recording is 10 s of 6 channels
        at 10 Hz (100 readings): 40 training and 40 test recordings, 10 per activity in each.

        License: the archive publishes its data sets freely for research use (cite Bagnall et
        al., "The UEA multivariate time series classification archive, 2018", arXiv:1811.00075);
        sktime, which redistributes the files, is BSD-3-Clause. Check the archive's terms before
        any other use.

        The training file is split (seeded, per activity) into 32 recordings for training and 8
        (2 per activity) for choosing the epoch. The 40 test recordings are never seen in
        training.""")
    protocol = _fill(f"""
        Each reading is kept independently with probability *keep* (a seeded
        `numpy.random.RandomState`); a recording keeps at least {rec.MIN_EVENTS}. The event
        times are the kept readings' original times, so the Δt between events is a random
        multiple of 0.1 s, and a stream's first event is given the default Δt of 0.1 s (as the
        service does). Training uses {opts.draws} draws of every training recording with *keep*
        from {KEEP_RANGE[0]} to {KEEP_RANGE[1]}; the test set is one fixed draw with *keep*
        {rec.TEST_KEEP} (seed {rec.TEST_SEED}): the recordings `liquid demo` replays. Code:
        `service/demo/recordings.py`.""")
    units = _fill("""
        Values as recorded by the watch: the archive does not state units (the accelerometer
        channels are centred near 0 at rest, i.e. gravity removed). The model normalises them
        with the training readings' mean and standard deviation, stored in `config.json`.""")
    reproduce = _fill("""
        Seeded (data split, draws, initialisation, shuffles) and trained on one CPU thread, so a
        rerun on the same machine and torch build writes an artifact with the same version;
        another CPU or torch build may differ in the last bits. `--epochs 1 --out /tmp/demo` is
        a quick smoke run.""")
    facts = "\n".join(
        _item(text)
        for text in (
            f"**name** `demo`, **version** `{report.version}` (the content hash of this artifact)",
            f"**architecture**: dense CfC ({m.units} units, mode `{m.mode}`, {m.backbone_layers} "
            f"backbone layer of {m.backbone_units} {m.backbone_activation} units), linear readout "
            "to 4 classes; the service answers with its softmax",
            f"**size**: {report.parameters} parameters, {report.size_bytes} bytes (`config.json` "
            "and `weights.safetensors`)",
            "**time unit** 0.1 s (one model time unit = one original reading period); **default "
            "Δt** 0.1 s (given to a stream's first event)",
            "**training**: the project's harness (`liquidcore.train.fit`), Adam, cosine "
            f"learning-rate schedule from {opts.lr}, batch {opts.batch_size}, {report.epochs} "
            "epochs, cross-entropy at every event; the epoch with the lowest validation loss is "
            f"kept ({report.best_epoch}); {report.seconds:.0f} s on one CPU thread",
        )
    )
    accuracy = "\n".join(
        _item(text)
        for text in (
            f"**last-event accuracy {report.last_accuracy:.4f}**: {report.last_correct} of "
            f"{report.test_recordings} recordings right at their last event ({by_activity})",
            f"**all-event accuracy {report.all_accuracy:.4f}**: {report.all_correct} of "
            f"{report.test_events} events right (the first events of a recording have seen "
            "little)",
        )
    )
    return f"""# Model card: `demo`

{intro}

{facts}

## Data

{data}

## Irregular sampling protocol

{protocol}

## Task, inputs, outputs

Classification at **every event**: after each reading the model says which activity the
recording shows, from everything it has seen so far.

Inputs (`x` as a list in this order, or an object with these names):

| # | name | channel |
|---|---|---|
{features}

{units}

Outputs: the probabilities of `standing`, `walking`, `running` and `badminton` (named in every
prediction; they sum to 1).

## Accuracy on the held-out test recordings

{accuracy}

What the training script printed:

```
{chr(10).join(report.lines())}
```

## Reproduce

```sh
{report.command}
```

{reproduce}
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service.demo.train",
        description="Train the demo model (BasicMotions, per-event activity recognition) and "
        "write the artifact and its model card.",
    )
    d = Options(out=DEMO_MODEL_DIR)
    p.add_argument("--out", type=Path, default=d.out, help=f"artifact directory (default {d.out})")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    p.add_argument("--draws", type=int, default=d.draws, help="irregular draws per recording")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per batch")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--seed", type=int, default=d.seed, help="initialisation and shuffle seed")
    p.add_argument("--max-batches", type=int, default=None, help="cap batches per epoch (smoke)")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    opts = Options(
        out=args.out,
        epochs=args.epochs,
        draws=args.draws,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_batches=args.max_batches,
        progress=bool(args.progress),
    )
    try:
        train(opts, log=lambda line: print(line, flush=True))
    except rec.DataMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
