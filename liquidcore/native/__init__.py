"""Native (C, OpenMP) kernels, compiled on first use; see :mod:`liquidcore.native.build`."""
