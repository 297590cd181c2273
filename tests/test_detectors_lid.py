"""Data-side kNN LID estimators (mmh_bench.evaluation.data_lid) against scikit-dimension, and their detectors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import skdim

import mmh_bench as mb
from mmh_bench.evaluation import data_lid as lid
from mmh_bench_baselines.knn_lid import ESS, LPCA, MLE, TwoNN

K = 20
#: BenchmarkManifolds sets checked: 10-sphere in R^11, affine 3-plane in R^5, Swiss roll in R^3
SETS = ["M1_Sphere", "M2_Affine_3to5", "M7_Roll"]


def _bench(name: str, n: int = 300) -> np.ndarray:
    bm = skdim.datasets.BenchmarkManifolds(random_state=0)
    d, dim = int(bm.truth.loc[name].iloc[0]), int(bm.truth.loc[name].iloc[1])
    return bm.generate(name, n=n, dim=dim, d=d)


@pytest.fixture(scope="module")
def bench_sets():
    return {name: _bench(name) for name in SETS}


def _skdim(method: str, x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "lpca":
            return skdim.id.lPCA().fit_pw(x, n_neighbors=K).dimension_pw_
        if method == "mle":
            return skdim.id.MLE().fit(x, n_neighbors=K).dimension_pw_
        if method == "twonn":
            return skdim.id.TwoNN().fit_pw(x, n_neighbors=K).dimension_pw_
        return skdim.id.ESS().fit(x, n_neighbors=K).dimension_pw_


@pytest.mark.parametrize("method", ["lpca", "mle", "twonn", "ess"])
def test_pointwise_estimates_agree_with_scikit_dimension(bench_sets, method):
    """Stated tolerance: |ours - skdim| <= 1e-6 at >= 99% of points (the rest may differ only by a
    near-tie swap at the k-th neighbour between FAISS and scikit-learn), and the mean over
    points within 1%."""
    for name, x in bench_sets.items():
        ours = lid.estimate(method, x, k=K)
        ref = _skdim(method, x)
        close = np.abs(ours - ref) <= 1e-6
        assert close.mean() >= 0.99, (name, method, np.abs(ours - ref).max())
        assert abs(ours.mean() - ref.mean()) <= 0.01 * abs(ref.mean()), (name, method)


def test_knn_excludes_self_and_matches_brute_force():
    x = np.random.default_rng(0).standard_normal((200, 5))
    d, i = lid.knn(x, 7)
    full = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(i, np.argsort(full, axis=1)[:, :7])
    np.testing.assert_allclose(d, np.sort(full, axis=1)[:, :7], rtol=1e-12)
    # explicit queries that are rows of the data, excluded by index
    d2, i2 = lid.knn(x, 7, queries=x[10:20], exclude=np.arange(10, 20))
    np.testing.assert_array_equal(i2, i[10:20])


def test_ess_reference_matches_scikit_dimension():
    ref = lid.ess_reference(40)
    sk = skdim.id.ESS()._essReference(40, 1)
    np.testing.assert_allclose(ref, sk, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["lpca", "mle", "twonn", "ess"])
def test_point_mass_has_lid_zero_and_plane_its_dimension(method):
    rng = np.random.default_rng(1)
    plane = np.zeros((300, 6))
    plane[:, :3] = rng.uniform(-1, 1, (300, 3))
    copies = np.tile(rng.standard_normal(6) * 5, (60, 1))  # one point, 60 identical samples
    x = np.concatenate([plane, copies])
    est = lid.estimate(method, x, k=K)
    assert np.all(np.isfinite(est))
    assert np.all(est[300:] == 0.0)
    assert abs(np.median(est[:300]) - 3) < 0.6, np.median(est[:300])


@pytest.mark.parametrize("cls", [LPCA, MLE, TwoNN, ESS])
def test_knn_detectors_rank_collapsed_samples_first(cls):
    """As detectors they see only the samples (ctx.samples) and score -LID, batch by batch."""
    rng = np.random.default_rng(2)
    plane = np.zeros((200, 5), dtype=np.float32)
    plane[:, :2] = rng.uniform(-1, 1, (200, 2))
    # the ideal collapse: 40 generated samples that are the same point (see knn_lid.py on why
    # near-copies with isotropic noise look full-dimensional to a fixed-k estimator)
    copies = np.tile(np.float32([3, 3, 0, 0, 0]), (40, 1))
    x = np.concatenate([plane, copies])
    det = cls()
    info = mb.TaskInfo("t", "synthetic", (5,), False, len(x))
    ctx = mb.Context(det.name, det.access, info, seed=0, samples=mb.Batch(x))
    det.fit(ctx)
    scores = np.concatenate([det.score(mb.Batch(x[s:s + 64], index=np.arange(len(x))[s:s + 64]), ctx)
                             for s in range(0, len(x), 64)])
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(np.r_[np.zeros(200), np.ones(40)], scores) > 0.99
    # a context without the task's samples: neighbours within the batch (here: all of them)
    bare = mb.Context(det.name, det.access, info, seed=0)
    det2 = cls()
    det2.fit(bare)
    np.testing.assert_allclose(det2.score(mb.Batch(x), bare), scores)
