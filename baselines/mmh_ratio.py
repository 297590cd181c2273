"""The manifold memorization hypothesis as a detector (Ross et al., ICLR 2025).

MMH: the model memorizes x when its LID at x, LID_theta(x), is small next to the data's
LID*(x). Here LID_theta is FLIPD (same t0 rule as ``flipd``) and LID* is estimated from the
deduplicated training set near the sample: the local-PCA (or MLE) LID of the sample's nearest
training point, from that point's own k training neighbours. A training point that stands for a
duplicate group is a point mass of the training distribution: LID* = 0 there (data-driven
memorization).

Score = -LID_theta / max(LID*, 1). Dividing by LID* flags overfitting-driven memorization (an
isolated training point on a d-manifold copied: LID_theta ~ 0 < LID* = d) on the scale of the
dimension the model *should* have there; the floor at 1 keeps data-driven memorization (LID* =
0 and LID_theta ~ 0) at the top instead of dividing 0 by 0.
"""
from __future__ import annotations

import numpy as np

from mmh_bench import Access, Batch, Context, Detector
from mmh_bench.evaluation.data_lid import KNNIndex, estimate

from .flipd import FLIPD


def training_lid(ctx: Context, rep: np.ndarray, index: KNNIndex, method: str, k: int) -> np.ndarray:
    """LID* at deduplicated training points ``rep``: from their own neighbours, 0 for duplicates."""
    est = estimate(method, index, index.data[rep], k=k, exclude=rep)
    return np.where(ctx.train_index.group_size[rep] > 1, 0.0, est)


class MMHRatio(Detector):
    """FLIPD normalised by the training data's LID* near the sample."""

    name = "mmh-ratio"
    access = Access.MODEL | Access.TRAIN_DATA
    version = "2"  # follows FLIPD's t0 rule (flipd version 3)
    cost_note = "FLIPD (D or K JVPs) + two k-NN searches in the training set"

    def __init__(self, t0: float | str = "plateau", k: int = 20, lid_method: str = "lpca") -> None:
        self.t0 = t0
        self.k = int(k)
        self.lid_method = lid_method
        self._flipd = FLIPD(t0=t0)
        self._index: KNNIndex | None = None

    def fit(self, ctx: Context) -> None:
        self._flipd.fit(ctx)
        self._index = KNNIndex(ctx.train_index.data)

    def lid_star(self, batch: Batch, ctx: Context) -> np.ndarray:
        """Estimated LID* at each sample's nearest deduplicated training point."""
        if self._index is None:
            self.fit(ctx)
        _, i = ctx.train_index.search(batch.x, 1)
        return training_lid(ctx, i[:, 0], self._index, self.lid_method, self.k)

    def ratio(self, batch: Batch, ctx: Context) -> np.ndarray:
        """LID_theta / max(LID*, 1): ~1 where the model has the data's dimension, ~0 where it collapsed."""
        if self._index is None:
            self.fit(ctx)
        model_lid = self._flipd.estimate(batch, ctx)
        return model_lid / np.maximum(self.lid_star(batch, ctx), 1.0)

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        return -self.ratio(batch, ctx)
