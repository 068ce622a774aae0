"""Wirings: ncps 1.0.1 parity of every matrix, config round trips, roles, errors, conversion."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from ncps import wirings as nw

from liquidcore import wirings as lw
from liquidcore.compat.ncps_wirings import wiring_from_ncps

INPUT_DIMS = (1, 3, 16, 40)


def assert_same_matrices(ours: lw.Wiring, ref: Any) -> None:
    assert ours.adjacency_matrix.dtype == np.int32
    assert np.array_equal(ours.adjacency_matrix, ref.adjacency_matrix)
    assert np.array_equal(ours.erev_initializer(), ref.erev_initializer())
    if ref.sensory_adjacency_matrix is None:
        assert ours.sensory_adjacency_matrix is None
        return
    assert ours.sensory_adjacency_matrix is not None
    assert ours.sensory_adjacency_matrix.dtype == np.int32
    assert np.array_equal(ours.sensory_adjacency_matrix, ref.sensory_adjacency_matrix)
    assert np.array_equal(ours.sensory_erev_initializer(), ref.sensory_erev_initializer())


def build_both(ours: lw.Wiring, ref: Any, input_dim: int) -> None:
    # Unbuilt matrices first: the stream drawn in __init__ must match before it goes on in build.
    assert_same_matrices(ours, ref)
    ours.build(input_dim)
    ref.build(input_dim)
    assert_same_matrices(ours, ref)
    assert set(np.unique(ours.adjacency_matrix)) <= {-1, 0, 1}
    assert ours.synapse_count == int(ref.synapse_count)
    assert ours.sensory_synapse_count == int(ref.sensory_synapse_count)


# -- ncps parity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("input_dim", INPUT_DIMS)
@pytest.mark.parametrize("seed", [1111, 0, 7])
@pytest.mark.parametrize(
    ("units", "output_dim", "self_connections"),
    [(1, None, True), (5, None, True), (5, 2, False), (12, 3, True), (12, None, False)],
)
def test_fully_connected_matches_ncps(
    units: int, output_dim: int | None, self_connections: bool, seed: int, input_dim: int
) -> None:
    ours = lw.FullyConnected(units, output_dim, seed, self_connections)
    ref = nw.FullyConnected(units, output_dim, seed, self_connections)
    build_both(ours, ref, input_dim)
    assert ours.output_dim == ref.output_dim
    if not self_connections:
        assert not np.diagonal(ours.adjacency_matrix).any()
        assert ours.synapse_count == units * (units - 1)


def test_fully_connected_defaults_match_ncps() -> None:
    build_both(lw.FullyConnected(30), nw.FullyConnected(30), 40)


@pytest.mark.parametrize("input_dim", INPUT_DIMS)
@pytest.mark.parametrize("seed", [1111, 3])
@pytest.mark.parametrize("sparsity_level", [0.0, 0.3, 0.9])
@pytest.mark.parametrize(("units", "output_dim"), [(1, None), (6, None), (20, 4)])
def test_random_matches_ncps(
    units: int, output_dim: int | None, sparsity_level: float, seed: int, input_dim: int
) -> None:
    ours = lw.Random(units, output_dim, sparsity_level, seed)
    ref = nw.Random(units, output_dim, sparsity_level, seed)
    build_both(ours, ref, input_dim)
    assert ours.synapse_count == round(units * units * (1 - sparsity_level))
    assert ours.sensory_synapse_count == round(input_dim * units * (1 - sparsity_level))


def test_random_keeps_the_second_of_two_sensory_polarity_draws() -> None:
    """ncps's quirk: dropping the first draw would give other polarities and a shifted stream."""
    ours = lw.Random(8, sparsity_level=0.0, random_seed=5)
    ours.build(4)
    rng = np.random.default_rng(5)
    pairs = rng.choice(64, size=64, replace=False)
    for _ in pairs:
        rng.choice([-1, 1, 1])
    flat = rng.choice(32, size=32, replace=False)
    expected = np.zeros((4, 8), dtype=np.int32)
    for i in flat:
        rng.choice([-1, 1, 1])
        expected[i // 8, i % 8] = rng.choice([-1, 1, 1])
    assert np.array_equal(ours.sensory_erev_initializer(), expected)


NCP_ARGS = [
    (10, 8, 4, 4, 4, 6, 4),
    (6, 4, 2, 3, 2, 4, 2),
    (3, 2, 1, 1, 1, 1, 1),
    (12, 5, 3, 0, 5, 0, 1),  # no sensory fan-out: every inter neuron is reached by the fill step
    (20, 10, 6, 12, 3, 9, 2),
]


@pytest.mark.parametrize("input_dim", INPUT_DIMS)
@pytest.mark.parametrize("seed", [22222, 5, 2**32 - 1])
@pytest.mark.parametrize("args", NCP_ARGS)
def test_ncp_matches_ncps(
    args: tuple[int, int, int, int, int, int, int], seed: int, input_dim: int
) -> None:
    build_both(lw.NCP(*args, seed=seed), nw.NCP(*args, seed=seed), input_dim)


def test_ncp_default_seed_matches_ncps() -> None:
    build_both(lw.NCP(*NCP_ARGS[0]), nw.NCP(*NCP_ARGS[0]), 3)


# (units, output_size, sparsity_level); the default sparsity 0.5 is spelled out.
AUTO_NCP_ARGS = [
    (64, 8, 0.5),
    (28, 4, 0.5),
    (16, 2, 0.3),
    (100, 10, 0.8),
    (4, 1, 0.5),
    (20, 5, 1.0),
]


@pytest.mark.parametrize("input_dim", INPUT_DIMS)
@pytest.mark.parametrize("seed", [22222, 1])
@pytest.mark.parametrize("args", AUTO_NCP_ARGS)
def test_auto_ncp_matches_ncps(args: tuple[int, int, float], seed: int, input_dim: int) -> None:
    ours = lw.AutoNCP(*args, seed=seed)
    ref = nw.AutoNCP(*args, seed=seed)
    build_both(ours, ref, input_dim)
    assert ours.units == ref.units
    assert ours.output_dim == ref.output_dim
    assert ours.sensory_fanout == ref._sensory_fanout
    assert ours.inter_fanout == ref._inter_fanout
    assert ours.recurrent_command_synapses == ref._recurrent_command_synapses
    assert ours.motor_fanin == ref._motor_fanin


@pytest.mark.parametrize("seed", range(12))
def test_auto_ncp_matches_ncps_across_seeds(seed: int) -> None:
    build_both(lw.AutoNCP(28, 4, seed=seed), nw.AutoNCP(28, 4, seed=seed), 3)


def test_wiring_does_not_touch_the_global_numpy_rng() -> None:
    before = np.random.get_state(legacy=False)
    for wiring in (lw.FullyConnected(4), lw.Random(4, sparsity_level=0.5), lw.AutoNCP(10, 2)):
        wiring.build(3)
    after = np.random.get_state(legacy=False)
    assert np.array_equal(before["state"]["key"], after["state"]["key"])
    assert before["state"]["pos"] == after["state"]["pos"]


_DIGEST_CODE = """
import hashlib
from liquidcore import wirings as lw

def digest():
    h = hashlib.sha256()
    for w in (lw.FullyConnected(6, 2), lw.Random(7, sparsity_level=0.3),
              lw.NCP(6, 4, 2, 3, 2, 4, 2), lw.AutoNCP(28, 4, seed=9)):
        w.build(5)
        h.update(w.adjacency_matrix.tobytes())
        h.update(w.sensory_adjacency_matrix.tobytes())
    return h.hexdigest()
"""


def test_same_arguments_give_same_matrices_in_a_new_process() -> None:
    namespace: dict[str, Any] = {}
    exec(_DIGEST_CODE, namespace)
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_CODE + "print(digest())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == namespace["digest"]()


# -- configs --------------------------------------------------------------------------------------


def make_custom(built: bool = True) -> lw.Wiring:
    w = lw.Wiring(4)
    w.set_output_dim(2)
    w.add_synapse(0, 1, 1)
    w.add_synapse(3, 0, -1)
    w.add_synapse(2, 2, 1)
    if built:
        w.build(3)
        w.add_sensory_synapse(0, 3, -1)
        w.add_sensory_synapse(2, 1, 1)
    return w


WIRING_NAMES = ["auto_ncp", "custom", "fully_connected", "ncp", "random"]


def make_wiring(name: str, built: bool = False) -> lw.Wiring:
    """A wiring of each registered type; ``built`` ones have 3 inputs."""
    if name == "custom":
        return make_custom(built)
    wiring = {
        "fully_connected": lambda: lw.FullyConnected(6, 2, 9, False),
        "random": lambda: lw.Random(7, 3, 0.3, 4),
        "ncp": lambda: lw.NCP(6, 4, 2, 3, 2, 4, 2, seed=31),
        "auto_ncp": lambda: lw.AutoNCP(16, 2, 0.3, seed=8),
    }[name]()
    if built:
        wiring.build(3)
    return wiring


def json_round_trip(wiring: lw.Wiring) -> lw.Wiring:
    config = json.loads(json.dumps(wiring.get_config()))
    return lw.wiring_from_config(config)


@pytest.mark.parametrize("built", [False, True])
@pytest.mark.parametrize("name", WIRING_NAMES)
def test_config_round_trips_through_json(name: str, built: bool) -> None:
    wiring = make_wiring(name, built)
    config = wiring.get_config()
    assert config["type"] == name
    assert config["input_dim"] == (3 if built else None)
    again = json_round_trip(wiring)
    assert type(again) is type(wiring)
    assert again.get_config() == config
    assert_same_matrices(again, wiring)
    assert again.output_dim == wiring.output_dim
    if not built:
        # The stream goes on into build exactly as the original's would.
        wiring.build(5)
        again.build(5)
        assert_same_matrices(again, wiring)


EXPECTED_ARGS: dict[str, dict[str, Any]] = {
    "fully_connected": {
        "units": 6,
        "output_dim": 2,
        "erev_init_seed": 9,
        "self_connections": False,
    },
    "random": {"units": 7, "output_dim": 3, "sparsity_level": 0.3, "random_seed": 4},
    "ncp": {
        "inter_neurons": 6,
        "command_neurons": 4,
        "motor_neurons": 2,
        "sensory_fanout": 3,
        "inter_fanout": 2,
        "recurrent_command_synapses": 4,
        "motor_fanin": 2,
        "seed": 31,
    },
    "auto_ncp": {"units": 16, "output_size": 2, "sparsity_level": 0.3, "seed": 8},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ARGS))
