"""ncps wiring objects -> ours: :func:`wiring_from_ncps`.

An ncps wiring's arguments are read from its private attributes and ours regenerated from them;
both replay the same random streams, so the matrices must match (checked).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import numpy as np

from liquidcore.wirings import NCP, AutoNCP, FullyConnected, Random, Wiring

W = TypeVar("W", bound=Wiring)


def _ncps_ncp_seed(wiring: Any) -> int:
    """The seed of an ncps NCP, which does not store it: read it off an unused generator."""
    state = wiring._rng.get_state(legacy=False)["state"]
    # An MT19937 seeded with an int and not drawn from yet has pos == 624 and the seed as its
    # first key word (numpy's init_genrand); the rest of the key confirms it.
    if state["pos"] == 624:
        candidate = int(state["key"][0])
        fresh = np.random.RandomState(candidate).get_state(legacy=False)["state"]
        if np.array_equal(fresh["key"], state["key"]):
            return candidate
    return 22222  # ncps's default; the matrix check in wiring_from_ncps catches a wrong guess


@overload
def wiring_from_ncps(wiring: Any, *, seed: int | None = None) -> Wiring: ...


@overload
def wiring_from_ncps(wiring: Any, *, seed: int | None = None, expect: type[W]) -> W: ...


def wiring_from_ncps(
    wiring: Any, *, seed: int | None = None, expect: type[Wiring] = Wiring
) -> Wiring:
    """Convert an ncps 1.0.1 wiring object (built or not) into the same class of ours.

    Parameters are read from its private attributes and the wiring regenerated; its matrices
    must equal ncps's, else ``ValueError`` (an ncps wiring built twice or edited by hand).
    ``seed`` is only for ``ncps.wirings.NCP``, which does not store its seed: it is recovered
    from an unbuilt one, and a built one with a seed other than 22222 needs it passed.
    ``expect``: the class of ours the result must be (``ValueError`` otherwise).
    """
    ours = _convert(wiring, seed)
    if not isinstance(ours, expect):
        raise ValueError(
            f"{type(wiring).__name__} converts to {type(ours).__name__}, not a {expect.__name__}"
        )
    return ours


def _convert(wiring: Any, seed: int | None) -> Wiring:
    from ncps import wirings as nw  # ncps is a dev dependency, needed only here

    kind = type(wiring)
    if seed is not None and kind is not nw.NCP:
        raise ValueError("seed= is only needed for ncps.wirings.NCP, which does not store it")
    ours: Wiring
    if kind is nw.Wiring:
        return Wiring._from_args(
            {
                "units": wiring.units,
                "output_dim": wiring.output_dim,
                "input_dim": wiring.input_dim,
                "adjacency_matrix": wiring.adjacency_matrix,
                "sensory_adjacency_matrix": wiring.sensory_adjacency_matrix,
            }
        )
    if kind is nw.FullyConnected:
        ours = FullyConnected(
            wiring.units, wiring.output_dim, wiring._erev_init_seed, wiring.self_connections
        )
    elif kind is nw.Random:
        ours = Random(wiring.units, wiring.output_dim, wiring.sparsity_level, wiring._random_seed)
    elif kind is nw.AutoNCP:
        ours = AutoNCP(wiring.units, wiring._output_size, wiring._sparsity_level, wiring._seed)
    elif kind is nw.NCP:
        ours = NCP(
            wiring._num_inter_neurons,
            wiring._num_command_neurons,
            wiring._num_motor_neurons,
            wiring._sensory_fanout,
            wiring._inter_fanout,
            wiring._recurrent_command_synapses,
            wiring._motor_fanin,
            seed=_ncps_ncp_seed(wiring) if seed is None else seed,
        )
    else:
        raise ValueError(
            f"cannot convert {kind.__module__}.{kind.__qualname__}; expected an ncps.wirings "
            "Wiring, FullyConnected, Random, NCP or AutoNCP"
        )
    if wiring.input_dim is not None:
        ours.build(wiring.input_dim)
    same = np.array_equal(ours.adjacency_matrix, wiring.adjacency_matrix) and (
        ours.sensory_adjacency_matrix is None
        or np.array_equal(ours.sensory_adjacency_matrix, wiring.sensory_adjacency_matrix)
    )
    if not same:
        hint = " or pass seed= (ncps's NCP does not store its seed)" if kind is nw.NCP else ""
        raise ValueError(
            f"the ncps {kind.__name__}'s matrices differ from those its parameters generate: it "
            f"was built more than once or edited with add_synapse{hint}"
        )
    return ours
