"""The liquid time-constant cell, ``LTCCell``: a thin holder of ncps's parameters.

The math is in the ``liquidcore.functional.ltc_*`` kernels. Parameter names, shapes, initial
ranges and the order of the random draws are ncps's (``ncps.torch.LTCCell``), so an ncps
``state_dict`` loads one to one (``ncps_key_map()``) and the same seed gives the same weights:

=================================  ===================================================
``gleak``, ``vleak``, ``cm``       ``[units]``
``sigma``, ``mu``, ``w``, ``erev``  ``[units, units]`` (source, destination), dense
``sensory_*`` (same four)          ``[input_dim, units]``
``sparsity_mask``,                 ``|adjacency|`` of the wiring, buffers here (ncps:
``sensory_sparsity_mask``          frozen Parameters; the same state_dict keys)
``input_w``, ``input_b``           ``[input_dim]`` (``input_mapping`` affine / linear)
``output_w``, ``output_b``         ``[motor_size]`` (``output_mapping`` affine / linear)
=================================  ===================================================

The output is the first ``motor_size`` units of the state, then the output mapping, as ncps.

Differences from ncps, all deliberate:

* Δt is ``[B, 1]``, one per stream. ncps's ``LTC`` wrapper squeezes timespans to ``[B]``, which
  broadcasts over *units* (silently wrong when ``B == units``): ncps issues 81-83.
* The update is ncps's multiplied through by ``Δt/(unfolds·cm)``: the same for ``Δt > 0``,
  ``cm > 0`` (to float round-off), and also defined for ``Δt = 0`` (the state stays; ncps gives
  NaN) and ``cm = 0`` (reachable with explicit constraints).
* ``implicit_param_constraints`` defaults to ``False`` as ncps's *cell* (its ``LTC`` wrapper
  defaults to ``True``). ``apply_constraints()`` is ncps's ``apply_weight_constraints()``.
* ``solver`` (``semi_implicit``, ncps's; ``euler``; ``rk4``) and ``synapse_path`` are ours.

Synapse paths. ``dense`` computes all ``units²`` (and ``input_dim·units``) synapses with ncps's
formula, masked, in plain autograd. ``sparse`` gathers the active synapses once per call and
runs the CSR kernels of :mod:`liquidcore.functional.ltc_synapses`; with the semi-implicit
solver, as one fused autograd node with an analytic backward. ``auto`` (the default) is
``sparse`` in eager mode (on this project's CPU it was faster at every density we tried,
``FullyConnected`` included) and ``dense`` while tracing or exporting (plain ops that every
exporter knows). The paths agree to float round-off.

Caching. The folded parameters (softplus, masks, gathers; :mod:`liquidcore.functional.ltc_fold`)
live in the cells' common :class:`~liquidcore.cells.fold_cache.FoldCache`: rebuilt every call
with autograd on, cached without it. Writes through ``param.data`` bypass its version check:
call ``clear_cache()`` after them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liquidcore.cells.base import LiquidCell, WiringLike
from liquidcore.cells.fold_cache import FoldCache
from liquidcore.functional.ltc_fold import LTCFolded, fold_leak, fold_synapses
from liquidcore.functional.ltc_step import capacitance
from liquidcore.functional.ltc_synapses import (
    SparseSynapses,
    SynapseIndex,
    Synapses,
    currents,
    synapse_index,
)
from liquidcore.functional.ltc_unroll import get_solver
from liquidcore.functional.tracing import is_tracing
from liquidcore.native.ltc_step import NativeSynapses, StepPlan, step_plan
from liquidcore.native.ltc_step import step as native_step

# Input / output mappings: name -> (scale, shift), the registered table.
MAPPINGS: dict[str, tuple[bool, bool]] = {
    "affine": (True, True),
    "linear": (True, False),
    "none": (False, False),
}
SYNAPSE_PATHS = ("auto", "dense", "sparse")

# ncps's initial ranges (uniform) and its order of random draws.
_INIT_RANGES: dict[str, tuple[float, float]] = {
    "gleak": (0.001, 1.0),
    "vleak": (-0.2, 0.2),
    "cm": (0.4, 0.6),
    "w": (0.001, 1.0),
    "sigma": (3.0, 8.0),
    "mu": (0.3, 0.8),
    "sensory_w": (0.001, 1.0),
    "sensory_sigma": (3.0, 8.0),
    "sensory_mu": (0.3, 0.8),
}
_CONSTRAINED = ("w", "sensory_w", "cm", "gleak")  # clipped at 0 by apply_constraints()
_INDEX_FIELDS = SynapseIndex._fields


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


class LTCCell(LiquidCell):
    """A liquid time-constant cell on a wiring, with ncps's parameters (see the module doc).

    ``forward(x[B, input_dim], h[B, units], dt[B, 1]) -> (out[B, motor_size], h'[B, units])``.
    """

    cell_type: ClassVar[str] = "ltc"
    gleak: nn.Parameter
    vleak: nn.Parameter
    cm: nn.Parameter
    sigma: nn.Parameter
    mu: nn.Parameter
    w: nn.Parameter
    erev: nn.Parameter
    sensory_sigma: nn.Parameter
    sensory_mu: nn.Parameter
    sensory_w: nn.Parameter
    sensory_erev: nn.Parameter
    input_w: nn.Parameter | None
    input_b: nn.Parameter | None
    output_w: nn.Parameter | None
    output_b: nn.Parameter | None
    sparsity_mask: Tensor
    sensory_sparsity_mask: Tensor

    def __init__(
        self,
        wiring: WiringLike,
        in_features: int | None = None,
        input_mapping: str = "affine",
        output_mapping: str = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = False,
        solver: str = "semi_implicit",
        synapse_path: str = "auto",
    ) -> None:
        super().__init__()
        for what, name in (("input_mapping", input_mapping), ("output_mapping", output_mapping)):
            _check(
                name in MAPPINGS,
                f"unknown {what} {name!r}; valid mappings: {', '.join(MAPPINGS)}",
            )
        _check(
            synapse_path in SYNAPSE_PATHS,
            f"unknown synapse_path {synapse_path!r}; valid paths: {', '.join(SYNAPSE_PATHS)}",
        )
        self._solve = get_solver(solver)
        self._folds: FoldCache[LTCFolded] = FoldCache()
        # The native step's plan and the folds it was made from (rebuilt when those change).
        self._plan: tuple[LTCFolded, StepPlan | None] | None = None
        _check(
            isinstance(ode_unfolds, (int, np.integer))
            and not isinstance(ode_unfolds, bool)
            and ode_unfolds >= 1,
            f"ode_unfolds must be an integer >= 1; got {ode_unfolds!r}",
        )
        _check(
            float(epsilon) >= 0.0 and np.isfinite(float(epsilon)),
            f"epsilon must be finite and >= 0; got {epsilon}",
        )
        if in_features is not None:
            _check(int(in_features) >= 1, f"in_features must be >= 1; got {in_features}")
            wiring.build(int(in_features))
        _check(
            wiring.is_built(),
            "the wiring is not built, so the number of input features is unknown: pass "
            "in_features=... or call wiring.build(input_dim) first",
        )
        assert wiring.input_dim is not None
        self._wiring = wiring
        self.units = int(wiring.units)
        self.input_size = int(wiring.input_dim)
        self.state_size = self.units
        self.motor_size = int(wiring.output_dim if wiring.output_dim is not None else self.units)
        self.output_size = self.motor_size
        self.input_mapping = input_mapping
        self.output_mapping = output_mapping
        self.ode_unfolds = int(ode_unfolds)
        self.epsilon = float(epsilon)
        self.implicit_param_constraints = bool(implicit_param_constraints)
        self.solver = solver
        self.synapse_path = synapse_path
        self._allocate_parameters()
        self._build_index()
        self.register_load_state_dict_post_hook(_rebuild_after_load)

    # --- parameters ------------------------------------------------------------------------------

    def _init_value(self, shape: tuple[int, ...], name: str) -> Tensor:
        lo, hi = _INIT_RANGES[name]
        return torch.rand(*shape) * (hi - lo) + lo

    def _allocate_parameters(self) -> None:
        """ncps's parameters, drawn in ncps's order from the global torch generator."""
        H, S = self.units, self.input_size
        dtype = torch.get_default_dtype()
        for name, shape in (
            ("gleak", (H,)),
            ("vleak", (H,)),
            ("cm", (H,)),
            ("sigma", (H, H)),
            ("mu", (H, H)),
            ("w", (H, H)),
        ):
            self.register_parameter(name, nn.Parameter(self._init_value(shape, name)))
        erev = np.asarray(self._wiring.erev_initializer())
        self.erev = nn.Parameter(torch.as_tensor(erev, dtype=dtype))
        for name in ("sensory_sigma", "sensory_mu", "sensory_w"):
            self.register_parameter(name, nn.Parameter(self._init_value((S, H), name)))
        sensory_erev = np.asarray(self._wiring.sensory_erev_initializer())
        self.sensory_erev = nn.Parameter(torch.as_tensor(sensory_erev, dtype=dtype))
        adjacency = np.abs(np.asarray(self._wiring.adjacency_matrix))
        sensory = np.abs(np.asarray(self._wiring.sensory_adjacency_matrix))
        self.register_buffer("sparsity_mask", torch.as_tensor(adjacency, dtype=dtype))
        self.register_buffer("sensory_sparsity_mask", torch.as_tensor(sensory, dtype=dtype))
        in_scale, in_shift = MAPPINGS[self.input_mapping]
        out_scale, out_shift = MAPPINGS[self.output_mapping]
        M = self.motor_size
        self.register_parameter("input_w", nn.Parameter(torch.ones(S)) if in_scale else None)
        self.register_parameter("input_b", nn.Parameter(torch.zeros(S)) if in_shift else None)
        self.register_parameter("output_w", nn.Parameter(torch.ones(M)) if out_scale else None)
        self.register_parameter("output_b", nn.Parameter(torch.zeros(M)) if out_shift else None)

    def _build_index(self) -> None:
        """Index buffers (not in the state_dict) of the active synapses, from the masks."""
        for prefix, mask in (("rec", self.sparsity_mask), ("sen", self.sensory_sparsity_mask)):
            src, dst = torch.nonzero(mask.detach(), as_tuple=True)
            idx = synapse_index(src.cpu(), dst.cpu(), mask.shape[0], mask.shape[1])
            for field, t in zip(_INDEX_FIELDS, idx, strict=True):
                self.register_buffer(f"_{prefix}_{field}", t.to(mask.device), persistent=False)
        self.clear_cache()

    def _index(self, prefix: str) -> SynapseIndex:
        return SynapseIndex(*(getattr(self, f"_{prefix}_{f}") for f in _INDEX_FIELDS))

    def _sparse(self) -> bool:
        # auto: sparse in eager mode (measured faster at every density, see the module doc);
        # the dense formula's plain ops while tracing or exporting.
        return self.synapse_path == "sparse" or (self.synapse_path == "auto" and not is_tracing())

    def _positive(self, t: Tensor) -> Tensor:
        return F.softplus(t) if self.implicit_param_constraints else t

    def _synapses(self, prefix: str, names: tuple[str, str, str, str], mask: Tensor) -> Synapses:
        sigma, mu, w, erev = (getattr(self, n) for n in names)
        index = self._index(prefix) if self._sparse() else None
        return fold_synapses(sigma, mu, self._positive(w), erev, mask, index)

    def _fold(self) -> LTCFolded:
        return LTCFolded(
            leak=fold_leak(self._positive(self.gleak), self.vleak, self.epsilon),
            cm=self._positive(self.cm),
            recurrent=self._synapses("rec", ("sigma", "mu", "w", "erev"), self.sparsity_mask),
            sensory=self._synapses(
                "sen",
                ("sensory_sigma", "sensory_mu", "sensory_w", "sensory_erev"),
                self.sensory_sparsity_mask,
            ),
        )

    def _folded(self) -> LTCFolded:
        return self._folds.get(self, self._fold)

    def apply_constraints(self) -> None:
        """Explicit constraints (``implicit_param_constraints=False``): clip ``w``,
        ``sensory_w``, ``cm`` and ``gleak`` at 0, as ncps's ``apply_weight_constraints``."""
        if self.implicit_param_constraints:
            return
        with torch.no_grad():
            for name in _CONSTRAINED:
                getattr(self, name).clamp_(min=0.0)

    def masked_parameter_count(self) -> int:
        # sigma, mu, w and erev of every absent synapse, recurrent and sensory
        absent = int((self.sparsity_mask == 0).sum())
        sensory_absent = int((self.sensory_sparsity_mask == 0).sum())
        rec = sum(getattr(self, n).requires_grad for n in ("sigma", "mu", "w", "erev"))
        sen = sum(
            getattr(self, n).requires_grad
            for n in ("sensory_sigma", "sensory_mu", "sensory_w", "sensory_erev")
        )
        return absent * rec + sensory_absent * sen

    # --- mappings ------------------------------------------------------------------------------

    def _map_inputs(self, x: Tensor) -> Tensor:
        if self.input_w is not None:
            x = x * self.input_w
        if self.input_b is not None:
            x = x + self.input_b
        return x

    def output_of(self, h: Tensor) -> Tensor:
        out = h[..., : self.motor_size]
        if self.output_w is not None:
            out = out * self.output_w
        if self.output_b is not None:
            out = out + self.output_b
        return out

    # --- steps ---------------------------------------------------------------------------------

    def forward(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        if not torch.is_grad_enabled():
            plan = self._step_plan()
            if plan is not None and (done := native_step(plan, x, h, dt)) is not None:
                return done
        out, h_new = self.forward_sequence(x[:, None], h, dt)
        return out[:, 0], h_new

    def _step_plan(self) -> StepPlan | None:
        """The native one-call step's plan (:mod:`liquidcore.native.ltc_step`): semi-implicit
        solver, sparse synapses, no autograd, not tracing; ``None`` where it cannot run."""
        if self.solver != "semi_implicit" or self.synapse_path == "dense" or is_tracing():
            return None
        eff = self._folded()
        made = self._plan
        if made is not None and made[0] is eff:
            return made[1]
        plan = None
        rec, sen = eff.recurrent, eff.sensory
        if isinstance(rec, SparseSynapses) and isinstance(sen, SparseSynapses):
            plan = step_plan(
                leak=eff.leak,
                cu=capacitance(eff.cm, self.ode_unfolds),
                recurrent=_native_synapses(rec),
                sensory=_native_synapses(sen),
                input_w=self.input_w,
                input_b=self.input_b,
                output_w=self.output_w,
                output_b=self.output_b,
                inputs=self.input_size,
                motor=self.motor_size,
                unfolds=self.ode_unfolds,
            )
        self._plan = (eff, plan)
        return plan

    def forward_sequence(
        self, x: Tensor, h: Tensor, dt: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``T`` events at once: the sensory drive of all of them in one pass, then the solver.

        A masked-out step runs with Δt = 0 and a zero input, which leaves the state exactly as
        it was (and gives it no gradient), as stepping with ``torch.where`` would.
        """
        B, T, S = x.shape
        H = self.units
        eff = self._folded()
        xm = self._map_inputs(x)
        if mask is not None:
            xm = torch.where(mask[..., None], xm, 0.0)
            dt = torch.where(mask, dt, 0.0)
        xs = xm.permute(2, 1, 0).reshape(S, T * B)  # column t·B + b
        drive = currents(xs, eff.sensory).view(2 * H, T, B).transpose(0, 1) + eff.leak[:, None]
        dts = dt.t().reshape(T, 1, B)
        states = self._solve(h.t(), drive, dts, eff.cm, eff.recurrent, self.ode_unfolds)
        out = self.output_of(states.permute(2, 0, 1))
        return out.contiguous(), states[-1].t().contiguous()

    # --- config and ncps compatibility ----------------------------------------------------------

    @property
    def wiring(self) -> WiringLike:
        return self._wiring

    def get_config(self) -> dict[str, Any]:
        return {
            "type": self.cell_type,
            "wiring": self._wiring.get_config(),
            "in_features": self.input_size,
            "input_mapping": self.input_mapping,
            "output_mapping": self.output_mapping,
            "ode_unfolds": self.ode_unfolds,
            "epsilon": self.epsilon,
            "implicit_param_constraints": self.implicit_param_constraints,
            "solver": self.solver,
            "synapse_path": self.synapse_path,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LTCCell:
        _check(
            config.get("type") == cls.cell_type,
            f"{cls.__name__}.from_config needs a config of type {cls.cell_type!r}; "
            f"got {config.get('type')!r}",
        )
        from liquidcore.wirings import wiring_from_config

        args = {k: v for k, v in config.items() if k not in ("type", "wiring")}
        return cls(wiring_from_config(config["wiring"]), **args)

    def ncps_key_map(self, prefix: str = "rnn_cell.") -> dict[str, str]:
        """``{ncps state_dict key: ours}`` (the same names); ``prefix`` is where the cell sits in
        the ncps module (``"rnn_cell."`` in ``ncps.torch.LTC``, ``""`` for a bare cell)."""
        return {f"{prefix}{k}": k for k in self.state_dict()}


def _native_synapses(syn: SparseSynapses) -> NativeSynapses:
    return NativeSynapses(syn.pair_w, syn.reduce_w, syn.idx.src, syn.idx.reduce_offsets)


def _rebuild_after_load(module: nn.Module, incompatible_keys: Any) -> None:
    """A loaded mask may differ from the wiring's: rebuild the synapse index from it."""
    assert isinstance(module, LTCCell)
    module._build_index()