def test_config_holds_every_constructor_argument(name: str) -> None:
    config = make_wiring(name).get_config()
    expected = EXPECTED_ARGS[name]
    assert config == {"type": name, **expected, "input_dim": None}


def test_from_config_on_a_class_rebuilds_that_class() -> None:
    config = lw.AutoNCP(28, 4).get_config()
    assert type(lw.NCP.from_config(config)) is lw.AutoNCP
    assert type(lw.Wiring.from_config(config)) is lw.AutoNCP
    with pytest.raises(ValueError, match="is not a FullyConnected"):
        lw.FullyConnected.from_config(config)


def test_registry_names_the_classes() -> None:
    assert sorted(lw.WIRINGS) == WIRING_NAMES
    assert {name: cls.type_name for name, cls in lw.WIRINGS.items()} == {
        name: name for name in lw.WIRINGS
    }


@pytest.mark.parametrize("kind", ["lstm", None, 3])
def test_unknown_config_type_lists_valid_ones(kind: Any) -> None:
    with pytest.raises(ValueError, match=r"valid types are \['auto_ncp', 'custom', 'fully_conn"):
        lw.wiring_from_config({"type": kind, "units": 4})


def test_config_with_wrong_keys_is_refused() -> None:
    config = lw.FullyConnected(4).get_config()
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        lw.wiring_from_config({**config, "colour": "red"})
    del config["erev_init_seed"]
    with pytest.raises(ValueError, match=r"lacks keys \['erev_init_seed'\]"):
        lw.wiring_from_config(config)


