"""Model-side LID (FLIPD, normal bundle) and score detectors on a score model whose answer is known:
the exact score of a mixture of Gaussians on affine d-planes in D = 10 (d = 0 is a point mass)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

import mmh_bench as mb
from mmh_bench.task.models.analytic import FlatGaussianMixture
from mmh_bench_baselines.flipd import FLIPD, flipd, flipd_curve, knee_index, plateau_index
from mmh_bench_baselines.normal_bundle import NormalBundle
from mmh_bench_baselines.score_based import DenoisingLoss, ScoreNorm

DIMS = [0, 1, 2, 3, 5, 7, 9, 10]
D = 10


@pytest.fixture(scope="module")
def planes():
    model = FlatGaussianMixture.random_planes(DIMS, D, seed=0)
    x, comp = model.sample(240, seed=1)
    return model, x, comp


def _run(det, model, x, batch=80):
    info = mb.TaskInfo("planes", "synthetic", (D,), False, len(x))
    ctx = mb.Context(det.name, det.access, info, seed=0, model=model, samples=mb.Batch(x))
    model.reset_counters()
    det.fit(ctx)
    method = det.estimate if isinstance(det, mb.LIDEstimator) else det.score
    out = np.concatenate([method(mb.Batch(x[s:s + batch], index=np.arange(len(x))[s:s + batch]), ctx)
                          for s in range(0, len(x), batch)])
    return out, (model.nfe / len(x), model.njvp / len(x))


def _per_component(est, comp):
    return np.array([est[comp == k].mean() for k in range(len(DIMS))])


def test_flipd_exact_trace_recovers_plane_dimensions(planes):
    """Stated error: |mean FLIPD - d| < 0.05 per component at t0 = 0.01, every sample within 0.2;
    cost exactly D JVPs per sample."""
    model, x, comp = planes
    est, (nfe, njvp) = _run(FLIPD(t0=0.01), model, x)
    means = _per_component(est, comp)
    np.testing.assert_allclose(means, DIMS, atol=0.05)
    assert np.abs(est - np.asarray(DIMS)[comp]).max() < 0.2
    assert spearmanr(means, DIMS).correlation == pytest.approx(1.0)
    assert njvp == D and nfe == 0


def test_flipd_hutchinson_is_unbiased_and_rank_correct(planes):
    """K = 16 Rademacher probes: component means within 0.5 of d, ranks preserved."""
    model, x, comp = planes
    est, (_, njvp) = _run(FLIPD(t0=0.01, exact_max_dim=0, probes=16), model, x)
    means = _per_component(est, comp)
    np.testing.assert_allclose(means, DIMS, atol=0.5)
    assert spearmanr(means, DIMS).correlation == pytest.approx(1.0)
    assert njvp == 16


@pytest.mark.parametrize("rule", ["plateau", "knee"])
def test_flipd_t0_rules_pick_a_small_t0_on_the_exact_score(planes, rule):
    """The exact score is right at every small t0: neither label-free rule may pick a t0 where
    noise washes the planes out, and the estimates stay within 0.1 of d."""
    model, x, comp = planes
    det = FLIPD(t0=rule)
    est, _ = _run(det, model, x)
    assert det.chosen_t0 is not None and det.chosen_t0 <= 0.02
    assert det.curve is not None and len(det.curve[0]) == det.n_t
    np.testing.assert_allclose(_per_component(est, comp), DIMS, atol=0.1)


def test_t0_rules_on_the_shape_a_trained_network_gives():
    """~D at tiny t0 (unresolved), a plateau at the LID, a fall at large t0 (D = 10)."""
    t = np.geomspace(1e-3, 0.5, 14)
    curve = np.r_[np.linspace(10, 4, 5), np.full(6, 3.0), [2.0, 1.5, 0.5]]
    assert knee_index(np.log(t), curve) == 5  # entry into the plateau
    assert plateau_index(t, curve, 10) == 7  # its (geometric) centre
    assert knee_index(np.log(t), np.full(14, 3.0)) == 0
    # flat then falling (an accurate score): the knee falls back to the smallest t0, the
    # plateau rule to the middle of the flat part
    flat_then_fall = np.r_[np.full(10, 1.0), [0.7, 0.3, 0.1, 0.0]]
    assert knee_index(np.log(t), flat_then_fall) == 0
    assert plateau_index(t, flat_then_fall, 2) == 4
    # nothing resolved anywhere (FLIPD ~ D): the middle of the grid
    assert plateau_index(t, np.full(14, 10.0), 10) == 7


def test_plateau_rule_reads_the_coarsest_shelf_in_high_dimension():
    """The shape measured on syn100-dd (D = 100): a fall from ~D, a first shelf at ~12 where the
    network is still blurry, a second at ~7, then washout. The rule takes the second shelf; an
    absolute half-dimension band would find no plateau at all in such a curve."""
    t = np.geomspace(1e-3, 0.9, 20)
    curve = np.array([90.2, 86.1, 80.7, 73.8, 64.6, 52.6, 37.3, 21.5, 14.0, 12.0, 10.9, 11.9, 11.0,
                      7.75, 6.92, 6.35, 5.05, 3.13, 1.43, -0.77])
    i = plateau_index(t, curve, 100)
    assert 13 <= i <= 15 and 0.1 < t[i] < 0.22
    # a stricter stability factor splits the second shelf and falls back to the first
    assert 9 <= plateau_index(t, curve, 100, ratio=1.15) <= 12


def test_flipd_curve_shape(planes):
    model, x, _ = planes
    grid = [0.005, 0.05, 0.5]
    c = flipd_curve(model, x[:8], grid)
    assert c.shape == (3, 8)
    np.testing.assert_allclose(c[0], flipd(model, x[:8], 0.005))


def test_normal_bundle_recovers_plane_dimensions(planes):
    """Stated error: |mean NB - d| < 0.25 per component; >= 90% of samples exact; K = 4 D forwards."""
    model, x, comp = planes
    est, (nfe, njvp) = _run(NormalBundle(), model, x)
    means = _per_component(est, comp)
    np.testing.assert_allclose(means, DIMS, atol=0.25)
    assert (est == np.asarray(DIMS)[comp]).mean() >= 0.9
    assert spearmanr(means, DIMS).correlation == pytest.approx(1.0)
    assert nfe == 4 * D and njvp == 0


def test_score_norm_estimates_codimension_and_flags_the_point_mass(planes):
    """E||eps||^2 = D - d near a d-plane at small t: within 1.0 per component (16 draws)."""
    model, x, comp = planes
    s, (nfe, _) = _run(ScoreNorm(t=0.01, draws=16), model, x)
    np.testing.assert_allclose(_per_component(s, comp), D - np.asarray(DIMS), atol=1.0)
    assert nfe == 16


def test_denoising_loss_is_lowest_on_the_point_mass(planes):
    model, x, comp = planes
    s, _ = _run(DenoisingLoss(), model, x)
    means = _per_component(s, comp)
    # d = 0: a point mass is denoised perfectly until, at the largest t, other components mix in
    # and the loss grows with the plane's dimension (the tangent part of the noise is not removable)
    assert np.argmax(means) == 0 and means[0] > -0.05
    assert spearmanr(means, DIMS).correlation == pytest.approx(-1.0)


def test_batch_split_does_not_change_scores(planes):
    model, x, _ = planes
    a, _ = _run(NormalBundle(), model, x, batch=240)
    b, _ = _run(NormalBundle(), model, x, batch=7)
    np.testing.assert_array_equal(a, b)
