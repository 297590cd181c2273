"""Metrics, one definition each.

- TPR@FPR<=alpha: the largest TPR over ROC points whose FPR does not exceed alpha. Scores are
  used as given (higher = more memorized); labels are never flipped. The "closest ROC point"
  variant some papers use is stored beside it (``tpr_at_fpr_closest``) for comparison only.
- A TPR@FPR<=alpha is *resolvable* only when the negatives can express alpha: with
  ``n_neg * alpha < 1`` a single false positive already exceeds it, and below
  :data:`~mmh_bench.common.fpr.MIN_EXPECTED_FP` expected false positives the number rests on a handful of negatives.
  The rule's outcome is stored per target (``tpr_at_fpr_resolvable``); the board hides the rest.
- AUROC and average precision come from scikit-learn.
- Bootstrap CIs: one set of resamples (with replacement, fixed seed) gives the AUROC and every
  TPR@FPR interval, so the intervals describe the same resampled worlds; resamples with a single
  class are skipped.
- AUROC by negative source: every positive against one source's negatives at a time (COCO,
  LAION, ...), so a detector that only separates easy negatives shows it (Verma et al. found
  Wen et al.'s detector at 0.967 against LAION negatives and 1.000 against random strings).
- LID metrics: MAE, MSE, and concordance = probability that, of two points with different true
  LID, the one with the larger LID gets the larger estimate (ties count one half).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from mmh_bench.common.fpr import FPR_TARGETS, MIN_SOURCE_NEG, tpr_resolvable

N_BOOT = 1000
BOOT_SEED = 0
_CHUNK = 100  # resamples per vectorised step (bounds memory at about CHUNK x n counts)
_EPS = 1e-12


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(s, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels have {y.size} entries, scores {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return y, s


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(y: np.ndarray, s: np.ndarray, alpha: float) -> float:
    """Largest TPR among ROC points with FPR <= alpha (strict; never the 'closest' point)."""
    roc = _roc(*_check(y, s))
    if roc is None:
        return float("nan")
    fpr, tpr = roc
    return float(tpr[fpr <= alpha + _EPS].max())


def tpr_at_fpr_closest(y: np.ndarray, s: np.ndarray, alpha: float) -> float:
    """TPR at the ROC point whose FPR is closest to alpha (the larger TPR on a tie); may exceed alpha."""
    roc = _roc(*_check(y, s))
    if roc is None:
        return float("nan")
    fpr, tpr = roc
    gap = np.abs(fpr - alpha)
    return float(tpr[gap <= gap.min() + _EPS].max())


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    y, s = _check(y, s)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    y, s = _check(y, s)
    if not y.any():
        return float("nan")
    # sklearn sums precision increments, which can round a perfect ranking to 1 + 2e-16
    return float(min(1.0, average_precision_score(y, s)))


def resample_counts(y: np.ndarray, s: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives per distinct score level (ascending) in each resample.

    ``draws`` [B, n] holds the sample indices of B resamples; returns two [B, levels] count arrays,
    from which any ROC quantity of every resample follows without a loop over resamples."""
    levels, inv = np.unique(s, return_inverse=True)
    return _counts(np.asarray(y, dtype=bool), inv, len(levels), draws)


