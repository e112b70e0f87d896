"""The numeric environment of a run: what bit-identical results depend on besides the code.

Every run records it as tags; ``numpynet-reproduce`` compares the source run's
with the machine it runs on. Same code, data and seed give the same bits only
with the same numpy, the same BLAS library (vendor, version, the kernel it
picked for this CPU) and the same number of BLAS threads. ``OPENBLAS_CORETYPE``
forces OpenBLAS's kernel choice, so it is recorded when set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from numpynet.sweeps.recording.names import (
    BLAS_KERNEL,
    BLAS_THREADS,
    BLAS_VENDOR,
    BLAS_VERSION,
    NUMPY_VERSION,
    OPENBLAS_CORETYPE,
)

#: every tag of the numeric environment, in the order they are reported
TAGS = (NUMPY_VERSION, BLAS_VENDOR, BLAS_VERSION, BLAS_KERNEL, BLAS_THREADS, OPENBLAS_CORETYPE)

_controller: Any = None  # threadpoolctl's scan of the loaded libraries takes ~20 ms: once per process


def numeric_environment() -> dict[str, str]:
    """The tags above for this process, now (the thread count is the current limit)."""
    import numpy as np

    tags = {NUMPY_VERSION: np.__version__}
    blas = _numpy_blas()
    if blas is not None:
        tags.update(
            {
                BLAS_VENDOR: str(blas.get("internal_api", "unknown")),
                BLAS_VERSION: str(blas.get("version") or "unknown"),
                BLAS_KERNEL: str(blas.get("architecture") or "unknown"),
                BLAS_THREADS: str(blas.get("num_threads", "unknown")),
            }
        )
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if coretype:
        tags[OPENBLAS_CORETYPE] = coretype
    return tags


def _numpy_blas() -> dict[str, Any] | None:
    """threadpoolctl's record of the BLAS numpy calls (scipy may load a second one)."""
    global _controller
    try:
        from threadpoolctl import ThreadpoolController

        if _controller is None:
            import numpy  # noqa: F401 - its BLAS must be loaded before the scan

            _controller = ThreadpoolController()
        libraries = [lib for lib in _controller.info() if lib.get("user_api") == "blas"]
    except Exception:  # threadpoolctl missing or failing: record what is known
        return None
    for lib in libraries:
        if "numpy" in str(lib.get("filepath", "")):
            return lib
    return libraries[0] if libraries else None


def differences(recorded: Mapping[str, str], current: Mapping[str, str], keys: tuple[str, ...] = TAGS) -> list[str]:
    """``["numpy version 1.26.4 -> 2.1.0", ...]`` (recorded -> current) for each tag that differs.

    A tag absent from both is no difference; absent from one side, it is.
    """
    out = []
    for key in keys:
        a, b = recorded.get(key), current.get(key)
        if a != b:
            label = key.removeprefix("numpynet.").replace("_", " ")
            out.append(f"{label} {a or 'unset'} -> {b or 'unset'}")
    return out
