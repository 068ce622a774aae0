"""Pure kernels (tensors in, tensors out; no modules, no I/O)."""

from liquidcore.functional.activations import ACTIVATIONS, get_activation
from liquidcore.functional.cfc import MODES, cfc_default, cfc_no_gate, cfc_pure, get_mode

__all__ = [
    "ACTIVATIONS",
    "MODES",
    "cfc_default",
    "cfc_no_gate",
    "cfc_pure",
    "get_activation",
    "get_mode",
]
