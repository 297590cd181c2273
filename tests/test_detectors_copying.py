"""Training-data detectors (nn-distance, authpct, cfdm, mmh-ratio) and the set-level C_T statistic."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import mmh_bench as mb
from mmh_bench.common.ct_statistic import data_copying_ct, mann_whitney_z
from mmh_bench.task.models.analytic import FlatGaussianMixture
from mmh_bench.retrieval.train_index import TrainIndex
from mmh_bench_baselines.cfdm import CFDM, empirical_flipd
from mmh_bench_baselines.flipd import flipd
from mmh_bench_baselines.mmh_ratio import MMHRatio
from mmh_bench_baselines.nearest_neighbour import AuthPct, NNDistance


def _ctx(det, x, train, model=None):
    info = mb.TaskInfo("t", "synthetic", tuple(x.shape[1:]), False, len(x))
    return mb.Context(det.name, det.access, info, seed=0, model=model, train_index=TrainIndex(train),
                      samples=mb.Batch(x))


def _scores(det, x, train, model=None):
    ctx = _ctx(det, x, train, model)
    det.fit(ctx)
    return det.score(mb.Batch(x), ctx)


@pytest.fixture(scope="module")
def copy_case():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((500, 4)).astype(np.float32)
    fresh = rng.standard_normal((99, 4)).astype(np.float32)
    samples = np.concatenate([fresh, train[17:18]])  # the last sample is an exact copy
    return train, samples


@pytest.mark.parametrize("cls", [NNDistance, AuthPct])
def test_exact_copy_ranks_first(copy_case, cls):
    train, samples = copy_case
    s = _scores(cls(), samples, train)
    assert int(np.argmax(s)) == len(samples) - 1
    assert np.sum(s == s.max()) == 1


def test_authpct_threshold_is_the_training_point_own_radius(copy_case):
    train, samples = copy_case
    s = _scores(AuthPct(), samples, train)
    assert s[-1] == 0.0  # at distance 0 from x_j: unauthentic
    # fresh draws from the training distribution are authentic about half of the time
    assert 0.2 < np.mean(s[:-1] > -1) < 0.8


def test_cfdm_closed_form_equals_flipd_of_the_empirical_distribution():
    """The empirical training distribution is a mixture of point masses (weights = duplicate
    counts): its exact FLIPD through JVPs must equal the closed form used by ``cfdm``."""
    rng = np.random.default_rng(1)
    train = rng.standard_normal((30, 3)).astype(np.float32)
    train = np.concatenate([train, np.repeat(train[:1], 4, axis=0)])  # one point 5 times
    index = TrainIndex(train)
    model = FlatGaussianMixture(index.data, [np.zeros((3, 0))] * len(index), weights=index.group_size)
    x = rng.standard_normal((20, 3)).astype(np.float32) * 0.8
    t0 = 0.05
    ab = float(model.alpha_bar(t0))
    h = np.sqrt((1 - ab) / ab)
    d, i = index.search(x, len(index))
    closed = empirical_flipd(d, index.group_size[i].astype(float), h)
    np.testing.assert_allclose(closed, flipd(model, x, t0), rtol=2e-3, atol=2e-3)


def test_cfdm_is_the_plane_dimension_on_dense_data_and_zero_at_isolated_copies():
    """Known answer: on a densely sampled 2-plane the empirical distribution's FLIPD at the
    bandwidth scale is ~2; at copies of an isolated or a duplicated training point it is ~0."""
    rng = np.random.default_rng(4)
    plane = np.zeros((3000, 5))
    plane[:, :2] = rng.uniform(-1, 1, (3000, 2))
    iso, dup = np.array([0, 0, 3.0, 0, 0]), np.array([0, 0, 0, 3.0, 0])
    train = np.concatenate([plane, iso[None], np.tile(dup, (10, 1))]).astype(np.float32)
    fresh = np.zeros((50, 5))
    fresh[:, :2] = rng.uniform(-0.8, 0.8, (50, 2))
    samples = np.concatenate([fresh, np.tile(iso, (5, 1)), np.tile(dup, (5, 1))]).astype(np.float32)
    det = CFDM()
    ctx = _ctx(det, samples, train)
    det.fit(ctx)
    est = det.estimate(mb.Batch(samples), ctx)
    assert abs(np.median(est[:50]) - 2) < 0.3
    np.testing.assert_allclose(est[50:], 0.0, atol=1e-6)


@pytest.fixture(scope="module")
def mmh_case():
    """A 2-plane in R^5 (LID* = 2) with one isolated training point far out on it (OD candidate),
    a point off the plane duplicated 20 times (DD, LID* = 0), and a model that collapsed onto both."""
    rng = np.random.default_rng(2)
    basis = np.eye(5)[:, :2]
    plane = rng.standard_normal((400, 2)) @ basis.T
    od_point = 4.5 * basis[:, 0]
    dd_point = np.array([0, 0, 6.0, 0, 0])
    train = np.concatenate([plane, od_point[None], np.tile(dd_point, (20, 1))]).astype(np.float32)
    model = FlatGaussianMixture(np.stack([np.zeros(5), od_point, dd_point]),
                                [basis, np.zeros((5, 0)), np.zeros((5, 0))], weights=[400, 1, 20])
    fresh = (rng.standard_normal((60, 2)) * 0.8) @ basis.T
    samples = np.concatenate([fresh, np.tile(od_point, (10, 1)), np.tile(dd_point, (10, 1))])
    return train, samples.astype(np.float32), model


def test_mmh_ratio_flags_both_memorization_types(mmh_case):
    train, samples, model = mmh_case
    det = MMHRatio(t0=0.01)
    ctx = _ctx(det, samples, train, model)
    det.fit(ctx)
    batch = mb.Batch(samples)
    lid_star = det.lid_star(batch, ctx)
    np.testing.assert_array_equal(lid_star[60:70], 2.0)  # OD: the copied point lies on a 2-plane
    np.testing.assert_array_equal(lid_star[70:], 0.0)  # DD: a duplicate group is a point mass
    assert np.median(lid_star[:60]) == 2.0
    ratio = det.ratio(batch, ctx)
    assert np.all(ratio[60:] < 0.05) and np.median(ratio[:60]) == pytest.approx(1.0, abs=0.05)
    assert roc_auc_score(np.r_[np.zeros(60), np.ones(20)], det.score(batch, ctx)) == 1.0


def test_ct_detects_copying_and_not_fresh_data():
    """Stated bars: copies of training points give C_T < -5; fresh draws |C_T| < 2."""
    rng = np.random.default_rng(3)
    train, held = rng.standard_normal((800, 2)), rng.standard_normal((800, 2))
    fresh = rng.standard_normal((800, 2))
    copies = train[rng.integers(0, 800, 800)] + rng.normal(0, 0.01, (800, 2))
    half = np.concatenate([fresh[:400], copies[:400]])
    ct_fresh = data_copying_ct(train, held, fresh).ct
    ct_copies = data_copying_ct(train, held, copies).ct
    ct_half = data_copying_ct(train, held, half).ct
    assert abs(ct_fresh) < 2
    assert ct_copies < -5
    assert ct_copies < ct_half < ct_fresh


def test_mann_whitney_z_sign():
    a, b = np.arange(10.0), np.arange(10.0) + 100
    assert mann_whitney_z(a, b) < -3 < 3 < mann_whitney_z(b, a)
    assert mann_whitney_z(a, a) == 0.0