def test_custom_config_with_bad_matrix_is_refused() -> None:
    config = make_custom().get_config()
    with pytest.raises(ValueError, match="may only hold -1, 0 and"):
        lw.wiring_from_config({**config, "adjacency_matrix": [[2] * 4] * 4})
    with pytest.raises(ValueError, match=r"must have shape \[3, 4\]"):
        lw.wiring_from_config({**config, "sensory_adjacency_matrix": [[0] * 4] * 2})


def test_unregistered_subclass_does_not_serialise_as_its_parent() -> None:
    class Mine(lw.FullyConnected):
        pass

    with pytest.raises(ValueError, match="not a registered wiring"):
        Mine(4).get_config()


# -- roles ----------------------------------------------------------------------------------------


def test_ncp_roles() -> None:
    w = lw.NCP(3, 2, 1, 2, 1, 1, 1)
    assert w.units == 6
    assert w.output_dim == 1
    assert w.motor_neurons == [0]
    assert w.command_neurons == [1, 2]
    assert w.inter_neurons == [3, 4, 5]
    assert [w.neuron_type(i) for i in range(6)] == ["motor"] + ["command"] * 2 + ["inter"] * 3
    assert w.num_layers == 3
    assert [w.get_neurons_of_layer(i) for i in range(3)] == [[3, 4, 5], [1, 2], [0]]
    assert w.input_dim is None
    assert not w.is_built()
    assert w.synapse_count == 0  # every NCP synapse is drawn in build, as in ncps
    w.build(4)
    assert w.is_built()
    assert w.sensory_neurons == [0, 1, 2, 3]


