"""Import FAISS once, after pointing its bundled OpenBLAS at a kernel that exists for this CPU.

Why: the faiss-cpu wheels ship OpenBLAS 0.3.15, which does not recognise CPUs newer than it
(Sapphire Rapids, Zen 4) and falls back to a generic kernel: exact search ran 6x slower on this
project's machine (7 vs 42 GFLOP/s on one core). When the CPU has the AVX-512 subsets OpenBLAS's
SkylakeX kernels need and the user has not chosen a core type, we name that one. It only takes
effect if FAISS was not imported before this module; ``MMH_BENCH_BLAS_TUNE=0`` turns it off.
"""
from __future__ import annotations

import os
import sys

_NEEDED = {"avx512f", "avx512dq", "avx512bw", "avx512vl"}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def tune_openblas() -> str | None:
    """Set ``OPENBLAS_CORETYPE=SkylakeX`` where safe and useful; return the core type in force."""
    if ("faiss" not in sys.modules and os.environ.get("MMH_BENCH_BLAS_TUNE", "1") != "0"
            and "OPENBLAS_CORETYPE" not in os.environ and _NEEDED <= _cpu_flags()):
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    return os.environ.get("OPENBLAS_CORETYPE")


tune_openblas()

import faiss  # noqa: E402  (must come after the environment is set)

__all__ = ["faiss", "tune_openblas"]
