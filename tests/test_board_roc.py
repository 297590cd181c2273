"""Stored ROC curves and the TPR@FPR metrics beside them.

Curves are stored with every vertex up to 5% FPR (``roc_points``), so the ROC plots read back the
metrics. Results written before that kept only ~200 points picked by index and may have lost the
low-FPR corner; they cannot be recomputed without re-running, so the plot marks the stored metric's
point on them, and this file lists which committed results still do.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from board_store import mem_metrics
from mmh_bench.evaluation.detection import ROC_POINTS, roc_points
from mmh_bench.evaluation.metrics import memorization_metrics
from mmh_bench.leaderboard.board import collect_board
from mmh_bench.leaderboard.board.model import Row
from mmh_bench.leaderboard.board.plots import _roc_png, roc_gaps
from mmh_bench.leaderboard.schema import Roc

ROOT = Path(__file__).parent.parent

#: committed results whose stored curve disagrees with their TPR@FPR metrics (task, instance data
#: hash prefix, detector): dev-instance `random` rows written before the corner was kept. A new
#: result never joins this list; re-running one of these takes it off.
THINNED = {
    ("image-digits", "d92d852b3de4", "random"),
    ("mmh-toy", "b3ac018d9941", "random"),
    ("syn10-cond", "639a1348fcc5", "random"),
    ("syn2-cond", "ee8328a6f277", "random"),
    ("t2i-digits", "6a3666a799b3", "random"),
}


def test_a_sharp_low_fpr_corner_survives_thinning():
    """A fifth of the positives above every negative: the curve's vertex (0, 0.2) is one index
    among tens of thousands, which thinning by index alone drops."""
    rng = np.random.default_rng(1)
    n_pos, n_neg = 500, 30000
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(bool)
    s = np.r_[10.0 + rng.random(100), rng.normal(0.0, 1.0, n_pos - 100), rng.normal(0.0, 1.0, n_neg)]
    roc = roc_points(y, s)
    fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
    assert len(fpr) > ROC_POINTS
    assert tpr[fpr == 0].max() == 0.2  # the corner
    m = memorization_metrics(y, s, None, ())
    for key, value in m["tpr_at_fpr"].items():
        assert abs(tpr[fpr <= float(key) + 1e-12].max() - value) < 1e-4, key
    # every vertex below 5% FPR is kept
    from sklearn.metrics import roc_curve
    full_fpr, full_tpr, _ = roc_curve(y, s)
    low = full_fpr <= 0.05
    kept = set(zip(fpr.round(7), tpr.round(5)))
    assert set(zip(full_fpr[low].round(7), full_tpr[low].round(5))) <= kept


def test_committed_results_with_thinned_curves_are_the_known_ones():
    board = collect_board(ROOT / "leaderboard" / "results")
    found = {(r.task, r.instance[:12], r.detector) for r in board.rows if roc_gaps(r)}
    assert found == THINNED


def test_the_roc_plot_marks_the_stored_metric_where_the_curve_was_thinned():
    row = Row(kind="measured", task="t", version="1", family="synthetic", track="memorization", detector="d",
              access="samples", metrics=mem_metrics(0.9, tpr_at_fpr={"0.001": 0.3, "0.01": 0.5, "0.05": 0.6}),
              roc=Roc(fpr=[0.0, 0.02, 1.0], tpr=[0.0, 0.6, 1.0]))
    assert [(a, w) for a, _, w in roc_gaps(row)] == [(0.001, 0.3), (0.01, 0.5)]
    honest = Row(**{**row.__dict__, "roc": Roc(fpr=[0.0, 0.0, 0.005, 0.02, 1.0], tpr=[0.0, 0.3, 0.5, 0.6, 1.0])})
    assert roc_gaps(honest) == []
    from mmh_bench.leaderboard.board.model import TaskFacts
    task = TaskFacts("t", "1", "synthetic", "memorization")
    assert _roc_png(task, [row]) != _roc_png(task, [honest])
