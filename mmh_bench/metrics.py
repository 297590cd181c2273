"""Metrics, one definition each.

- TPR@FPR<=alpha: the largest TPR over ROC points whose FPR does not exceed alpha. Scores are
  used as given (higher = more memorized); labels are never flipped.
- AUROC and average precision come from scikit-learn.
- Bootstrap CIs resample samples with replacement under a fixed seed; resamples with a single
  class are skipped.
- LID metrics: MAE, MSE, and concordance = probability that, of two points with different true
  LID, the one with the larger LID gets the larger estimate (ties count one half).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

FPR_TARGETS = (0.001, 0.01, 0.05)
N_BOOT = 1000
BOOT_SEED = 0


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(s, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels have {y.size} entries, scores {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return y, s


def tpr_at_fpr(y: np.ndarray, s: np.ndarray, alpha: float) -> float:
    """Largest TPR among ROC points with FPR <= alpha (strict; never the 'closest' point)."""
    y, s = _check(y, s)
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    ok = fpr <= alpha + 1e-12
    return float(tpr[ok].max())


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    y, s = _check(y, s)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    y, s = _check(y, s)
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, s))


def _weighted_auroc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of each weighting in ``w`` [B, n] (bootstrap multiplicities), ties counted one half.

    Equivalent to scikit-learn's AUROC on the resampled data, vectorized over resamples.
    """
    levels, inv = np.unique(s, return_inverse=True)
    k = len(levels)
    pos = np.zeros((w.shape[0], k))
    neg = np.zeros((w.shape[0], k))
    for arr, mask in ((pos, y), (neg, ~y)):
        idx = inv[mask]
        for b in range(w.shape[0]):
            arr[b] = np.bincount(idx, weights=w[b, mask], minlength=k)
    neg_below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each level
    num = (pos * (neg_below + 0.5 * neg)).sum(1)
    den = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def bootstrap_auroc_ci(y: np.ndarray, s: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                       level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap CI of AUROC; None when it cannot be computed."""
    y, s = _check(y, s)
    if y.all() or not y.any():
        return None
    rng = np.random.default_rng(seed)
    n = len(y)
    vals = []
    for start in range(0, n_boot, 100):  # chunks bound the memory of the weight matrix
        b = min(100, n_boot - start)
        draws = rng.integers(0, n, (b, n))
        w = np.stack([np.bincount(d, minlength=n) for d in draws]).astype(float)
        vals.append(_weighted_auroc(y, s, w))
    v = np.concatenate(vals)
    v = v[np.isfinite(v)]  # resamples with a single class
    if v.size == 0:
        return None
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def detection_metrics(y: np.ndarray, s: np.ndarray, *, with_ci: bool = True) -> dict[str, Any]:
    y, s = _check(y, s)
    out: dict[str, Any] = {
        "auroc": auroc(y, s),
        "ap": average_precision(y, s),
        "tpr_at_fpr": {str(a): tpr_at_fpr(y, s, a) for a in FPR_TARGETS},
        "n_pos": int(y.sum()),
        "n_neg": int((~y).sum()),
    }
    if with_ci:
        out["auroc_ci"] = bootstrap_auroc_ci(y, s)
    return out


def memorization_metrics(y: np.ndarray, s: np.ndarray, subtype: np.ndarray | None = None,
                         subtype_names: dict[int, str] | None = None) -> dict[str, Any]:
    """Overall metrics, plus each subtype's positives against all non-memorized samples."""
    y, s = _check(y, s)
    out = detection_metrics(y, s)
    out["per_subtype"] = {}
    if subtype is not None:
        subtype = np.asarray(subtype)
        for code, name in (subtype_names or {}).items():
            pos = y & (subtype == code)
            if name == "none" or not pos.any():
                continue
            sel = pos | ~y
            out["per_subtype"][name] = detection_metrics(y[sel], s[sel])
    return out


def concordance(true: np.ndarray, est: np.ndarray) -> float:
    """Harrell-style concordance between estimates and true LID (pairs with equal truth skipped)."""
    true = np.asarray(true, dtype=float).ravel()
    est = np.asarray(est, dtype=float).ravel()
    levels = np.unique(true)
    if len(levels) < 2:
        return float("nan")
    num, den = 0.0, 0.0
    for i, a in enumerate(levels):
        for b in levels[i + 1:]:
            ea, eb = est[true == a], est[true == b]
            # Mann-Whitney U of "b's estimate beats a's"; average ranks count ties as one half
            joint = rankdata(np.concatenate([ea, eb]))
            num += joint[len(ea):].sum() - len(eb) * (len(eb) + 1) / 2
            den += len(ea) * len(eb)
    return float(num / den)


def lid_metrics(true: np.ndarray, est: np.ndarray) -> dict[str, Any]:
    true = np.asarray(true, dtype=float).ravel()
    est = np.asarray(est, dtype=float).ravel()
    if true.shape != est.shape:
        raise ValueError(f"truth has {true.size} entries, estimates {est.size}")
    if not np.all(np.isfinite(est)):
        raise ValueError("estimates contain NaN or infinity")
    err = est - true
    return {"mae": float(np.abs(err).mean()), "mse": float((err ** 2).mean()),
            "concordance": concordance(true, est), "n": int(true.size)}
