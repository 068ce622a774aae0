"""Backbone activations of the CfC cell, registered by name.

``ACTIVATIONS`` is the ``{name: fn}`` table; ``get_activation`` looks a name up and raises
``ValueError`` listing the valid names. ``lecun_tanh`` keeps ncps's constants exactly
(``1.7159 * tanh(0.666 * x)``).

``SIGMOID_FORMS`` records, for the tanh-shaped activations, the exact identity
``act(x) = scale * sigmoid(pre * x) + shift`` (from ``tanh(u) = 2 * sigmoid(2u) - 1``). The cells
use it to fold ``pre`` into the weights before the activation and ``scale``/``shift`` into the
weights after it, so the activation costs one sigmoid pass: on CPU builds ``torch.tanh`` costs
about three times ``torch.sigmoid``. The results agree with the plain formulas to float round-off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

Activation = Callable[[Tensor], Tensor]

LECUN_SCALE = 1.7159
LECUN_SLOPE = 0.666  # ncps's constant (LeCun's 2/3, rounded as ncps rounds it)


def lecun_tanh(x: Tensor) -> Tensor:
    """LeCun's scaled tanh with ncps's constants: ``1.7159 * tanh(0.666 * x)``."""
    return LECUN_SCALE * torch.tanh(LECUN_SLOPE * x)


ACTIVATIONS: dict[str, Activation] = {
    "lecun_tanh": lecun_tanh,
    "silu": F.silu,
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
}


class SigmoidForm(NamedTuple):
    """``act(x) == scale * sigmoid(pre * x) + shift`` (an identity, not an approximation)."""

    pre: float
    scale: float
    shift: float


SIGMOID_FORMS: dict[str, SigmoidForm] = {
    "tanh": SigmoidForm(pre=2.0, scale=2.0, shift=-1.0),
    "lecun_tanh": SigmoidForm(pre=2.0 * LECUN_SLOPE, scale=2.0 * LECUN_SCALE, shift=-LECUN_SCALE),
}


def get_activation(name: str) -> Activation:
    """The activation registered as ``name``; ``ValueError`` listing the valid names if none."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; valid activations: {', '.join(sorted(ACTIVATIONS))}"
        ) from None