@pytest.mark.parametrize("args", AUTO_NCP_ARGS)
def test_auto_ncp_roles_match_ncps(args: tuple[int, int, float]) -> None:
    ours, ref = lw.AutoNCP(*args), nw.AutoNCP(*args)
    types = [ref.get_type_of_neuron(i) for i in range(ref.units)]
    assert [ours.get_type_of_neuron(i) for i in range(ours.units)] == types
    assert ours.motor_neurons == [i for i, t in enumerate(types) if t == "motor"]
    assert ours.command_neurons == [i for i, t in enumerate(types) if t == "command"]
    assert ours.inter_neurons == [i for i, t in enumerate(types) if t == "inter"]
    assert ours.num_layers == ref.num_layers
    for layer in range(3):
        assert ours.get_neurons_of_layer(layer) == ref.get_neurons_of_layer(layer)


def test_fully_connected_roles() -> None:
    w = lw.FullyConnected(5, 2)
    assert w.motor_neurons == [0, 1]
    assert w.command_neurons == []
    assert w.inter_neurons == [2, 3, 4]
    assert w.num_layers == 1
    assert w.get_neurons_of_layer(0) == [0, 1, 2, 3, 4]
    assert [w.neuron_type(i) for i in range(5)] == [
        nw.FullyConnected(5, 2).get_type_of_neuron(i) for i in range(5)
    ]


def test_build_is_idempotent_and_refuses_another_input_dim() -> None:
    w = lw.FullyConnected(5)
    w.build(3)
    sensory = w.sensory_erev_initializer()
    w.build(3)
    assert np.array_equal(w.sensory_erev_initializer(), sensory)
    with pytest.raises(ValueError, match="built for 3 inputs but build\\(\\) got 4"):
        w.build(4)


@pytest.mark.parametrize("name", WIRING_NAMES)
def test_synapse_index_lists_nonzero_synapses_by_dst_then_src(name: str) -> None:
    wiring = make_wiring(name, built=True)
    assert wiring.sensory_adjacency_matrix is not None
    for (src, dst, pol), matrix in (
        (wiring.synapse_index(), wiring.adjacency_matrix),
        (wiring.sensory_synapse_index(), wiring.sensory_adjacency_matrix),
    ):
        assert src.dtype == dst.dtype == pol.dtype == np.int64
        assert len(src) == np.count_nonzero(matrix)
        rebuilt = np.zeros_like(matrix)
        rebuilt[src, dst] = pol
        assert np.array_equal(rebuilt, matrix)
        order = np.lexsort((src, dst))
        assert np.array_equal(order, np.arange(len(src)))


