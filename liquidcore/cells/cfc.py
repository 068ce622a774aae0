"""Closed-form continuous-time cells: ``CfCCell`` (dense, with a backbone) and ``WiredCfCCell``
(one sparse CfC layer per layer of a wiring, as ncps).

The modules hold parameters; the math is in :mod:`liquidcore.functional.cfc`. A step is

    u = backbone([x, h])                  # Linear + activation (+ dropout), backbone_layers times
    g = u @ W_heads.T + b_heads           # all heads in one matrix product (packed layout)
    h' = MODES[mode].update(g, Δt, w_tau, A)

Parameter names follow ncps so that an ncps ``state_dict`` maps over one to one (shapes equal,
nothing transposed); ``CfCCell.ncps_key_map()`` writes the mapping out:

=====================================  =========================================================
ncps key (``ncps.torch.CfC``)          ours
=====================================  =========================================================
``rnn_cell.backbone.{j}.weight/bias``  ``backbone.{i}.weight/bias``: ``i``-th backbone Linear;
                                       ncps's Sequential index ``j`` is ``0`` for ``i = 0`` and
                                       ``2 + (i - 1)·(3 if dropout > 0 else 2)`` after it
``rnn_cell.ff1/ff2/time_a/time_b.*``   ``ff1/ff2/time_a/time_b.*`` (the same)
``rnn_cell.w_tau``, ``rnn_cell.A``     ``w_tau``, ``A`` (pure mode, ``[1, H]``)
``rnn_cell.sparsity_mask``             ``sparsity_mask`` (a buffer here; ncps: a frozen
                                       Parameter; both ``|mask|.T``, shaped like ``ff1.weight``)
``rnn_cell.layer_{l}.<key>``           ``layer_{l}.<key>`` (``WiredCfCCell``, keys as above)
=====================================  =========================================================

Differences from ncps, all deliberate:

* Δt is ``[B, 1]``, one per stream. ncps's ``CfC`` wrapper squeezes timespans to ``[B]``, which
  broadcasts across *units* instead of streams: an error when ``1 < B != hidden_size``, a
  silently wrong answer when ``B == hidden_size`` (ncps issues 81-83).
* Backbone dropout follows every backbone layer's activation. ncps adds it only after layers
  ``2..n``, so a one-layer backbone (its default) never drops out. Eval-mode numbers are the
  same; only training with ``backbone_dropout > 0`` differs.
* Pure mode starts from ``w_tau = 0`` and ``A = 1``, the values ncps writes; ncps then overwrites
  them with Xavier noise because its initialiser touches every 2-D parameter. Every other
  parameter is drawn as ncps draws it, in the same order, so the same seed gives the same
  weights.
* ``WiredCfCCell``'s output is the motor neurons of the last layer, ``output_size`` of them.
  For NCP wirings this is the whole last layer, as in ncps. For one-layer wirings with
  ``output_dim < units`` ncps returns all units even though its ``output_size`` says
  ``output_dim``; we follow its ``output_size`` (and its LTC, which returns ``h[:, :output_dim]``).

Speed. Tanh-shaped backbone activations (``lecun_tanh``, ``tanh``) are run as one sigmoid, their
``pre`` factor folded into the weights before them and their ``scale``/``shift`` into the
weights after them (:data:`liquidcore.functional.activations.SIGMOID_FORMS`). The four heads
(ff1, ff2, time_a, time_b) are concatenated at fold time into one matrix, so they read the
backbone output in one matrix product. The first product is split by columns, ``x @ W_x.T +
h @ W_h.T`` (two ``addmm``), so ``[x, h]`` is never concatenated. With autograd on, the folds are
rebuilt from the parameters every step (so gradients reach the parameters); without it they
live in the cells' common :class:`~liquidcore.cells.fold_cache.FoldCache`. Writes through
``param.data`` bypass its version check: call ``clear_cache()`` after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liquidcore.cells.base import LiquidCell, WiringLike
from liquidcore.cells.fold_cache import FoldCache
from liquidcore.functional.activations import SIGMOID_FORMS, get_activation
from liquidcore.functional.cfc import fold_linear, get_mode
from liquidcore.functional.cfc_sequence import GATED_MODES, cfc_gated_sequence
from liquidcore.functional.tracing import is_tracing

_NCPS_HEAD_ORDER = ("ff1", "ff2", "time_a", "time_b")  # ncps's creation order (its RNG stream)
_MASKED_HEADS = frozenset({"ff1", "ff2"})  # ncps masks these two only
_ACTIVATED_HEADS = frozenset({"ff1", "ff2"})  # tanh in ncps, lecun_tanh in the paper's TF cell
# ncps's tanh; the CfC paper's TensorFlow cell (tf_cfc.py) passes ff1/ff2 through lecun_tanh.
HEAD_ACTIVATIONS = ("tanh", "lecun_tanh")


class CfCFolded(NamedTuple):
    """The weights a step runs with. The first product (the first backbone layer, or the packed
    heads without a backbone) is split by columns so ``[x, h]`` is never concatenated:
    ``z = x @ first_x + h @ first_h + first_b`` (``first_x``, ``first_h`` are transposed views).
    ``rest``: each later product as ``(weight, bias)`` for ``F.linear``, the packed heads last."""

    first_x: Tensor
    first_h: Tensor
    first_b: Tensor
    rest: tuple[tuple[Tensor, Tensor], ...]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _mask_buffer(mask: Any, features: int, hidden: int) -> Tensor:
    """ncps's orientation ``[features, hidden]`` in; ``|mask|.T``, shaped like a head weight."""
    t = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    _check(
        tuple(t.shape) == (features, hidden),
        f"sparsity_mask must have shape [features into the heads, hidden_size] = "
        f"[{features}, {hidden}] (ncps's orientation); got {list(t.shape)}",
    )
    return t.abs().T.contiguous()


