import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from mmh_bench.evaluation.metrics import (auroc_from_counts, bootstrap_auroc_ci, bootstrap_cis, concordance,
                               lid_metrics, memorization_metrics, resample_counts, tpr_at_fpr,
                               tpr_at_fpr_closest, tpr_from_counts, tpr_resolvable)


def test_tpr_at_fpr_is_largest_tpr_within_budget():
    # 10 negatives, 4 positives. One negative outscores every positive.
    y = np.array([0] * 10 + [1] * 4)
    s = np.array([9.0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 7, 6, 0.5])
    # FPR 0 admits no positive above the top negative
    assert tpr_at_fpr(y, s, 0.0) == 0.0
    # FPR <= 0.1 admits the top negative, then 3 of 4 positives
    assert tpr_at_fpr(y, s, 0.1) == pytest.approx(0.75)
    # 0.15 is not enough for a second false positive: still 0.75 (never "closest")
    assert tpr_at_fpr(y, s, 0.15) == pytest.approx(0.75)
    assert tpr_at_fpr(y, s, 1.0) == 1.0


def test_tpr_at_fpr_does_not_flip_labels():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = -np.arange(6.0)  # perfectly wrong detector
    assert tpr_at_fpr(y, s, 0.34) == 0.0
    assert memorization_metrics(y, s)["auroc"] == 0.0


def test_ties_do_not_leak_tpr():
    y = np.array([0, 1, 0, 1])
    s = np.array([1.0, 1.0, 0.0, 0.0])  # all ties across classes
    assert tpr_at_fpr(y, s, 0.4) == 0.0


def test_auroc_matches_sklearn_and_ci_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = y + rng.normal(0, 1, 300)
    m = memorization_metrics(y, s)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
    lo, hi = m["auroc_ci"]
    assert lo < m["auroc"] < hi
    assert bootstrap_auroc_ci(y, s) == bootstrap_auroc_ci(y, s)


def test_per_subtype_uses_subtype_positives_against_all_negatives():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    sub = np.array([0, 0, 0, 1, 1, 2, 2])
    s = np.array([0.0, 0.1, 0.2, 5, 6, -1, -2])
    m = memorization_metrics(y, s, sub, {0: "none", 1: "DD", 2: "OD"})
    assert m["per_subtype"]["DD"]["auroc"] == 1.0
    assert m["per_subtype"]["OD"]["auroc"] == 0.0
    assert m["per_subtype"]["DD"]["n_neg"] == 3


def test_nan_scores_rejected():
    with pytest.raises(ValueError, match="NaN"):
        memorization_metrics([0, 1], [0.0, float("nan")])


def test_concordance_and_lid_metrics():
    true = np.array([0, 0, 1, 1, 2, 2])
    assert concordance(true, true * 2.0) == 1.0
    assert concordance(true, -true) == 0.0
    assert concordance(true, np.zeros(6)) == 0.5
    m = lid_metrics(true, true + 1.0)
    assert m["mae"] == 1.0 and m["mse"] == 1.0 and m["concordance"] == 1.0
    one_level = lid_metrics(np.full(4, 2.0), np.array([1.0, 2.0, 3.0, 2.5]))
    assert one_level["concordance"] is None and one_level["mae"] == 0.625  # no pair to order
    # the estimate-against-truth summary: one level per true value, the estimates' mean and spread
    assert m["by_true_lid"] == [{"lid": float(v), "n": 2, "mean": v + 1.0, "q10": v + 1.0, "q90": v + 1.0}
                                for v in (0, 1, 2)]
    assert one_level["by_true_lid"] == [{"lid": 2.0, "n": 4, "mean": 2.125, "q10": 1.3, "q90": 2.85}]
    from mmh_bench.evaluation.metrics import MAX_LID_LEVELS, by_true_lid
    many = np.linspace(0, 9, 100)  # continuous truth: summarised at whole dimensions
    assert [lv["lid"] for lv in by_true_lid(many, many)] == [float(v) for v in range(10)]
    assert by_true_lid(np.arange(4 * MAX_LID_LEVELS), np.zeros(4 * MAX_LID_LEVELS)) == []


def _resamples(n, n_boot=200, seed=0):
    """The draws bootstrap_cis makes (same generator, same chunking)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.integers(0, n, (min(100, n_boot - i), n)) for i in range(0, n_boot, 100)])


def _strict_reference(y, s, alpha):
    """Strict TPR@FPR from scikit-learn's ROC curve, NaN for a single-class sample."""
    if y.all() or not y.any():
        return np.nan
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return tpr[fpr <= alpha + 1e-12].max()


