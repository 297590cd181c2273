"""The global-ID protocol (mmh_bench.evaluation.global_id) is scikit-dimension's own global fit: on
one BenchmarkManifold every estimator equals skdim's ``fit(X).dimension_``, ESS included (computed
batched there), and bad input fails with a clear message."""
from __future__ import annotations

import numpy as np
import pytest

skdim = pytest.importorskip("skdim")

from mmh_bench.evaluation.global_id import (GLOBAL_METHODS, benchmark_manifolds, global_id,  # noqa: E402
                                            percentage_error, run_benchmark)


@pytest.fixture(scope="module")
def roll() -> np.ndarray:
    from skdim.datasets import BenchmarkManifolds
    return BenchmarkManifolds(random_state=3).generate("M7_Roll", n=400, dim=3, d=2)


@pytest.mark.parametrize("method, reference", [
    ("twonn", lambda x: skdim.id.TwoNN().fit(x).dimension_),
    ("mle", lambda x: skdim.id.MLE().fit(x).dimension_),
    ("lpca", lambda x: skdim.id.lPCA().fit(x).dimension_),
    ("ess", lambda x: skdim.id.ESS().fit(x).dimension_),
])
def test_protocol_equals_skdim_global_fit(roll, method, reference):
    assert global_id(method, roll) == pytest.approx(float(reference(roll)), rel=1e-9, abs=1e-9)


def test_replicate_is_skdims_all_manifolds_draw():
    from skdim.datasets import BenchmarkManifolds
    clouds = benchmark_manifolds(300, seed=5)
    ref = BenchmarkManifolds(random_state=5).generate("all", n=300)
    assert len(clouds) == 24 and set(clouds) == set(ref)
    for name, (x, d) in clouds.items():
        np.testing.assert_array_equal(x, ref[name])
        assert d == BenchmarkManifolds()._dict_truth[name][0]


def test_mpe_is_the_mean_percentage_error():
    run = run_benchmark(["lpca"], n=200, seeds=[0, 1])
    errs = [percentage_error(v, run.truth[m]) for m, vals in run.estimates["lpca"].items() for v in vals]
    assert len(errs) == 48 and run.mpe("lpca") == pytest.approx(np.mean(errs))
    assert np.mean(run.mpe_per_replicate("lpca")) == pytest.approx(run.mpe("lpca"))
    assert percentage_error(3.0, 2) == 50.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown global-ID method 'pca'"):
        global_id("pca", np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"shape \[n >= 3, D >= 2\]"):
        global_id("mle", np.zeros(10))
    with pytest.raises(ValueError, match="finite"):
        global_id("mle", np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="positive true ID"):
        percentage_error(1.0, 0)
    with pytest.raises(ValueError, match="unknown global-ID method"):
        run_benchmark(["twonn", "nope"], n=50, seeds=[0])
    assert set(GLOBAL_METHODS) == {"twonn", "mle", "ess", "lpca"}