class CfCCell(LiquidCell):
    """A closed-form continuous-time cell with ncps's parameters and initialisation.

    ``forward(x[B, input_size], h[B, hidden_size], dt[B, 1]) -> (h', h')``. See the module
    docstring for the parameter names, the ncps key map and the differences from ncps (Δt per
    stream; dropout after every backbone layer; pure-mode initial ``w_tau``/``A``).

    ``sparsity_mask`` (``[features into the heads, hidden_size]``, ncps's orientation; its
    absolute value is used) masks the weights of ``ff1`` and ``ff2``, as in ncps.
    """

    cell_type: ClassVar[str] = "cfc"
    backbone: nn.ModuleList
    ff1: nn.Linear
    ff2: nn.Linear  # ff2, time_a, time_b: not in pure mode
    time_a: nn.Linear
    time_b: nn.Linear
    w_tau: nn.Parameter | None
    A: nn.Parameter | None
    sparsity_mask: Tensor | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        mode: str = "default",
        backbone_activation: str = "lecun_tanh",
        backbone_units: int = 128,
        backbone_layers: int = 1,
        backbone_dropout: float = 0.0,
        sparsity_mask: Any = None,
        head_activation: str = "tanh",
    ) -> None:
        super().__init__()
        self._mode = get_mode(mode)
        self._activation = get_activation(backbone_activation)
        _check(
            head_activation in HEAD_ACTIVATIONS,
            f"head_activation must be one of {', '.join(HEAD_ACTIVATIONS)}; got "
            f"{head_activation!r}",
        )
        _check(
            mode != "pure" or head_activation == "tanh",
            "pure mode has no ff1/ff2 activation: head_activation must stay 'tanh'",
        )
        _check(input_size >= 1, f"input_size must be >= 1; got {input_size}")
        _check(hidden_size >= 1, f"hidden_size must be >= 1; got {hidden_size}")
        _check(backbone_layers >= 0, f"backbone_layers must be >= 0; got {backbone_layers}")
        _check(
            backbone_layers == 0 or backbone_units >= 1,
            f"backbone_units must be >= 1 when backbone_layers > 0; got {backbone_units}",
        )
        _check(
            0.0 <= backbone_dropout < 1.0,
            f"backbone_dropout must be in [0, 1); got {backbone_dropout}",
        )
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.state_size = self.hidden_size
        self.output_size = self.hidden_size
        self.mode = mode
        self.backbone_activation = backbone_activation
        self.backbone_units = int(backbone_units)
        self.backbone_layers = int(backbone_layers)
        self.backbone_dropout = float(backbone_dropout)
        self.head_activation = head_activation
        self._form = SIGMOID_FORMS.get(backbone_activation)
        # ff1/ff2 run as ``gain·(2·sigmoid(pre·u) - 1)``: the modes pack tanh's ``pre`` = 2; a
        # lecun_tanh head packs its own ``pre`` and scales the update by its ``gain``.
        head_form = SIGMOID_FORMS[head_activation]
        self._head_pre_ratio = head_form.pre / 2.0
        self._head_gain = -head_form.shift
        self._pure = mode == "pure"

        width = self.input_size + self.hidden_size
        layers = []
        for _ in range(self.backbone_layers):
            layers.append(nn.Linear(width, self.backbone_units))
            width = self.backbone_units
        self.backbone = nn.ModuleList(layers)
        self.register_buffer(
            "sparsity_mask",
            None if sparsity_mask is None else _mask_buffer(sparsity_mask, width, hidden_size),
        )
        for name in _NCPS_HEAD_ORDER:
            if name in self._mode.heads:
                self.add_module(name, nn.Linear(width, self.hidden_size))
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(1, self.hidden_size))
            self.A = nn.Parameter(torch.ones(1, self.hidden_size))
        else:
            self.register_parameter("w_tau", None)
            self.register_parameter("A", None)
        self.reset_parameters()
        self._folds: FoldCache[CfCFolded] = FoldCache()

    def reset_parameters(self) -> None:
        """ncps's initialisation: Xavier-uniform on the 2-D weights, PyTorch's default on the
        biases; pure mode's ``w_tau = 0``, ``A = 1``.

        The draws consume the random stream exactly as ncps's do (it also draws Xavier noise
        for ``w_tau`` and ``A``, before everything else), so one seed gives ncps's weights.
        """
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.xavier_uniform_(p)
        if self.w_tau is not None and self.A is not None:
            with torch.no_grad():
                self.w_tau.zero_()
                self.A.fill_(1.0)

    # --- step ----------------------------------------------------------------------------------

    def forward(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        h_new = self.step(x, h, dt)
        return h_new, h_new

    def output_of(self, h: Tensor) -> Tensor:
        return h

    def step(self, x: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        """The new state ``h'[B, hidden_size]`` (which is also the output)."""
        dropout = self._dropping_out()
        plan = self._plan(dropout)
        return self._tail(
            self._first(torch.addmm(plan.first_b, x, plan.first_x), h, plan), plan, dt, dropout
        )

    def forward_sequence(
        self, x: Tensor, h: Tensor, dt: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``T`` events with the weights prepared (folded, packed) once per sequence instead of
        once per step. With autograd, the inputs' share of the first matrix product is also
        taken for all steps in one product, leaving ``h @ W_h`` per step (equal to stepping to
        float round-off), and the gated modes run the steps as one autograd node
        (:mod:`liquidcore.functional.cfc_sequence`); without autograd each step is computed
        exactly as ``step`` computes it, so serving a backfill and stepping its events give
        bit-identical states."""
        if is_tracing():
            return super().forward_sequence(x, h, dt, mask)
        dropout = self._dropping_out()
        plan = self._plan(dropout)
        B, T, _ = x.shape
        if torch.is_grad_enabled() and self._one_node(dropout):
            # Time-major rows: each step's share is a contiguous block, and so is its gradient.
            x_rows = x.transpose(0, 1).reshape(T * B, -1)
            x_share = torch.addmm(plan.first_b, x_rows, plan.first_x).view(T, B, -1)
            states = cfc_gated_sequence(
                x_share.transpose(0, 1),
                h,
                dt,
                plan.first_h,
                plan.rest,
                mode=self.mode,
                gain=self._head_gain,
                mask=mask,
            )
            return states, states[:, -1]
        if torch.is_grad_enabled():  # unbind, not [:, t]: a slice's backward zero-fills it all
            x_share = torch.addmm(plan.first_b, x.reshape(B * T, -1), plan.first_x)
            x_shares = x_share.view(B, T, -1).unbind(1)
        else:
            # contiguous: the same operands as ``step`` gets, so the same bits come out
            x_shares = tuple(
                torch.addmm(plan.first_b, x_t.contiguous(), plan.first_x) for x_t in x.unbind(1)
            )
        outs = []
        for t, x_share_t in enumerate(x_shares):
            h_new = self._tail(self._first(x_share_t, h, plan), plan, dt[:, t : t + 1], dropout)
            if mask is not None:
                h_new = torch.where(mask[:, t : t + 1], h_new, h)
            outs.append(h_new)
            h = h_new
        return torch.stack(outs, dim=1), h

    def _one_node(self, dropout: bool) -> bool:
        """Whether training runs the sequence as one autograd node
        (:mod:`liquidcore.functional.cfc_sequence`): the gated modes, no dropout, and a
        backbone (if any) whose activation runs as a folded sigmoid."""
        return (
            self.mode in GATED_MODES
            and not dropout
            and (self.backbone_layers == 0 or self._form is not None)
        )

    def _dropping_out(self) -> bool:
        return self.training and self.backbone_dropout > 0.0

    def _plan(self, dropout: bool) -> CfCFolded:
        """The weights a step runs with: the plain backbone and packed heads while dropout is
        active (it must see the true activations), the folded ones otherwise."""
        if dropout:
            layers = [(layer.weight, layer.bias) for layer in self._backbone()]
            return self._split(layers, self._packed_heads(1.0, 0.0))
        return self._folds.get(self, self._fold)

    @staticmethod
    def _first(x_share: Tensor, h: Tensor, plan: CfCFolded) -> Tensor:
        """The first product's pre-activation: ``x``'s share (with the bias) plus ``h @ W_h``."""
        if x_share.requires_grad or h.requires_grad or plan.first_h.requires_grad:
            return torch.addmm(x_share, h, plan.first_h)
        return x_share.addmm_(h, plan.first_h)  # our own intermediate: accumulate in place

    def _tail(self, z: Tensor, plan: CfCFolded, dt: Tensor, dropout: bool) -> Tensor:
        """From the first product's pre-activation ``z`` to the new state."""
        for w, b in plan.rest:
            if dropout:
                u = F.dropout(self._activation(z), self.backbone_dropout, training=True)
            else:
                u = self._folded_activation(z)
            z = F.linear(u, w, b)
        if self._pure:
            return self._mode.update(z, dt, self.w_tau, self.A)
        h_new = self._mode.update(z, dt, None, None)
        if self._head_gain == 1.0:
            return h_new
        return h_new * self._head_gain if h_new.requires_grad else h_new.mul_(self._head_gain)

    def _folded_activation(self, z: Tensor) -> Tensor:
        # The centred sigmoid ``sigmoid(pre·z) - 0.5``: the next layer's weights carry ``scale``
        # and, for the tanh shapes, no shift remains to fold into its bias. Folding the shift
        # would cancel large partial sums (``Σ scale·W·s`` against ``shift·ΣW``) and cost
        # accuracy; the subtraction itself is exact in float32 for sigmoid values >= 0.25.
        if self._form is None:
            return self._activation(z)
        if z.requires_grad:
            return torch.sigmoid(z) - 0.5
        return z.sigmoid_().sub_(0.5)

    def masked_parameter_count(self) -> int:
        if self.sparsity_mask is None:
            return 0
        absent = int((self.sparsity_mask == 0).sum())
        masked = [h for name, h in self._heads() if name in _MASKED_HEADS]
        return absent * sum(h.weight.requires_grad for h in masked)

    # --- weight folding --------------------------------------------------------------------------

    def _backbone(self) -> list[nn.Linear]:
        return [cast(nn.Linear, layer) for layer in self.backbone]

    def _heads(self) -> list[tuple[str, nn.Linear]]:
        return [(name, getattr(self, name)) for name in self._mode.heads]

    def _packed_heads(self, in_scale: float, in_shift: float) -> tuple[Tensor, Tensor]:
        ws, bs = [], []
        for (name, head), scale in zip(self._heads(), self._mode.head_scales, strict=True):
            weight = head.weight
            if self.sparsity_mask is not None and name in _MASKED_HEADS:
                weight = weight * self.sparsity_mask
            if name in _ACTIVATED_HEADS and not self._pure:
                scale = scale * self._head_pre_ratio
            w, b = fold_linear(
                weight, head.bias, in_scale=in_scale, in_shift=in_shift, out_scale=scale
            )
            ws.append(w)
            bs.append(b)
        if len(ws) == 1:
            return ws[0], bs[0]
        return torch.cat(ws), torch.cat(bs)

    def _fold(self) -> CfCFolded:
        pre, scale, shift = (1.0, 1.0, 0.0) if self._form is None else self._form
        centred = 0.0 if self._form is None else 0.5 * scale  # see _folded_activation
        layers = []
        in_scale, in_shift = 1.0, 0.0
        for layer in self._backbone():
            layers.append(
                fold_linear(
                    layer.weight, layer.bias, in_scale=in_scale, in_shift=in_shift, out_scale=pre
                )
            )
            in_scale, in_shift = scale, shift + centred  # 0 for tanh and lecun_tanh
        return self._split(layers, self._packed_heads(in_scale, in_shift))

    def _split(
        self, layers: Sequence[tuple[Tensor, Tensor]], heads: tuple[Tensor, Tensor]
    ) -> CfCFolded:
        (w, b), *rest = [*layers, heads]
        n = self.input_size
        return CfCFolded(w[:, :n].t(), w[:, n:].t(), b, tuple(rest))

    # --- config and ncps compatibility ----------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        mask = self.sparsity_mask
        return {
            "type": self.cell_type,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "mode": self.mode,
            "backbone_activation": self.backbone_activation,
            "backbone_units": self.backbone_units,
            "backbone_layers": self.backbone_layers,
            "backbone_dropout": self.backbone_dropout,
            "sparsity_mask": None if mask is None else mask.T.tolist(),
            "head_activation": self.head_activation,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CfCCell:
        _check_type(cls, config)
        return cls(**{k: v for k, v in config.items() if k != "type"})

    def ncps_key_map(self, prefix: str = "rnn_cell.") -> dict[str, str]:
        """``{ncps state_dict key: our state_dict key}``; ``prefix`` is where the cell sits in the
        ncps module (``"rnn_cell."`` in ``ncps.torch.CfC``, ``""`` for a bare ``CfCCell``)."""
        step = 3 if self.backbone_dropout > 0.0 else 2
        out: dict[str, str] = {}
        for i in range(self.backbone_layers):
            j = 0 if i == 0 else 2 + (i - 1) * step
            for p in ("weight", "bias"):
                out[f"{prefix}backbone.{j}.{p}"] = f"backbone.{i}.{p}"
        for name, _ in self._heads():
            for p in ("weight", "bias"):
                out[f"{prefix}{name}.{p}"] = f"{name}.{p}"
        if self.w_tau is not None:
            out[f"{prefix}w_tau"] = "w_tau"
            out[f"{prefix}A"] = "A"
        if self.sparsity_mask is not None:
            out[f"{prefix}sparsity_mask"] = "sparsity_mask"
        return out


def _check_type(cls: type[LiquidCell], config: dict[str, Any]) -> None:
    _check(
        config.get("type") == cls.cell_type,
        f"{cls.__name__}.from_config needs a config of type {cls.cell_type!r}; "
        f"got {config.get('type')!r}",
    )


class WiredCfCCell(LiquidCell):
    """One CfC layer (no backbone, ``lecun_tanh``, sparse ``ff1``/``ff2``) per layer of a
    wiring, each fed by the previous layer's new state, as ncps's ``WiredCfCCell``.

    The state is ordered by layer (inter, command, motor for an NCP), as ncps. Layer ``l`` is
    the submodule ``layer_{l}`` (a :class:`CfCCell`), named as in ncps.
    """

    cell_type: ClassVar[str] = "wired_cfc"

    def __init__(self, input_size: int | None, wiring: WiringLike, mode: str = "default") -> None:
        super().__init__()
        get_mode(mode)
        if input_size is not None and wiring.input_dim != input_size:
            # Only when unbuilt (or conflicting, which build() refuses): building an ncps NCP
            # a second time adds a second round of random synapses.
            wiring.build(input_size)
        _check(
            wiring.input_dim is not None,
            "the wiring has no input size: pass input_size or call wiring.build(input_size)",
        )
        _check(wiring.output_dim is not None, "the wiring has no output size (output_dim)")
        self.wiring = wiring
        self.mode = mode
        self.input_size = int(wiring.input_dim)  # type: ignore[arg-type]
        self.state_size = int(wiring.units)
        neurons = [list(wiring.get_neurons_of_layer(i)) for i in range(wiring.num_layers)]
        self.layer_sizes = [len(n) for n in neurons]
        _check(
            sum(self.layer_sizes) == self.state_size,
            f"the wiring's layers hold {sum(self.layer_sizes)} neurons but it has "
            f"{self.state_size} units",
        )

        in_features = self.input_size
        for i, units in enumerate(neurons):
            if i == 0:
                fan_in = np.asarray(wiring.sensory_adjacency_matrix)[:, units]
            else:
                fan_in = np.asarray(wiring.adjacency_matrix)[:, units][neurons[i - 1], :]
            mask = np.concatenate([fan_in, np.ones((len(units), len(units)))], axis=0)
            layer = CfCCell(
                in_features,
                len(units),
                mode,
                backbone_activation="lecun_tanh",
                backbone_units=0,
                backbone_layers=0,
                sparsity_mask=mask,
            )
            self.add_module(f"layer_{i}", layer)
            in_features = len(units)

        # Output: the motor neurons (ids < output_dim, as ncps numbers them) of the last layer.
        start = self.state_size - self.layer_sizes[-1]
        motor = [start + k for k, n in enumerate(neurons[-1]) if n < int(wiring.output_dim)]  # type: ignore[arg-type]
        _check(
            len(motor) > 0 and motor == list(range(motor[0], motor[0] + len(motor))),
            "the motor neurons (ids < output_dim) must be a non-empty contiguous run of the "
            "wiring's last layer",
        )
        self._out = slice(motor[0], motor[-1] + 1)
        self.output_size = len(motor)

    @property
    def layers(self) -> list[CfCCell]:
        return [getattr(self, f"layer_{i}") for i in range(len(self.layer_sizes))]

    def forward(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        parts = []
        inputs = x
        for layer, h_l in zip(self.layers, torch.split(h, self.layer_sizes, dim=1), strict=True):
            inputs = layer.step(inputs, h_l, dt)
            parts.append(inputs)
        h_new = torch.cat(parts, dim=1)
        return self.output_of(h_new), h_new

    def output_of(self, h: Tensor) -> Tensor:
        return h[:, self._out]

    def get_config(self) -> dict[str, Any]:
        return {
            "type": self.cell_type,
            "input_size": self.input_size,
            "mode": self.mode,
            "wiring": self.wiring.get_config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WiredCfCCell:
        _check_type(cls, config)
        from liquidcore.wirings import wiring_from_config  # lazy: wirings may import cells

        return cls(config["input_size"], wiring_from_config(config["wiring"]), config["mode"])

    def ncps_key_map(self, prefix: str = "rnn_cell.") -> dict[str, str]:
        """``{ncps state_dict key: ours}``: ``{prefix}layer_{l}.<key>`` -> ``layer_{l}.<key>``."""
        out: dict[str, str] = {}
        for i, layer in enumerate(self.layers):
            for k, v in layer.ncps_key_map(f"{prefix}layer_{i}.").items():
                out[k] = f"layer_{i}.{v}"
        return out
