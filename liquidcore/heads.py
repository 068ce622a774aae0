"""Readout heads: what a model reports from its cell's output.

A regression head maps the cell output linearly (or passes it through) and undoes the target
normalisation, so that a model's outputs are in the target's own units. A classification head
produces logits; :meth:`ReadoutHead.present` turns them into probabilities for users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from liquidcore.normalization import affine_stats

HEAD_KINDS = ("regression", "classification")


class ReadoutHead(nn.Module):
    """``y = (W out + b) * target_std + target_mean`` (regression) or logits (classification).

    ``out_features=None`` keeps the cell output as it is (no parameters), which is what an ncps
    module without ``proj_size`` does.
    """

    target_mean: Tensor
    target_std: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int | None = None,
        *,
        kind: str = "regression",
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {kind!r}; valid kinds: {', '.join(HEAD_KINDS)}")
        if in_features <= 0:
            raise ValueError(f"in_features must be > 0; got {in_features}")
        if out_features is not None and out_features <= 0:
            raise ValueError(f"out_features must be > 0 or None; got {out_features}")
        if kind == "classification" and out_features is None:
            raise ValueError("a classification head needs out_features (the number of classes)")
        self.kind = kind
        self.in_features = in_features
        self.out_features = in_features if out_features is None else out_features
        self.linear = nn.Linear(in_features, out_features) if out_features is not None else None
        has_scale = target_mean is not None or target_std is not None
        if has_scale and kind == "classification":
            raise ValueError("target normalisation applies to regression heads only")
        mean, std, _ = affine_stats(target_mean, target_std, self.out_features, "target")
        self.scaled = has_scale
        # Part of the JSON config (readable, exact for float32), so not saved with the weights.
        self.register_buffer("target_mean", mean, persistent=False)
        self.register_buffer("target_std", std, persistent=False)

    def forward(self, out: Tensor) -> Tensor:
        y = self.linear(out) if self.linear is not None else out
        if self.scaled:
            y = torch.addcmul(self.target_mean.to(y.dtype), y, self.target_std.to(y.dtype))
        return y

    def present(self, y: Tensor) -> Tensor:
        """What users are shown: class probabilities for classification, else ``y``."""
        return torch.softmax(y, dim=-1) if self.kind == "classification" else y

    def get_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_features": self.in_features,
            "out_features": self.out_features if self.linear is not None else None,
            "target_mean": self.target_mean.tolist() if self.scaled else None,
            "target_std": self.target_std.tolist() if self.scaled else None,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ReadoutHead:
        return cls(
            config["in_features"],
            config.get("out_features"),
            kind=config.get("kind", "regression"),
            target_mean=config.get("target_mean"),
            target_std=config.get("target_std"),
        )
