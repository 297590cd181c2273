"""Public beside held-out: one detector's headline metric on the published (public) instances of a
task next to the same metric on fresh (held-out) instances, and whether the gap is larger than the
replicates' spread explains.

A detector that generalises scores alike on both, up to the spread of one placement and training
run to the next; one that memorised the published answers wins on the public instances only. The
rule is one place (:func:`compare`) that ``verify`` records and the board shows.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable

from mmh_bench.leaderboard.schema import HeldOutGap
from mmh_bench.leaderboard.store import Result

#: the headline metric per track (the board's rank column) and whether higher is better
HEADLINE = {"memorization": "auroc", "lid": "mae"}
HIGHER_IS_BETTER = {"auroc": True, "mae": False}
#: spreads (standard errors of the difference) the public score may exceed the held-out one by
GAP_SIGMAS = 2.0
#: a floor on the tolerated gap: the board shows three decimals
MIN_GAP = 0.02


def headline(res: Result) -> float | None:
    """The headline metric (:data:`HEADLINE`) of one result as :func:`~mmh_bench.leaderboard.store.read_result`
    returns it; None where it failed."""
    m = res.metrics  # None exactly when the result failed (schema.check_outcome)
    if m is None:
        return None
    return float(getattr(m, HEADLINE[res.track]))


def mean_sd(values: list[float], *, missing: str = "–", count: str = "{}") -> str:
    """``mean ± sd (n)`` of replicate values at the board's three decimals (``mean (1)`` for one);
    ``count`` formats n, ``missing`` stands for none."""
    if not values:
        return missing
    mean = sum(values) / len(values)
    n = count.format(len(values))
    if len(values) == 1:
        return f"{mean:.3f} ({n})"
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.3f} ± {sd:.3f} ({n})"


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def compare(public: Iterable[float | None], heldout: Iterable[float | None], *,
            higher_is_better: bool = True) -> HeldOutGap:
    """Means, spreads and the gap by which the public values (one per replicate) beat the held-out
    ones (positive: better on the public instances). ``flagged``: the gap exceeds ``GAP_SIGMAS``
    standard errors of the difference plus :data:`MIN_GAP`.

    A detector that memorised nothing scores public and held-out replicates alike (draws of one
    training-and-placement distribution), so the standard error uses their pooled standard
    deviation: a single public replicate is judged against the held-out replicates' spread. With
    fewer than three replicates in all there is no spread to judge by (``judged`` False, never
    flagged): a second training run moves some shipped detectors by 0.1-0.4 AUROC on one-replicate
    tasks."""
    pub = [float(v) for v in public if v is not None]
    held = [float(v) for v in heldout if v is not None]
    values = HeldOutGap(public=[round(v, 6) for v in pub], heldout=[round(v, 6) for v in held], judged=False)
    if not pub or not held:
        return values
    mp, mh = statistics.fmean(pub), statistics.fmean(held)
    gap = (mp - mh) if higher_is_better else (mh - mp)
    means = values.model_copy(update=dict(public_mean=round(mp, 6), heldout_mean=round(mh, 6),
                                          heldout_sd=round(_sd(held), 6), gap=round(gap, 6)))
    dof = len(pub) + len(held) - 2
    if dof < 1:
        return means
    pooled = math.sqrt(((len(pub) - 1) * _sd(pub) ** 2 + (len(held) - 1) * _sd(held) ** 2) / dof)
    tol = GAP_SIGMAS * pooled * math.sqrt(1 / len(pub) + 1 / len(held)) + MIN_GAP
    return means.model_copy(update=dict(tolerance=round(tol, 6), flagged=bool(gap > tol), judged=True))
