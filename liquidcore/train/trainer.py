"""The training loop: one harness for liquid models and baselines.

``fit`` trains any :class:`~liquidcore.train.protocol.SequenceModel` on a
:class:`~liquidcore.data.DatasetSplits`: seeded shuffles, the loss on the scored steps,
gradient clipping, a per-step learning-rate schedule, validation after every epoch, the best
weights kept (by the monitored validation metric), early stopping, and with a run directory a
training-state checkpoint after every epoch from which an interrupted run resumes and ends
exactly as an uninterrupted one (same weights, same history).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from liquidcore.data.sequences import DatasetSplits, SequenceSet, TaskSpec
from liquidcore.device import resolve_device
from liquidcore.train.config import OptimConfig
from liquidcore.train.losses import MetricAccumulator, is_better, scored, sequence_loss
from liquidcore.train.protocol import apply_constraints, count_parameters, loss_scale_of
from liquidcore.train.schedule import lr_factor
from liquidcore.train.state import load_training_state, save_training_state, state_path

# Optimiser settings that may change when a run is resumed; any other change is refused.
RESUMABLE_CHANGES = ("epochs", "patience", "device", "eval_batch_size")

Log = Callable[[str], None]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class _Batchable:
    x: Tensor
    dt: Tensor
    y: Tensor
    mask: Tensor | None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(
        self, idx: Tensor, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        m = None if self.mask is None else self.mask[idx].to(device)
        return self.x[idx].to(device), self.dt[idx].to(device), self.y[idx].to(device), m


def _tensors(s: SequenceSet, spec: TaskSpec) -> _Batchable:
    y = torch.from_numpy(np.ascontiguousarray(s.y))
    y = y.long() if spec.task == "classification" else y.float()
    mask = None if s.mask is None else torch.from_numpy(np.ascontiguousarray(s.mask)).bool()
    return _Batchable(
        torch.from_numpy(np.ascontiguousarray(s.x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(s.dt, dtype=np.float32)),
        y,
        mask,
    )


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":  # Keras defaults (rho 0.9, eps 1e-7), as the CfC paper used
        return torch.optim.RMSprop(
            params, lr=cfg.lr, alpha=0.9, eps=1e-7, weight_decay=cfg.weight_decay
        )
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def clip_gradients(model: nn.Module, max_norm: float, mode: str) -> None:
    """``global``: one norm over all gradients (torch); ``per_tensor``: each gradient by its own
    norm (Keras ``clipnorm``, what the CfC paper's training used)."""
    if max_norm <= 0:
        return
    params = [p for p in model.parameters() if p.grad is not None]
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    for p in params:
        assert p.grad is not None
        norm = p.grad.norm()
        if norm > max_norm:
            p.grad.mul_(max_norm / norm)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: SequenceSet,
    spec: TaskSpec,
    *,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    scale: Tensor | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on ``data`` (eval mode; restores the previous mode)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    acc = MetricAccumulator(spec.task, spec.n_outputs)
    tensors = _tensors(data, spec)
    scale_d = None if scale is None else scale.to(device)
    try:
        for start in range(0, len(tensors), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(tensors)))
            x, dt, y, m = tensors.take(idx, device)
            out, _ = model(x, dt, None, m)
            loss = sequence_loss(out, y, m, task=spec.task, loss_on=spec.loss_on, scale=scale_d)
            y_sel, t_sel = scored(out, y, m, spec.loss_on)
            acc.add(y_sel.float(), t_sel, loss)
    finally:
        model.train(was_training)
    return acc.result()


@dataclass
class FitResult:
    """What a run did. ``history`` has one dict per epoch; ``finished`` is False when the run
    stopped early because of ``stop_after`` (it can be resumed)."""

    history: list[dict[str, Any]]
    monitor: str
    best_epoch: int | None
    best_metric: float | None
    epochs_done: int
    finished: bool
    stopped_early: bool
    parameters: int
    seconds_per_epoch: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "epochs_done": self.epochs_done,
            "finished": self.finished,
            "stopped_early": self.stopped_early,
            "parameters": self.parameters,
            "seconds_per_epoch": self.seconds_per_epoch,
            **self.extra,
        }


def _check_fingerprint(stored: dict[str, Any], current: dict[str, Any], run_dir: Path) -> None:
    diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if diff:
        raise ValueError(
            f"cannot resume {str(run_dir)!r}: the configuration changed in {diff} "
            f"(only {', '.join(RESUMABLE_CHANGES)} may change); use a new output directory"
        )


def _fingerprint(cfg: OptimConfig, extra: dict[str, Any] | None) -> dict[str, Any]:
    optim = {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES}
    return {"optim": optim, **(extra or {})}


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "loss")


