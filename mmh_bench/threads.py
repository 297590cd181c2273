"""Thread hygiene: how many CPU threads each piece of work runs with, chosen on purpose.

Why: torch and the BLAS libraries default to one thread per core and spin while they wait. Two
such processes on one 2-core machine starve each other: a 256 x 4 MLP training step ran at 192
steps/s with one thread alone, 219 with two, and at 3.6 steps/s each when two two-thread processes
shared the machine (``benchmarks/concurrent_builds.py``). The shipped models are small, so their
training, sampling and scoring run single-threaded by default: two builds side by side then run
at nearly full speed each, and a scheduler may place one job per core. Work that does profit from
threads (a large model on the CPU) asks :func:`threads_for` with its size.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

#: below this many parameters a model runs single-threaded (a 256 x 4 MLP has ~0.3 M; extra
#: threads bought 14% alone and cost 60x when two processes shared the cores)
SMALL_MODEL_PARAMS = 5_000_000
#: environment variable that overrides every choice (e.g. 2 on a machine running one job at a time)
ENV = "MMH_BENCH_THREADS"
#: cores each task of a cluster worker may use (set on the workers of a local cluster)
WORKER_CORES_ENV = "MMH_BENCH_WORKER_CORES"


def cores_given() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def task_cores() -> int:
    """Cores one task of a Dask worker may use: ``$MMH_BENCH_WORKER_CORES`` (a local cluster sets
    it), else the cores given shared among the worker's threads (outside a worker: all of them)."""
    env = os.environ.get(WORKER_CORES_ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        from distributed import get_worker
        return max(1, cores_given() // get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return cores_given()


def threads_for(n_params: int, cores: int | None = None) -> int:
    """Threads for work on a model of ``n_params`` parameters: 1 for small models, else the cores
    given; ``$MMH_BENCH_THREADS`` overrides."""
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"${ENV} must be a positive integer, got {env!r}") from None
    return 1 if n_params < SMALL_MODEL_PARAMS else (cores or cores_given())


@contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads and ``n`` BLAS / OpenMP threads, then restore both."""
    import torch
    from threadpoolctl import threadpool_limits
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        with threadpool_limits(limits=max(1, int(n))):
            yield
    finally:
        torch.set_num_threads(old)


def model_threads(module: object) -> int:
    """:func:`threads_for` a torch module (counted by its parameters; 1 when it has none)."""
    params = getattr(module, "parameters", None)
    n = sum(p.numel() for p in params()) if callable(params) else 0
    return threads_for(n)