def test_synapse_index_values() -> None:
    w = make_custom()
    assert [a.tolist() for a in w.synapse_index()] == [[3, 0, 2], [0, 1, 2], [-1, 1, 1]]
    assert [a.tolist() for a in w.sensory_synapse_index()] == [[2, 0], [1, 3], [1, -1]]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: lw.Wiring(0), "units must be >= 1"),
        (lambda: lw.FullyConnected(-3), "units must be >= 1"),
        (lambda: lw.FullyConnected(4, 5), r"output_dim must be <= units \(4\)"),
        (lambda: lw.FullyConnected(4, 0), "output_dim must be >= 1"),
        (lambda: lw.FullyConnected(4, erev_init_seed=-1), "erev_init_seed must be >= 0"),
        (lambda: lw.FullyConnected(4, erev_init_seed=None), "fixed seed keeps"),  # type: ignore[arg-type]
        (lambda: lw.FullyConnected(4, self_connections="no"), "self_connections must be"),  # type: ignore[arg-type]
        (lambda: lw.Random(4, sparsity_level=1.0), r"sparsity_level must be in \[0, 1\)"),
        (lambda: lw.Random(4, sparsity_level=-0.1), r"sparsity_level must be in \[0, 1\)"),
        (lambda: lw.Random(4, sparsity_level="x"), "sparsity_level must be a number"),  # type: ignore[arg-type]
        (lambda: lw.NCP(0, 2, 1, 0, 1, 1, 1), "inter_neurons must be >= 1"),
        (lambda: lw.NCP(3, 2, 1, 4, 1, 1, 1), "sensory_fanout is 4 but there are only 3 inter"),
        (lambda: lw.NCP(3, 2, 1, 2, 3, 1, 1), "inter_fanout is 3 but there are only 2 command"),
        (lambda: lw.NCP(3, 2, 1, 2, 1, 1, 3), "motor_fanin is 3 but there are only 2 command"),
        (lambda: lw.NCP(3, 2, 1, 2, 1, -1, 1), "recurrent_command_synapses must be >= 0"),
        (lambda: lw.NCP(3, 2, 1, 2, 1, 1, 1, seed=2**32), "seed must be <= 4294967295"),
        (lambda: lw.NCP(3.0, 2, 1, 2, 1, 1, 1), "inter_neurons must be an integer"),  # type: ignore[arg-type]
        (lambda: lw.AutoNCP(10, 8), "output_size must be less than units - 2"),
        (lambda: lw.AutoNCP(10, 0), "output_size must be >= 1"),
        (lambda: lw.AutoNCP(10, 2, 0.05), r"sparsity_level must be in \[0.1, 1.0\]"),
        (lambda: lw.AutoNCP(10, 2, 1.5), r"sparsity_level must be in \[0.1, 1.0\]"),
    ],
)
def test_construction_errors(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_ncps_rejects_what_we_reject_for_auto_ncp() -> None:
    for args in [(10, 8), (10, 2, 0.05), (10, 2, 1.5)]:
        with pytest.raises(ValueError):  # ncps's own messages
            nw.AutoNCP(*args)


def test_hand_made_wiring_errors() -> None:
    w = lw.Wiring(3)
    with pytest.raises(ValueError, match="polarity must be -1"):
        w.add_synapse(0, 1, 0)
    with pytest.raises(ValueError, match=r"dest must be a unit index in \[0, 3\)"):
        w.add_synapse(0, 3, 1)
    with pytest.raises(ValueError, match="call build\\(input_dim\\) first"):
        w.add_sensory_synapse(0, 1, 1)
    with pytest.raises(ValueError, match="call set_output_dim"):
        w.neuron_type(0)
    with pytest.raises(ValueError, match="call build\\(input_dim\\) first"):
        _ = w.sensory_synapse_count
    with pytest.raises(ValueError, match="input_dim must be >= 1"):
        w.build(0)
    w.build(2)
    with pytest.raises(ValueError, match=r"src must be an input index in \[0, 2\)"):
        w.add_sensory_synapse(2, 1, 1)
    with pytest.raises(ValueError, match="layer_id must be 0"):
        w.get_neurons_of_layer(1)
    with pytest.raises(ValueError, match=r"layer_id must be 0, 1 or 2"):
        lw.AutoNCP(10, 2).get_neurons_of_layer(3)
    with pytest.raises(ValueError, match=r"neuron_id must be a unit index in \[0, 10\)"):
        lw.AutoNCP(10, 2).neuron_type(10)


# -- conversion from ncps --------------------------------------------------------------------------


NCPS_PAIRS = {
    "fully_connected": (lambda: nw.FullyConnected(6, 2, 9, False), lw.FullyConnected),
    "random": (lambda: nw.Random(7, 3, 0.3, 4), lw.Random),
    "ncp": (lambda: nw.NCP(6, 4, 2, 3, 2, 4, 2), lw.NCP),
    "ncp_seeded": (lambda: nw.NCP(6, 4, 2, 3, 2, 4, 2, seed=123), lw.NCP),
    "auto_ncp": (lambda: nw.AutoNCP(16, 2, 0.3, seed=8), lw.AutoNCP),
}


@pytest.mark.parametrize("built", [False, True])
@pytest.mark.parametrize("name", sorted(NCPS_PAIRS))
def test_wiring_from_ncps(name: str, built: bool) -> None:
    make_ref, cls = NCPS_PAIRS[name]
    ref = make_ref()
    if built:
        ref.build(5)
    ours = wiring_from_ncps(ref, seed=123 if name == "ncp_seeded" and built else None)
    assert type(ours) is cls
    assert ours.input_dim == ref.input_dim
    assert_same_matrices(ours, ref)
    if not built:
        ours.build(5)
        ref.build(5)
        assert_same_matrices(ours, ref)
    seed = 123 if name == "ncp_seeded" else None
    assert type(wiring_from_ncps(make_ref(), seed=seed, expect=cls)) is cls


def test_ncps_ncp_seed_is_recovered_from_an_unbuilt_generator() -> None:
    assert wiring_from_ncps(nw.NCP(6, 4, 2, 3, 2, 4, 2, seed=4242), expect=lw.NCP).seed == 4242
    assert wiring_from_ncps(nw.NCP(6, 4, 2, 3, 2, 4, 2), expect=lw.NCP).seed == 22222


def test_built_ncps_ncp_with_unknown_seed_asks_for_it() -> None:
    ref = nw.NCP(6, 4, 2, 3, 2, 4, 2, seed=4242)
    ref.build(5)
    with pytest.raises(ValueError, match="pass seed="):
        wiring_from_ncps(ref)
    assert wiring_from_ncps(ref, seed=4242, expect=lw.NCP).seed == 4242


def test_ncps_wiring_built_twice_is_refused() -> None:
    ref = nw.FullyConnected(4)
    ref.build(3)
    ref.build(3)  # ncps draws the sensory polarities again
    with pytest.raises(ValueError, match="built more than once"):
        wiring_from_ncps(ref)


def test_hand_made_ncps_wiring_converts_to_custom() -> None:
    ref = nw.Wiring(4)
    ref.set_output_dim(1)
    ref.add_synapse(1, 2, -1)
    ref.build(2)
    ref.add_sensory_synapse(1, 3, 1)
    ours = wiring_from_ncps(ref, expect=lw.Wiring)
    assert type(ours) is lw.Wiring
    assert ours.output_dim == 1
    assert_same_matrices(ours, ref)
    assert_same_matrices(json_round_trip(ours), ref)


def test_from_ncps_errors() -> None:
    with pytest.raises(ValueError, match=r"cannot convert builtins\.dict"):
        wiring_from_ncps({})
    with pytest.raises(ValueError, match=r"only needed for ncps\.wirings\.NCP"):
        wiring_from_ncps(nw.FullyConnected(3), seed=1)
    with pytest.raises(ValueError, match="converts to AutoNCP, not a Random"):
        wiring_from_ncps(nw.AutoNCP(10, 2), expect=lw.Random)