def fit(
    model: nn.Module,
    data: DatasetSplits,
    cfg: OptimConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    log: Log | None = None,
    stop_after: int | None = None,
    max_batches: int | None = None,
    fingerprint: dict[str, Any] | None = None,
    clip_mode: str = "global",
) -> FitResult:
    """Train ``model`` on ``data.train``, validating on ``data.valid`` after every epoch.

    With ``run_dir`` the training state is saved after every epoch; a run directory that holds
    a state is refused unless ``resume`` (then training continues from the saved epoch, and
    ``fingerprint`` — what the caller wants unchanged, e.g. model and data config — must match).
    ``stop_after`` ends this call after that many epochs (a time slice); ``max_batches`` caps
    batches per epoch (smoke runs and timing). On return the model holds the best weights.
    """
    if clip_mode not in ("global", "per_tensor"):
        raise ValueError(f"unknown clip_mode {clip_mode!r}; valid: global, per_tensor")
    say: Log = log or (lambda _line: None)
    spec = data.spec
    device = resolve_device(cfg.device)
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    scale = loss_scale_of(model, spec.n_outputs).to(device) if spec.task == "regression" else None
    train = _tensors(data.train, spec)
    n_batches = math.ceil(len(train) / cfg.batch_size)
    steps_per_epoch = min(n_batches, max_batches) if max_batches else n_batches
    fp = _fingerprint(cfg, fingerprint)
    fp["clip_mode"] = clip_mode

    start_epoch, global_step, bad_epochs = 0, 0, 0
    best_metric: float | None = None
    best_epoch: int | None = None
    best_state: dict[str, Tensor] | None = None
    history: list[dict[str, Any]] = []
    stopped_early = False
    root = Path(run_dir) if run_dir is not None else None
    if root is not None and state_path(root) is not None:
        if not resume:
            raise ValueError(
                f"{str(root)!r} already holds a training run; pass --resume to continue it "
                "or choose another output directory"
            )
        meta, best_state = load_training_state(root, model=model, optimizer=optimizer)
        _check_fingerprint(meta["fingerprint"], fp, root)
        start_epoch = int(meta["epoch"])
        global_step = int(meta["global_step"])
        bad_epochs = int(meta["bad_epochs"])
        best_metric = meta["best_metric"]
        best_epoch = meta["best_epoch"]
        history = list(meta["history"])
        stopped_early = bool(meta["stopped_early"])
        if best_state is not None:
            best_state = {k: v.to(device) for k, v in best_state.items()}
        say(f"resuming {root} after epoch {start_epoch}")
    else:
        seed_everything(cfg.seed)

    params = count_parameters(model)
    for epochs_now, epoch in enumerate(range(start_epoch, cfg.epochs)):
        if stopped_early or (stop_after is not None and epochs_now >= stop_after):
            break
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(train), generator=gen)
        loss_sum, loss_n = 0.0, 0
        t0 = time.perf_counter()
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", progress)
        try:
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                lr = cfg.lr * lr_factor(
                    cfg.schedule,
                    global_step,
                    steps_per_epoch=steps_per_epoch,
                    epochs=cfg.epochs,
                    decay=cfg.decay,
                    min_lr_ratio=cfg.min_lr_ratio,
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, dt, y, m = train.take(idx, device)
                out, _ = model(x, dt, None, m)
                loss = sequence_loss(out, y, m, task=spec.task, loss_on=spec.loss_on, scale=scale)
                if not bool(torch.isfinite(loss)):
                    raise TrainingDivergedError(
                        f"the loss became {loss.item()} at epoch {epoch + 1}, batch {b + 1}; "
                        "lower the learning rate or clip gradients harder"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_gradients(model, cfg.clip_norm, clip_mode)
                optimizer.step()
                apply_constraints(model)
                global_step += 1
                loss_sum += loss.item() * len(idx)
                loss_n += len(idx)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum / loss_n:.4g}", refresh=False)
        finally:
            if bar is not None:
                bar.close()
        train_seconds = time.perf_counter() - t0
        metrics = evaluate(
            model, data.valid, spec, batch_size=cfg.eval_batch_size, device=device, scale=scale
        )
        monitored = metrics[cfg.monitor] if cfg.monitor in metrics else metrics["loss"]
        improved = is_better(cfg.monitor, monitored, best_metric)
        if improved:
            best_metric, best_epoch, bad_epochs = monitored, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(loss_n, 1),
            **{f"valid_{k}": v for k, v in metrics.items()},
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": train_seconds,
            "seconds": time.perf_counter() - t0,
            "batches": steps_per_epoch,
        }
        history.append(record)
        if cfg.patience and bad_epochs >= cfg.patience:
            stopped_early = True
        say(
            f"epoch {epoch + 1}/{cfg.epochs}  train {record['train_loss']:.4g}  "
            f"valid {metrics['loss']:.4g} ({_fmt(metrics)})  lr {record['lr']:.3g}  "
            f"{record['seconds']:.1f}s{'  *best*' if improved else ''}"
            f"{'  early stop' if stopped_early else ''}"
        )
        if root is not None:
            save_training_state(
                root,
                model=model,
                best=best_state,
                optimizer=optimizer,
                meta={
                    "epoch": epoch + 1,
                    "global_step": global_step,
                    "bad_epochs": bad_epochs,
                    "best_metric": best_metric,
                    "best_epoch": best_epoch,
                    "history": history,
                    "stopped_early": stopped_early,
                    "fingerprint": fp,
                },
            )

    done = len(history)
    finished = stopped_early or done >= cfg.epochs
    if best_state is not None:
        model.load_state_dict(best_state)
    times = [float(h["train_seconds"]) for h in history]
    return FitResult(
        history=history,
        monitor=cfg.monitor,
        best_epoch=best_epoch,
        best_metric=best_metric,
        epochs_done=done,
        finished=finished,
        stopped_early=stopped_early,
        parameters=params,
        seconds_per_epoch=float(np.median(times)) if times else math.nan,
    )


def _progress(total: int, desc: str, enabled: bool | None) -> Any:
    if enabled is False:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the train extra
        return None
    # enabled=None: tqdm decides (shown on a terminal, hidden in logs and tests).
    return tqdm(total=total, desc=desc, leave=False, disable=None if enabled is None else False)
