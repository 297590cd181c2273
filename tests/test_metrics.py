import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmh_bench.metrics import (bootstrap_auroc_ci, concordance, lid_metrics, memorization_metrics,
                               tpr_at_fpr)


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


def test_vectorized_bootstrap_auroc_matches_sklearn_on_resamples():
    from mmh_bench.metrics import _weighted_auroc
    rng = np.random.default_rng(1)
    y = rng.random(500) < 0.2
    s = np.round(y + rng.normal(0, 1, 500), 1)  # many ties
    draws = rng.integers(0, 500, (5, 500))
    w = np.stack([np.bincount(d, minlength=500) for d in draws]).astype(float)
    expected = [roc_auc_score(y[d], s[d]) for d in draws]
    np.testing.assert_allclose(_weighted_auroc(y, s, w), expected, atol=1e-12)
