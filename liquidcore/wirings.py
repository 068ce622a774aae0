"""Wirings: which neuron feeds which, and with what polarity.

A wiring holds two polarity matrices (int32, entries -1, 0 or +1): ``adjacency_matrix[src, dst]``
between the ``units`` neurons and ``sensory_adjacency_matrix[src, dst]`` from the ``input_dim``
inputs, which exists once ``build(input_dim)`` has been called.

Given the same arguments, seed and input dimension, ``FullyConnected``, ``Random``, ``NCP`` and
``AutoNCP`` give exactly the matrices of ncps 1.0.1: they replay its numpy random streams call
for call, each wiring on its own generator (never numpy's global one), and the stream drawn in
``__init__`` continues into ``build``. Unlike ncps, ``build`` is idempotent, configs round-trip to
the same class (``get_config`` / ``wiring_from_config``); ncps wiring objects convert with
:func:`liquidcore.compat.ncps_wirings.wiring_from_ncps`.

Neuron ids follow ncps: the first ``output_dim`` units are the motor neurons; in an NCP they are
followed by the command neurons, then the inter neurons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

IntMatrix = npt.NDArray[np.int32]
IndexArray = npt.NDArray[np.int64]
_W = TypeVar("_W", bound="Wiring")

# The populations ncps draws polarities from: FullyConnected and Random call
# Generator.choice([-1, 1, 1]) (two thirds excitatory), NCP calls RandomState.choice([-1, 1]).
# choice draws an index, so an array with the same entries gives the same stream as ncps's list.
_POLARITY_2_OF_3 = np.array([-1, 1, 1])
_POLARITY_1_OF_2 = np.array([-1, 1])
_MAX_LEGACY_SEED = 2**32 - 1  # np.random.RandomState refuses larger seeds


def _check_int(name: str, value: object, minimum: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer{what}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{what}; got {value}")
    return int(value)


def _check_seed(name: str, value: object, maximum: int | None = None) -> int:
    # An int seed is required (not None) so that the same arguments give the same matrices in
    # any process; ncps would accept None and draw an unrecorded seed.
    seed = _check_int(name, value, 0, " (a fixed seed keeps the wiring reproducible)")
    if maximum is not None and seed > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {seed}")
    return seed


def _check_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    return float(value)


def _polarity_matrix(value: object, shape: tuple[int, int], name: str) -> IntMatrix:
    """A copy of ``value`` as an int32 matrix of ``shape`` holding only -1, 0 and +1."""
    matrix = np.array(value)
    if matrix.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}; got {list(matrix.shape)}")
    if matrix.size and not np.isin(matrix, (-1, 0, 1)).all():
        raise ValueError(f"{name} may only hold -1, 0 and +1")
    return matrix.astype(np.int32)


def _synapse_index(matrix: IntMatrix) -> tuple[IndexArray, IndexArray, IndexArray]:
    # nonzero() of the transpose walks (dst, src) in row-major order: sorted by dst, then src.
    dst, src = np.nonzero(matrix.T)
    return src.astype(np.int64), dst.astype(np.int64), matrix[src, dst].astype(np.int64)


class Wiring:
    """A wiring of ``units`` neurons; the base class is built by hand with ``add_synapse``.

    ``Wiring(units)``, ``set_output_dim(n)``, ``add_synapse(src, dst, polarity)``,
    ``build(input_dim)`` and ``add_sensory_synapse(src, dst, polarity)`` work as in ncps. A hand-
    made wiring serialises as type ``"custom"`` with its matrices.
    """

    type_name: ClassVar[str] = "custom"

    def __init__(self, units: int) -> None:
        self.units = _check_int("units", units, 1, " (the number of neurons)")
        self.adjacency_matrix: IntMatrix = np.zeros((self.units, self.units), dtype=np.int32)
        self.sensory_adjacency_matrix: IntMatrix | None = None
        self.input_dim: int | None = None
        self.output_dim: int | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._constructor_args().items())
        return f"{type(self).__name__}({args}, input_dim={self.input_dim!r})"

    # -- building -------------------------------------------------------------------------------

    def is_built(self) -> bool:
        return self.input_dim is not None

    def build(self, input_dim: int) -> None:
        """Create the sensory synapses for ``input_dim`` inputs; a second call is a no-op."""
        input_dim = _check_int("input_dim", input_dim, 1, " (the number of input features)")
        if self.input_dim is not None:
            if self.input_dim != input_dim:
                raise ValueError(
                    f"conflicting input dimensions: the wiring was built for {self.input_dim} "
                    f"inputs but build() got {input_dim}; build a new wiring for a new input size"
                )
            return
        sensory = np.zeros((input_dim, self.units), dtype=np.int32)
        self.input_dim = input_dim
        self.sensory_adjacency_matrix = sensory
        self._build_sensory(sensory)

    def _build_sensory(self, sensory: IntMatrix) -> None:
        """Fill the sensory matrix (and, for an NCP, the recurrent one); none for the base."""

    def set_output_dim(self, output_dim: int) -> None:
        self.output_dim = _check_int("output_dim", output_dim, 1, " (the number of motor neurons)")
        if self.output_dim > self.units:
            raise ValueError(f"output_dim must be <= units ({self.units}); got {output_dim}")

    def add_synapse(self, src: int, dest: int, polarity: int) -> None:
        self._check_unit(src, "src")
        self._check_unit(dest, "dest")
        self.adjacency_matrix[src, dest] = self._check_polarity(polarity)

    def add_sensory_synapse(self, src: int, dest: int, polarity: int) -> None:
        sensory = self._require_sensory()
        if not 0 <= src < sensory.shape[0]:
            raise ValueError(f"src must be an input index in [0, {sensory.shape[0]}); got {src}")
        self._check_unit(dest, "dest")
        sensory[src, dest] = self._check_polarity(polarity)

    def _check_unit(self, neuron_id: int, name: str = "neuron_id") -> None:
        if not 0 <= neuron_id < self.units:
            raise ValueError(f"{name} must be a unit index in [0, {self.units}); got {neuron_id}")

    @staticmethod
    def _check_polarity(polarity: int) -> int:
        if polarity not in (-1, 1):
            raise ValueError(f"polarity must be -1 (inhibitory) or +1 (excitatory); got {polarity}")
        return int(polarity)

    def _require_sensory(self) -> IntMatrix:
        if self.sensory_adjacency_matrix is None:
            raise ValueError("the wiring is not built yet; call build(input_dim) first")
        return self.sensory_adjacency_matrix

    def _require_output_dim(self) -> int:
        if self.output_dim is None:
            raise ValueError("output_dim is not set; call set_output_dim(n) first")
        return self.output_dim

    # -- roles ----------------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return 1

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        if layer_id != 0:
            raise ValueError(f"layer_id must be 0 (this wiring has 1 layer); got {layer_id}")
        return list(range(self.units))

    def neuron_type(self, neuron_id: int) -> str:
        """``"motor"``, ``"command"`` or ``"inter"``."""
        self._check_unit(neuron_id)
        return "motor" if neuron_id < self._require_output_dim() else "inter"

    def get_type_of_neuron(self, neuron_id: int) -> str:
        """ncps's name for :meth:`neuron_type`."""
        return self.neuron_type(neuron_id)

    def _neurons_of_type(self, kind: str) -> list[int]:
        return [i for i in range(self.units) if self.neuron_type(i) == kind]

    @property
    def motor_neurons(self) -> list[int]:
        return self._neurons_of_type("motor")

    @property
    def command_neurons(self) -> list[int]:
        return self._neurons_of_type("command")

    @property
    def inter_neurons(self) -> list[int]:
        return self._neurons_of_type("inter")

    @property
    def sensory_neurons(self) -> list[int]:
        """The input indices (requires a built wiring)."""
        return list(range(self._require_sensory().shape[0]))

    # -- synapses -------------------------------------------------------------------------------

    @property
    def synapse_count(self) -> int:
        return int(np.abs(self.adjacency_matrix).sum())

    @property
    def sensory_synapse_count(self) -> int:
        return int(np.abs(self._require_sensory()).sum())

    def erev_initializer(self, shape: object = None, dtype: object = None) -> IntMatrix:
        """A copy of the recurrent polarities (``shape`` and ``dtype`` are ignored, as in ncps)."""
        return np.copy(self.adjacency_matrix)

    def sensory_erev_initializer(self, shape: object = None, dtype: object = None) -> IntMatrix:
        """A copy of the sensory polarities (``shape`` and ``dtype`` are ignored, as in ncps)."""
        return np.copy(self._require_sensory())

    def synapse_index(self) -> tuple[IndexArray, IndexArray, IndexArray]:
        """``(src, dst, polarity)`` of the recurrent synapses, int64, sorted by (dst, src)."""
        return _synapse_index(self.adjacency_matrix)

    def sensory_synapse_index(self) -> tuple[IndexArray, IndexArray, IndexArray]:
        """``(src, dst, polarity)`` of the sensory synapses (src = input index), by (dst, src)."""
        return _synapse_index(self._require_sensory())

    # -- serialisation --------------------------------------------------------------------------

    def _constructor_args(self) -> dict[str, Any]:
        return {"units": self.units}

    def get_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``wiring_from_config`` rebuilds the same class from it.

        A generated wiring records its arguments and ``input_dim``, not its matrices, so edits
        made with ``add_synapse`` after construction are not kept; a hand-made ``Wiring`` records
        its matrices.
        """
        if WIRINGS.get(self.type_name) is not type(self):
            raise ValueError(
                f"{type(self).__name__} is not a registered wiring; give it its own type_name "
                f"and add it to WIRINGS (registered: {sorted(WIRINGS)})"
            )
        if type(self) is Wiring:
            sensory = self.sensory_adjacency_matrix
            return {
                "type": self.type_name,
                "units": self.units,
                "output_dim": self.output_dim,
                "input_dim": self.input_dim,
                "adjacency_matrix": self.adjacency_matrix.tolist(),
                "sensory_adjacency_matrix": None if sensory is None else sensory.tolist(),
            }
        return {"type": self.type_name, **self._constructor_args(), "input_dim": self.input_dim}

    @classmethod
    def from_config(cls: type[_W], config: Mapping[str, Any]) -> _W:
        """Rebuild a wiring from ``get_config()``; it must be a ``cls`` (any registered type)."""
        wiring = wiring_from_config(config)
        if not isinstance(wiring, cls):
            raise ValueError(f"config of type {config['type']!r} is not a {cls.__name__}")
        return wiring

    @classmethod
    def _from_args(cls, args: dict[str, Any]) -> Wiring:
        """Construct from a config without ``type``; the base class restores its matrices."""
        required = {"units", "output_dim", "input_dim", "adjacency_matrix"}
        _check_keys(cls, args, required | {"sensory_adjacency_matrix"})
        wiring = Wiring(args["units"])
        if args["output_dim"] is not None:
            wiring.set_output_dim(args["output_dim"])
        shape = (wiring.units, wiring.units)
        wiring.adjacency_matrix = _polarity_matrix(args["adjacency_matrix"], shape, "adjacency")
        sensory = args["sensory_adjacency_matrix"]
        if args["input_dim"] is None:
            if sensory is not None:
                raise ValueError("a sensory_adjacency_matrix needs an input_dim")
            return wiring
        wiring.build(args["input_dim"])
        if sensory is None:
            raise ValueError("a built custom wiring needs its sensory_adjacency_matrix")
        shape = (args["input_dim"], wiring.units)
        wiring.sensory_adjacency_matrix = _polarity_matrix(sensory, shape, "sensory adjacency")
        return wiring


def _check_keys(cls: type[Wiring], args: Mapping[str, Any], required: set[str]) -> None:
    missing = sorted(required - set(args))
    unknown = sorted(set(args) - required)
    if missing or unknown:
        raise ValueError(
            f"config of type {cls.type_name!r} lacks keys {missing} and has unknown keys "
            f"{unknown}; expected exactly {sorted(required)} besides 'type'"
        )


class _GeneratedWiring(Wiring):
    """A wiring generated from its constructor arguments: the config records only those."""

    _config_keys: ClassVar[tuple[str, ...]]  # the constructor arguments, in signature order

    @classmethod
    def _from_args(cls, args: dict[str, Any]) -> Wiring:
        _check_keys(cls, args, {*cls._config_keys, "input_dim"})
        wiring = cls(**{k: args[k] for k in cls._config_keys})
        if args["input_dim"] is not None:
            wiring.build(args["input_dim"])
        return wiring


class FullyConnected(_GeneratedWiring):
    """Every neuron feeds every neuron (optionally not itself); every input feeds every neuron."""

    type_name = "fully_connected"
    _config_keys: ClassVar[tuple[str, ...]] = (
        "units",
        "output_dim",
        "erev_init_seed",
        "self_connections",
    )

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        erev_init_seed: int = 1111,
        self_connections: bool = True,
    ) -> None:
        super().__init__(units)
        self.set_output_dim(self.units if output_dim is None else output_dim)
        if not isinstance(self_connections, (bool, np.bool_)):
            raise ValueError(f"self_connections must be True or False; got {self_connections!r}")
        self.self_connections = bool(self_connections)
        self.erev_init_seed = _check_seed("erev_init_seed", erev_init_seed)
        self._rng = np.random.default_rng(self.erev_init_seed)
        for src in range(self.units):
            for dest in range(self.units):
                if src == dest and not self.self_connections:
                    continue
                self.adjacency_matrix[src, dest] = self._rng.choice(_POLARITY_2_OF_3)

    def _build_sensory(self, sensory: IntMatrix) -> None:
        for src in range(sensory.shape[0]):
            for dest in range(self.units):
                sensory[src, dest] = self._rng.choice(_POLARITY_2_OF_3)

    def _constructor_args(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "output_dim": self.output_dim,
            "erev_init_seed": self.erev_init_seed,
            "self_connections": self.self_connections,
        }


class Random(_GeneratedWiring):
    """A random ``1 - sparsity_level`` share of all possible synapses, recurrent and sensory."""

    type_name = "random"
    _config_keys: ClassVar[tuple[str, ...]] = (
        "units",
        "output_dim",
        "sparsity_level",
        "random_seed",
    )

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        sparsity_level: float = 0.0,
        random_seed: int = 1111,
    ) -> None:
        super().__init__(units)
        self.set_output_dim(self.units if output_dim is None else output_dim)
        self.sparsity_level = _check_float("sparsity_level", sparsity_level)
        if not 0.0 <= self.sparsity_level < 1.0:
            raise ValueError(
                f"sparsity_level must be in [0, 1) (the share of synapses left out); "
                f"got {sparsity_level}"
            )
        self.random_seed = _check_seed("random_seed", random_seed)
        self._rng = np.random.default_rng(self.random_seed)
        for src, dest in self._sample_pairs(self.units):
            self.adjacency_matrix[src, dest] = self._rng.choice(_POLARITY_2_OF_3)

    def _sample_pairs(self, n_src: int) -> list[tuple[int, int]]:
        n_pairs = n_src * self.units
        count = int(np.round(n_pairs * (1 - self.sparsity_level)))
        # ncps samples rows of the row-major list of (src, dest) pairs. Generator.choice picks
        # indices without looking at the population, so sampling the flat pair index is the
        # same draw from the stream.
        flat = self._rng.choice(n_pairs, size=count, replace=False)
        return [(int(i) // self.units, int(i) % self.units) for i in flat]

    def _build_sensory(self, sensory: IntMatrix) -> None:
        for src, dest in self._sample_pairs(sensory.shape[0]):
            # ncps quirk, replayed for identical streams: Random.build draws the polarity of a
            # sensory synapse twice and keeps the second draw.
            self._rng.choice(_POLARITY_2_OF_3)
            sensory[src, dest] = self._rng.choice(_POLARITY_2_OF_3)

    def _constructor_args(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "output_dim": self.output_dim,
            "sparsity_level": self.sparsity_level,
            "random_seed": self.random_seed,
        }


def _ncp_fan(
    rng: np.random.RandomState,
    anchors: list[int],
    pool: list[int],
    count: int,
    fill_limit: int,
    connect: Callable[[int, int, int], None],
) -> None:
    """One NCP layer as ncps draws it.

    Each anchor picks ``count`` distinct pool members; then each pool member no anchor picked
    gets ``mean`` distinct anchors, where ``mean = int(len(anchors) * count / len(pool))``
    clipped to ``[1, fill_limit]``. ``connect(anchor, member, polarity)`` adds a synapse.
    """
    unreached = list(pool)
    for anchor in anchors:
        for member in rng.choice(pool, size=count, replace=False):
            if member in unreached:
                unreached.remove(member)
            connect(anchor, int(member), int(rng.choice(_POLARITY_1_OF_2)))
    mean = min(max(int(len(anchors) * count / len(pool)), 1), fill_limit)
    for member in unreached:
        for anchor in rng.choice(anchors, size=mean, replace=False):
            connect(int(anchor), member, int(rng.choice(_POLARITY_1_OF_2)))


class NCP(_GeneratedWiring):
    """A Neural Circuit Policy: sensory -> inter -> command (recurrent) -> motor.

    ``units = inter_neurons + command_neurons + motor_neurons``; ids run motor, command, inter.
    The fan-outs and fan-in are per-neuron synapse counts; every synapse (recurrent ones too) is
    drawn in ``build``, so an unbuilt NCP has an empty adjacency matrix, as in ncps.
    """

    type_name = "ncp"
    _config_keys: ClassVar[tuple[str, ...]] = (
        "inter_neurons",
        "command_neurons",
        "motor_neurons",
        "sensory_fanout",
        "inter_fanout",
        "recurrent_command_synapses",
        "motor_fanin",
        "seed",
    )

    def __init__(
        self,
        inter_neurons: int,
        command_neurons: int,
        motor_neurons: int,
        sensory_fanout: int,
        inter_fanout: int,
        recurrent_command_synapses: int,
        motor_fanin: int,
        seed: int = 22222,
    ) -> None:
        n_inter = _check_int("inter_neurons", inter_neurons, 1, " (a count of neurons)")
        n_command = _check_int("command_neurons", command_neurons, 1, " (a count of neurons)")
        n_motor = _check_int("motor_neurons", motor_neurons, 1, " (a count of neurons)")
        super().__init__(n_inter + n_command + n_motor)
        self.set_output_dim(n_motor)
        self.num_inter_neurons = n_inter
        self.num_command_neurons = n_command
        self.num_motor_neurons = n_motor
        self.sensory_fanout = _check_int("sensory_fanout", sensory_fanout, 0)
        self.inter_fanout = _check_int("inter_fanout", inter_fanout, 0)
        self.recurrent_command_synapses = _check_int(
            "recurrent_command_synapses", recurrent_command_synapses, 0
        )
        self.motor_fanin = _check_int("motor_fanin", motor_fanin, 0)
        for name, value, limit, layer in (
            ("motor_fanin", self.motor_fanin, n_command, "command_neurons"),
            ("sensory_fanout", self.sensory_fanout, n_inter, "inter_neurons"),
            ("inter_fanout", self.inter_fanout, n_command, "command_neurons"),
        ):
            if value > limit:
                raise ValueError(
                    f"{name} is {value} but there are only {limit} {layer}; lower {name} or "
                    f"raise {layer}"
                )
        self.seed = _check_seed("seed", seed, _MAX_LEGACY_SEED)
        self._rng = np.random.RandomState(self.seed)
        self._motor = list(range(n_motor))
        self._command = list(range(n_motor, n_motor + n_command))
        self._inter = list(range(n_motor + n_command, self.units))

    @property
    def num_layers(self) -> int:
        return 3

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        """Layer 0 is the inter neurons, 1 the command neurons, 2 the motor neurons."""
        layers = (self._inter, self._command, self._motor)
        if not 0 <= layer_id < len(layers):
            raise ValueError(f"layer_id must be 0, 1 or 2 (inter, command, motor); got {layer_id}")
        return list(layers[layer_id])

    def neuron_type(self, neuron_id: int) -> str:
        self._check_unit(neuron_id)
        if neuron_id < self.num_motor_neurons:
            return "motor"
        if neuron_id < self.num_motor_neurons + self.num_command_neurons:
            return "command"
        return "inter"

    def _build_sensory(self, sensory: IntMatrix) -> None:
        rng, adjacency = self._rng, self.adjacency_matrix
        sensory_ids = list(range(sensory.shape[0]))

        def sensory_to_inter(src: int, dest: int, polarity: int) -> None:
            sensory[src, dest] = polarity

        def forward(src: int, dest: int, polarity: int) -> None:
            adjacency[src, dest] = polarity

        def backward(dest: int, src: int, polarity: int) -> None:
            adjacency[src, dest] = polarity

        # The fill limits are ncps's: sensory and motor fills are capped by the anchors' count,
        # the inter -> command fill by the command neurons' count.
        _ncp_fan(
            rng, sensory_ids, self._inter, self.sensory_fanout, len(sensory_ids), sensory_to_inter
        )
        _ncp_fan(rng, self._inter, self._command, self.inter_fanout, len(self._command), forward)
        for _ in range(self.recurrent_command_synapses):
            src = rng.choice(self._command)
            dest = rng.choice(self._command)
            adjacency[src, dest] = rng.choice(_POLARITY_1_OF_2)
        # Each motor neuron picks motor_fanin command neurons to listen to.
        _ncp_fan(rng, self._motor, self._command, self.motor_fanin, len(self._motor), backward)

    def _constructor_args(self) -> dict[str, Any]:
        return {
            "inter_neurons": self.num_inter_neurons,
            "command_neurons": self.num_command_neurons,
            "motor_neurons": self.num_motor_neurons,
            "sensory_fanout": self.sensory_fanout,
            "inter_fanout": self.inter_fanout,
            "recurrent_command_synapses": self.recurrent_command_synapses,
            "motor_fanin": self.motor_fanin,
            "seed": self.seed,
        }


class AutoNCP(NCP):
    """An NCP sized from ``units``, ``output_size`` and ``sparsity_level`` (ncps's rule)."""

    type_name = "auto_ncp"
    _config_keys: ClassVar[tuple[str, ...]] = ("units", "output_size", "sparsity_level", "seed")

    def __init__(
        self,
        units: int,
        output_size: int,
        sparsity_level: float = 0.5,
        seed: int = 22222,
    ) -> None:
        units = _check_int("units", units, 1, " (the number of neurons)")
        output_size = _check_int("output_size", output_size, 1, " (the number of motor neurons)")
        if output_size >= units - 2:
            raise ValueError(
                f"output_size must be less than units - 2 (got units={units}, output_size="
                f"{output_size}); use more units or fewer outputs (about 0.3 * units is typical)"
            )
        sparsity = _check_float("sparsity_level", sparsity_level)
        if not 0.1 <= sparsity <= 1.0:
            raise ValueError(f"sparsity_level must be in [0.1, 1.0]; got {sparsity_level}")
        density = 1.0 - sparsity
        inter_and_command = units - output_size
        command = max(int(0.4 * inter_and_command), 1)
        inter = inter_and_command - command
        super().__init__(
            inter,
            command,
            output_size,
            sensory_fanout=max(int(inter * density), 1),
            inter_fanout=max(int(command * density), 1),
            recurrent_command_synapses=max(int(command * density * 2), 1),
            motor_fanin=max(int(command * density), 1),
            seed=seed,
        )
        self.output_size = output_size
        self.sparsity_level = sparsity

    def _constructor_args(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "output_size": self.output_size,
            "sparsity_level": self.sparsity_level,
            "seed": self.seed,
        }


WIRINGS: dict[str, type[Wiring]] = {
    "custom": Wiring,
    "fully_connected": FullyConnected,
    "random": Random,
    "ncp": NCP,
    "auto_ncp": AutoNCP,
}


def wiring_from_config(config: Mapping[str, Any]) -> Wiring:
    """Rebuild the wiring (same class, same matrices) that ``get_config()`` described."""
    args = dict(config)
    kind = args.pop("type", None)
    cls = WIRINGS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown wiring type {kind!r}; valid types are {sorted(WIRINGS)}")
    return cls._from_args(args)
