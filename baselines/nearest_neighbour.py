"""Data-copying statistics from nearest-neighbour search over the deduplicated training set."""
from __future__ import annotations

import numpy as np

from mmh_bench import Access, Batch, Context, Detector


class CopyRuleReference(Detector):
    """Reference: the task's labelling rule restated exactly (base copy test and chance test).

    Scores the base test's margin ``-max(d1 / (ratio d2), d1 / abs_tol)`` (above -1 exactly when
    the base test passes) and pushes a copy far below -1 when its training point is not one the
    chance test calls memorized, so it ranks every positive above every negative: AUROC 1 on every
    memorization task. Not a competitor: it checks that labels, rule and evaluator agree.
    """

    name = "copy-rule"
    access = Access.TRAIN_DATA
    reference = True
    cost_note = "one 2-NN search over all samples (the chance test needs them together)"

    def fit(self, ctx: Context) -> None:
        rule = ctx.train_index.rule
        if rule is None:
            raise ValueError(f"task {ctx.task.name!r} carries no copy rule (labels given, not computed)")
        self._memorized_point = rule.apply(ctx.train_index, ctx.samples.x)["memorized_point"]

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        lab, margin = ctx.train_index.rule.base(ctx.train_index, batch.x)  # the chance test was decided in fit
        counted = self._memorized_point[np.maximum(lab.nn, 0)] & (lab.nn >= 0)
        return np.where(counted, margin, np.minimum(margin, -1.0) - 10.0)


class NNRatio(Detector):
    """Minus the ratio d1/d2 of the base copy test (Yoon et al.; Gu et al.).

    It reads the training set's neighbours, so it ranks with the training-set oracles; it ignores
    the absolute tolerance and the chance test, so it is not the labelling rule (``copy-rule`` is).
    """

    name = "nn-ratio"
    access = Access.TRAIN_DATA
    cost_note = "one 2-NN search"

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        d, _ = ctx.train_index.search(batch.x, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(d[:, 1] > 0, d[:, 0] / d[:, 1], 1.0)
        return -ratio


class NNDistance(Detector):
    """Distance to the nearest deduplicated training point; closer = more memorized.

    The plainest data-copying signal (e.g. Carlini et al. 2023 use such distances to confirm
    extraction). Unlike ``nn-ratio`` it has no scale of its own: a sample on a dense part of the
    data is close to some training point without copying it.
    """

    name = "nn-distance"
    access = Access.TRAIN_DATA
    cost_note = "one 1-NN search"

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        d, _ = ctx.train_index.search(batch.x, 1)
        return -d[:, 0]


def nearest_neighbour_radius(ctx: Context, rep: np.ndarray) -> np.ndarray:
    """Distance from each deduplicated training point ``rep`` to its nearest other one."""
    index = ctx.train_index
    d, i = index.search(index.data[rep], 2)
    return np.where(i[:, 0] == rep, d[:, 1], d[:, 0])


class AuthPct(Detector):
    """Authenticity (Alaa et al., ICML 2022, "How faithful is your synthetic data?").

    A sample is unauthentic when it is closer to its nearest training point x_j than x_j is to
    its own nearest training neighbour. The per-sample score is the continuous version,
    ``-d(x, x_j) / d(x_j, NN(x_j))``: above -1 means unauthentic, higher means more so. The
    set-level authenticity percentage is the fraction of scores below -1. Computed on the
    deduplicated training set, so a duplicated point counts once (as in the labelling rule);
    otherwise its nearest neighbour would be its own copy at distance 0.
    """

    name = "authpct"
    access = Access.TRAIN_DATA
    cost_note = "two 1-NN searches (sample, then its nearest training point)"

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        d, i = ctx.train_index.search(batch.x, 1)
        radius = nearest_neighbour_radius(ctx, i[:, 0])
        return -d[:, 0] / np.maximum(radius, 1e-12)
