"""``python -m liquidcore.native``: build (or load) the native kernels now and print which LTC
path is active; for install steps and image builds. Exit status 1 only when
``LIQUIDCORE_NATIVE=require`` and the kernels cannot be built."""

from __future__ import annotations

import sys

from liquidcore.native import NativeBuildError, warm


def main() -> int:
    try:
        status = warm()
    except NativeBuildError as err:
        print(f"native LTC kernels: failed ({err})", file=sys.stderr)
        return 1
    if status.backend == "native":
        print(f"native LTC kernels: {status.library}")
    else:
        print(f"native LTC kernels: not used, PyTorch path ({status.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