def test_vectorized_bootstrap_matches_sklearn_on_every_resample():
    rng = np.random.default_rng(1)
    y = rng.random(500) < 0.2
    s = np.round(y + rng.normal(0, 1, 500), 1)  # many ties
    draws = _resamples(500, 40)
    pos, neg = resample_counts(y, s, draws)
    np.testing.assert_allclose(auroc_from_counts(pos, neg), [roc_auc_score(y[d], s[d]) for d in draws],
                               atol=1e-12)
    for alpha in (0.0, 0.01, 0.05, 0.3):
        want = [_strict_reference(y[d], s[d], alpha) for d in draws]
        np.testing.assert_allclose(tpr_from_counts(pos, neg, alpha), want, atol=1e-12)


def test_tpr_ci_is_the_percentile_interval_of_the_auroc_resamples():
    """AUROC and TPR intervals come from the same seeded resamples, checked against scikit-learn."""
    rng = np.random.default_rng(2)
    y = rng.random(400) < 0.3
    s = y * 1.5 + rng.normal(0, 1, 400)
    draws = _resamples(400, 300)
    got = bootstrap_cis(y, s, n_boot=300, alphas=(0.01, 0.05))
    au = [roc_auc_score(y[d], s[d]) for d in draws]
    np.testing.assert_allclose(got["auroc"], np.percentile(au, [2.5, 97.5]), atol=1e-12)
    for a in (0.01, 0.05):
        ref = [_strict_reference(y[d], s[d], a) for d in draws]
        np.testing.assert_allclose(got["tpr_at_fpr"][str(a)], np.percentile(ref, [2.5, 97.5]), atol=1e-12)
    assert got == bootstrap_cis(y, s, n_boot=300, alphas=(0.01, 0.05))  # seeded
    assert bootstrap_auroc_ci(y, s, n_boot=300) == got["auroc"]


def test_single_class_resamples_are_skipped():
    y = np.array([1] + [0] * 30)  # most resamples miss the one positive
    s = np.arange(31.0)
    got = bootstrap_cis(y, s, n_boot=200)
    pos, neg = resample_counts(y, s, _resamples(31, 200))
    assert np.isnan(tpr_from_counts(pos, neg, 0.05)).sum() > 50
    assert got["auroc"] is not None and got["tpr_at_fpr"]["0.05"] is not None


def _brute(y, s, alpha):
    """Every threshold by hand: strict (largest TPR with FPR <= alpha) and closest (FPR nearest alpha)."""
    pts = [(0.0, 0.0)] + [((s[~y] >= t).mean(), (s[y] >= t).mean()) for t in np.unique(s)]
    strict = max(tpr for fpr, tpr in pts if fpr <= alpha + 1e-12)
    gap = min(abs(fpr - alpha) for fpr, _ in pts)
    closest = max(tpr for fpr, tpr in pts if abs(fpr - alpha) <= gap + 1e-12)
    return strict, closest


@pytest.mark.parametrize("seed", range(20))
def test_strict_and_closest_tpr_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 40))
    y = rng.random(n) < 0.4
    y[:2] = [True, False]
    s = rng.integers(0, 6, n).astype(float)  # small integers: ties everywhere
    for alpha in (0.0, 0.01, 0.1, 0.25, 0.5):
        strict, closest = _brute(y, s, alpha)
        assert tpr_at_fpr(y, s, alpha) == pytest.approx(strict)
        assert tpr_at_fpr_closest(y, s, alpha) == pytest.approx(closest)


def test_closest_point_may_exceed_the_target_where_strict_does_not():
    y = np.array([0] * 10 + [1] * 4)
    s = np.array([9.0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 7, 6, 0.5])
    # FPR 0.15: the closest point is FPR 0.1 (TPR 0.75); at 0.19 it is FPR 0.1 as well, at 0.96 FPR 1.0
    assert tpr_at_fpr_closest(y, s, 0.15) == pytest.approx(0.75)
    assert tpr_at_fpr(y, s, 0.96) == pytest.approx(0.75)
    assert tpr_at_fpr_closest(y, s, 0.96) == 1.0


