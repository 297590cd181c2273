"""Data-copying statistics from nearest-neighbour search over the deduplicated training set."""
from __future__ import annotations

import numpy as np

from mmh_bench import Access, Batch, Context, Detector


class NNRatio(Detector):
    """Reference: minus the ratio d1/d2 of the labelling rule itself (Yoon et al.; Gu et al.).

    It sees the training set, so it is the ceiling a sample-side detector is compared with,
    not a competitor: its AUROC is high by construction.
    """

    name = "nn-ratio"
    access = Access.TRAIN_DATA
    reference = True
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