def _counts(y: np.ndarray, inv: np.ndarray, k: int, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = np.arange(draws.shape[0])[:, None] * k + inv[draws]
    cls = y[draws]
    size = draws.shape[0] * k
    return (np.bincount(flat[cls], minlength=size).reshape(-1, k),
            np.bincount(flat[~cls], minlength=size).reshape(-1, k))


def auroc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of each row of level counts, ties counted one half (NaN for a single-class row)."""
    neg_below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each level
    num = (pos * (neg_below + 0.5 * neg)).sum(1)
    den = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def tpr_from_counts(pos: np.ndarray, neg: np.ndarray, alpha: float | tuple[float, ...]) -> np.ndarray:
    """Strict TPR@FPR<=alpha of each row of level counts (NaN for a single-class row); with several
    targets, one row of results per target.

    Thresholds run from the highest level down, so FPR and TPR only grow along a row: the answer
    is the TPR at the last point whose FPR is within alpha, or 0 (the ROC's origin) if none is."""
    tp = np.cumsum(pos[:, ::-1], axis=1)
    fp = np.cumsum(neg[:, ::-1], axis=1)
    n_pos, n_neg = tp[:, -1], fp[:, -1]
    rows = np.arange(len(tp))
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fp / n_neg[:, None]
        out = []
        for a in np.atleast_1d(alpha):
            last = (fpr <= a + _EPS).sum(axis=1) - 1
            best = np.where(last >= 0, tp[rows, np.maximum(last, 0)], 0) / n_pos
            out.append(np.where((n_pos > 0) & (n_neg > 0), best, np.nan))
    return out[0] if np.ndim(alpha) == 0 else np.stack(out)


def _interval(v: np.ndarray, level: float) -> list[float] | None:
    v = v[np.isfinite(v)]  # resamples with a single class
    if v.size == 0:
        return None
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def bootstrap_cis(y: np.ndarray, s: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                  level: float = 0.95, alphas: tuple[float, ...] = FPR_TARGETS) -> dict[str, Any]:
    """Percentile bootstrap CIs of AUROC and of each strict TPR@FPR, from the same resamples.

    Returns ``{"auroc": [lo, hi] | None, "tpr_at_fpr": {str(alpha): [lo, hi] | None}}``."""
    y, s = _check(y, s)
    if y.all() or not y.any():
        return {"auroc": None, "tpr_at_fpr": {str(a): None for a in alphas}}
    rng = np.random.default_rng(seed)
    n = len(y)
    levels, inv = np.unique(s, return_inverse=True)
    au, tprs = [], []
    for start in range(0, n_boot, _CHUNK):
        pos, neg = _counts(y, inv, len(levels), rng.integers(0, n, (min(_CHUNK, n_boot - start), n)))
        au.append(auroc_from_counts(pos, neg))
        if alphas:
            tprs.append(tpr_from_counts(pos, neg, tuple(alphas)))
    tpr = np.concatenate(tprs, axis=1) if alphas else None
    return {"auroc": _interval(np.concatenate(au), level),
            "tpr_at_fpr": {str(a): _interval(tpr[i], level) for i, a in enumerate(alphas)}}


def bootstrap_auroc_ci(y: np.ndarray, s: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                       level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap CI of AUROC; None when it cannot be computed."""
    return bootstrap_cis(y, s, n_boot, seed, level, alphas=())["auroc"]


def detection_metrics(y: np.ndarray, s: np.ndarray, *, with_ci: bool = True) -> dict[str, Any]:
    y, s = _check(y, s)
    n_neg = int((~y).sum())
    out: dict[str, Any] = {
        "auroc": auroc(y, s),
        "ap": average_precision(y, s),
        "tpr_at_fpr": {str(a): tpr_at_fpr(y, s, a) for a in FPR_TARGETS},
        "tpr_at_fpr_closest": {str(a): tpr_at_fpr_closest(y, s, a) for a in FPR_TARGETS},
        "tpr_at_fpr_resolvable": {str(a): tpr_resolvable(n_neg, a) for a in FPR_TARGETS},
        "n_pos": int(y.sum()),
        "n_neg": n_neg,
    }
    if with_ci:
        cis = bootstrap_cis(y, s)
        out["auroc_ci"] = cis["auroc"]
        out["tpr_at_fpr_ci"] = cis["tpr_at_fpr"]
    return out




def auroc_by_source(y: np.ndarray, s: np.ndarray, negative_source: np.ndarray) -> dict[str, float | None]:
    """AUROC of all positives against each negative source's negatives: ``{source: auroc}``.

    ``negative_source`` has one entry per sample; a negative's entry names its source (a non-empty
    string), a positive's entry is ignored. A source with fewer than :data:`MIN_SOURCE_NEG`
    negatives, or a task without positives, gets None. Sources are returned in sorted order."""
    y, s = _check(y, s)
    src = np.asarray(negative_source, dtype=object).ravel()
    if src.shape != y.shape:
        raise ValueError(f"negative_source has {src.size} entries, labels {y.size}")
    bad = [v for v in src[~y] if not isinstance(v, str) or not v]
    if bad:
        raise ValueError(f"every negative needs a non-empty string source (got {bad[0]!r})")
    out: dict[str, float | None] = {}
    for name in sorted(set(src[~y])):
        neg = ~y & (src == name)
        out[str(name)] = (auroc(y[y | neg], s[y | neg])
                          if y.any() and neg.sum() >= MIN_SOURCE_NEG else None)
    return out


def memorization_metrics(y: np.ndarray, s: np.ndarray, subtype: np.ndarray | None = None,
                         subtype_names: dict[int, str] | None = None,
                         negative_source: np.ndarray | None = None) -> dict[str, Any]:
    """Overall metrics, plus each subtype's positives against all non-memorized samples, and with
    ``negative_source`` (one entry per sample) ``auroc_by_source`` (:func:`auroc_by_source`;
    left out when there are no negatives)."""
    y, s = _check(y, s)
    out = detection_metrics(y, s)
    if negative_source is not None:
        by_source = auroc_by_source(y, s, negative_source)
        if by_source:  # no negatives, no sources
            out["auroc_by_source"] = by_source
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
    conc = concordance(true, est)  # undefined (None) when every point has the same LID*, e.g. a Swiss roll
    out = {"mae": float(np.abs(err).mean()), "mse": float((err ** 2).mean()),
           "concordance": conc if np.isfinite(conc) else None, "n": int(true.size)}
    levels = by_true_lid(true, est)
    if levels:
        out["by_true_lid"] = levels
    return out


#: most distinct true LID* values summarised one by one (more: rounded to integers; still more: none)
MAX_LID_LEVELS = 64


def by_true_lid(true: np.ndarray, est: np.ndarray) -> list[dict[str, float]]:
    """Per distinct true LID*, the estimates' mean and 10th/90th percentiles: a whole task's
    estimate-against-truth picture in a few numbers (LID* takes few values on every LID task)."""
    true, est = np.asarray(true, dtype=float).ravel(), np.asarray(est, dtype=float).ravel()
    key = np.round(true, 3)
    if len(np.unique(key)) > MAX_LID_LEVELS:
        key = np.round(true)
    if len(np.unique(key)) > MAX_LID_LEVELS or not np.all(key >= 0):
        return []
    out = []
    for v in np.unique(key):
        e = est[key == v]
        q10, q90 = np.quantile(e, [0.1, 0.9])
        out.append({"lid": float(v), "n": int(e.size), "mean": float(e.mean()), "q10": float(q10), "q90": float(q90)})
    return out