def test_resolvable_rule_is_recorded():
    assert not tpr_resolvable(200, 0.001) and not tpr_resolvable(499, 0.01)
    assert tpr_resolvable(500, 0.01) and tpr_resolvable(5000, 0.001)
    rng = np.random.default_rng(0)
    y = np.array([1] * 50 + [0] * 200, dtype=bool)
    m = memorization_metrics(y, y + rng.normal(0, 1, 250))
    assert m["tpr_at_fpr_resolvable"] == {"0.001": False, "0.01": False, "0.05": True}
    assert set(m["tpr_at_fpr_ci"]) == set(m["tpr_at_fpr_closest"]) == {"0.001", "0.01", "0.05"}
    lo, hi = m["tpr_at_fpr_ci"]["0.05"]
    assert lo <= m["tpr_at_fpr"]["0.05"] <= hi


# -- AUROC per negative source -------------------------------------------------------------------
def _two_sources():
    """20 positives scored 1.0-2.0; 20 'random' negatives far below (easy), 20 'laion' negatives
    interleaved with the positives (hard), 1 'coco' negative (too few for an AUROC)."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(1.0, 2.0, 20)
    easy = rng.uniform(-3.0, -2.0, 20)
    hard = rng.uniform(1.0, 2.0, 20)
    y = np.r_[np.ones(20), np.zeros(41)].astype(int)
    s = np.r_[pos, easy, hard, 0.0]
    src = np.array([""] * 20 + ["random"] * 20 + ["laion"] * 20 + ["coco"], dtype=object)
    return y, s, src, pos, hard


def test_auroc_by_source_separates_easy_and_hard_negatives():
    from mmh_bench.evaluation.metrics import auroc_by_source
    y, s, src, pos, hard = _two_sources()
    got = auroc_by_source(y, s, src)
    assert list(got) == ["coco", "laion", "random"]
    assert got["random"] == 1.0 and got["coco"] is None
    ref = roc_auc_score(np.r_[np.ones(20), np.zeros(20)], np.r_[pos, hard])
    assert got["laion"] == pytest.approx(ref) and 0.3 < got["laion"] < 0.8
    # the pooled AUROC hides the hard source behind the easy one
    assert got["laion"] < memorization_metrics(y, s)["auroc"] < got["random"]
    # positives' entries are ignored, whatever they hold
    src2 = src.copy()
    src2[:20] = None
    assert auroc_by_source(y, s, src2) == got


def test_memorization_metrics_reports_sources_only_when_given():
    y, s, src, _, _ = _two_sources()
    assert "auroc_by_source" not in memorization_metrics(y, s)
    m = memorization_metrics(y, s, negative_source=src)
    from mmh_bench.evaluation.metrics import auroc_by_source
    assert m["auroc_by_source"] == auroc_by_source(y, s, src)
    # what the runner writes validates against the result schema's metrics model
    from mmh_bench.leaderboard.schema import MemorizationMetrics
    assert MemorizationMetrics.model_validate(m).auroc_by_source["coco"] is None
    # no negatives: nothing to split, and no empty field for the schema to refuse
    assert "auroc_by_source" not in memorization_metrics(np.ones(3, int), np.arange(3.0),
                                                         negative_source=np.array(["", "", ""]))


def test_auroc_by_source_rejects_bad_sources():
    from mmh_bench.evaluation.metrics import auroc_by_source
    y, s, src, _, _ = _two_sources()
    with pytest.raises(ValueError, match="entries"):
        auroc_by_source(y, s, src[:-1])
    bad = src.copy()
    bad[30] = ""
    with pytest.raises(ValueError, match="non-empty string source"):
        auroc_by_source(y, s, bad)
    # no positives: every source gets None
    assert auroc_by_source(np.zeros(4, int), np.arange(4.0), np.array(["a"] * 4)) == {"a": None}


def test_stored_roc_curve_gives_back_the_low_fpr_metrics():
    """The stored curve keeps every vertex up to 5% FPR, so TPR@0.1%/1%/5% read off it (as the ROC
    plots draw it) equal the metrics; thinning by index alone lost that corner."""
    from mmh_bench.evaluation.metrics import memorization_metrics
    from mmh_bench.evaluation.detection import ROC_POINTS, roc_points
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(300), np.zeros(20000)].astype(bool)
    s = np.r_[rng.normal(2.0, 1.0, 300), rng.normal(0.0, 1.0, 20000)]
    roc = roc_points(y, s)
    fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
    assert len(fpr) > ROC_POINTS and fpr[0] == 0 and fpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    m = memorization_metrics(y, s, None, ())
    for key, value in m["tpr_at_fpr"].items():
        from_curve = tpr[fpr <= float(key) + 1e-12].max()
        assert abs(from_curve - value) < 1e-4, (key, from_curve, value)
