"""Global intrinsic dimension (one number per point cloud) with scikit-dimension's own fits, and the
benchmark protocol of the ID-estimation literature: scikit-dimension's 24 ``BenchmarkManifolds``,
``n`` points each, ``replicates`` independent draws, mean percentage error (MPE) per estimator.

Why a second protocol beside the per-point LID track: the published numbers for the k-NN
estimators (e.g. Huang, Chen & Chung 2026, Table 1) are global-ID errors over these manifolds, and a
reported row is only worth showing beside a measurement made the same way.

Each estimator is scikit-dimension's global fit with its default parameters:

=========  ==========================================================================================
twonn      ``skdim.id.TwoNN().fit(X).dimension_`` (all points, ``discard_fraction`` 0.1)
mle        ``skdim.id.MLE().fit(X).dimension_`` (k = 20 neighbours, pointwise Levina-Bickel,
           combined by the harmonic mean, ``comb="mle"``)
lpca       ``skdim.id.lPCA().fit(X).dimension_`` (PCA of the whole cloud, Fukunaga-Olsen rule,
           ``alphaFO`` 0.05)
ess        ``skdim.id.ESS().fit(X).dimension_`` (k = 100 neighbours, version 'a', mean of the
           pointwise values). scikit-dimension computes it one neighbourhood at a time in Python
           (about 200 s for 2,500 points on one core); the protocol computes the same pointwise
           values with the batched :func:`mmh_bench.evaluation.data_lid.ess` (every one of the
           4,950 pairs of the 100 neighbours, so no sampling) and takes their mean, which equals
           scikit-dimension's fit to floating-point precision (``tests/test_global_id.py``).
=========  ==========================================================================================
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mmh_bench.evaluation.data_lid import ess as _ess_pointwise

__all__ = ["GLOBAL_METHODS", "global_id", "benchmark_manifolds", "percentage_error", "GlobalIDRun",
           "run_benchmark", "MANIFOLD_COUNT"]

#: scikit-dimension's BenchmarkManifolds count (Hein & Audibert 2005; Campadelli et al. 2015)
MANIFOLD_COUNT = 24
#: neighbourhood size of scikit-dimension's ESS default fit (LocalEstimator._N_NEIGHBORS)
ESS_NEIGHBOURS = 100


def _twonn(x: np.ndarray) -> float:
    import skdim
    return float(skdim.id.TwoNN().fit(x).dimension_)


def _mle(x: np.ndarray) -> float:
    import skdim
    return float(skdim.id.MLE().fit(x).dimension_)


def _lpca(x: np.ndarray) -> float:
    import skdim
    return float(skdim.id.lPCA().fit(x).dimension_)


def _ess(x: np.ndarray) -> float:
    k = min(ESS_NEIGHBOURS, len(x) - 1)  # scikit-dimension clips n_neighbors the same way
    return float(np.mean(_ess_pointwise(x, k=k)))


#: name -> function(point cloud [n, D]) -> global ID, each scikit-dimension's default global fit
GLOBAL_METHODS: dict[str, Callable[[np.ndarray], float]] = {
    "twonn": _twonn, "mle": _mle, "ess": _ess, "lpca": _lpca}


def global_id(method: str, x: np.ndarray) -> float:
    """Global ID of the cloud ``x`` (rows are points) by ``method`` (see the module docstring)."""
    if method not in GLOBAL_METHODS:
        raise ValueError(f"unknown global-ID method {method!r}; expected one of {sorted(GLOBAL_METHODS)}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3 or x.shape[1] < 2:
        raise ValueError(f"global ID needs a cloud of shape [n >= 3, D >= 2], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("global ID needs finite coordinates")
    return GLOBAL_METHODS[method](x)


def benchmark_manifolds(n: int, seed: int) -> dict[str, tuple[np.ndarray, int]]:
    """All 24 BenchmarkManifolds at their default dimensions: name -> (cloud [n, D], true ID).

    One replicate is ``BenchmarkManifolds(random_state=seed).generate("all", n=n)``: the manifolds
    are drawn in scikit-dimension's order from one random stream, noise-free.
    """
    if n < 3:
        raise ValueError(f"need at least 3 points per manifold, got n = {n}")
    from skdim.datasets import BenchmarkManifolds  # imported lazily: only this protocol needs it
    gen = BenchmarkManifolds(random_state=int(seed))
    clouds = gen.generate("all", n=int(n))
    return {name: (np.asarray(x, dtype=np.float64), int(gen._dict_truth[name][0])) for name, x in clouds.items()}


def percentage_error(estimate: float, truth: float) -> float:
    """``100 |estimate - truth| / truth``: the per-manifold term of the MPE."""
    if truth <= 0:
        raise ValueError(f"percentage error needs a positive true ID, got {truth}")
    return 100.0 * abs(float(estimate) - float(truth)) / float(truth)


@dataclass
class GlobalIDRun:
    """Estimates of one benchmark run: ``estimates[method][manifold]`` is one value per replicate."""

    n: int
    seeds: list[int]
    truth: dict[str, int] = field(default_factory=dict)
    estimates: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def mpe(self, method: str) -> float:
        """Mean over manifolds and replicates of the percentage error."""
        errs = [percentage_error(v, self.truth[m]) for m, vals in self.estimates[method].items() for v in vals]
        return float(np.mean(errs))

    def mpe_per_replicate(self, method: str) -> list[float]:
        """The MPE of each replicate (over the 24 manifolds), for its spread."""
        per = self.estimates[method]
        return [float(np.mean([percentage_error(per[m][r], self.truth[m]) for m in per]))
                for r in range(len(self.seeds))]

    def to_dict(self) -> dict:
        return {"n": self.n, "seeds": self.seeds, "truth": self.truth, "estimates": self.estimates,
                "seconds": self.seconds,
                "mpe": {m: self.mpe(m) for m in self.estimates},
                "mpe_per_replicate": {m: self.mpe_per_replicate(m) for m in self.estimates}}


def run_benchmark(methods: list[str], n: int = 2500, seeds: list[int] | None = None,
                  progress: Callable[[str], None] | None = None) -> GlobalIDRun:
    """Every method on every manifold of every replicate (seed); timings summed per method."""
    unknown = [m for m in methods if m not in GLOBAL_METHODS]
    if unknown:
        raise ValueError(f"unknown global-ID method(s) {unknown}; expected some of {sorted(GLOBAL_METHODS)}")
    seeds = list(range(20)) if seeds is None else [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one replicate seed")
    run = GlobalIDRun(n=int(n), seeds=seeds)
    for m in methods:
        run.estimates[m] = {}
        run.seconds[m] = 0.0
    for seed in seeds:
        clouds = benchmark_manifolds(n, seed)
        for name, (x, d) in clouds.items():
            run.truth[name] = d
            for m in methods:
                t0 = time.perf_counter()
                value = global_id(m, x)
                run.seconds[m] += time.perf_counter() - t0
                run.estimates[m].setdefault(name, []).append(value)
        if progress is not None:
            progress(f"seed {seed}: " + ", ".join(f"{m} MPE so far {run.mpe(m):.2f}%" for m in methods))
    return run
