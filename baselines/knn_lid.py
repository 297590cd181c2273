"""Data-side LID of the generated samples, from their neighbours among the task's samples.

These see nothing but the samples: a generated sample that is one of many near-identical
copies (the model collapsed onto a point) has neighbours at distance ~0 and LID ~0. Each wraps
one estimator of :mod:`mmh_bench.evaluation.data_lid` (scikit-dimension's pointwise definitions, on FAISS
neighbours); the neighbourhood of a sample excludes the sample itself.

Known limitation (why these can lose to ``random``): a fixed-k estimator has no scale. When a
model regenerates one training point many times with a little isotropic error, a copy's k
neighbours are the other copies, and at that scale the cluster is full-dimensional: the
estimate is ~D, not 0. Only when the copies are (numerically) identical, or fewer than k, does
the collapse show as a low LID.
"""
from __future__ import annotations

import numpy as np

from mmh_bench import Access, AccessError, Batch, Context, LIDEstimator
from mmh_bench.evaluation.data_lid import KNNIndex, estimate


class _KNNLID(LIDEstimator):
    access = Access.SAMPLES
    method = ""
    cost_note = "one k-NN search over the task's samples; no network"

    def __init__(self, k: int = 20) -> None:
        self.k = int(k)
        self._index: KNNIndex | None = None

    def _kwargs(self) -> dict:
        return {}

    def fit(self, ctx: Context) -> None:
        try:
            self._index = KNNIndex(ctx.samples.x)
        except AccessError:  # a context without the task's samples: neighbours within each batch
            self._index = None

    def estimate(self, batch: Batch, ctx: Context) -> np.ndarray:
        if self._index is None:
            return estimate(self.method, np.asarray(batch.x), k=self.k, **self._kwargs())
        return estimate(self.method, self._index, batch.x, k=self.k, exclude=np.asarray(batch.index),
                        **self._kwargs())


class LPCA(_KNNLID):
    """Local PCA (Fukunaga-Olsen rule: eigenvalues above ``alpha`` x the largest)."""

    name = "lpca"
    method = "lpca"

    def __init__(self, k: int = 20, alpha: float = 0.05) -> None:
        super().__init__(k)
        self.alpha = float(alpha)

    def _kwargs(self) -> dict:
        return {"alpha": self.alpha}


class MLE(_KNNLID):
    """Levina-Bickel maximum-likelihood LID."""

    name = "mle"
    method = "mle"


class TwoNN(_KNNLID):
    """TwoNN (Facco et al. 2017) fitted within each sample's neighbourhood."""

    name = "twonn"
    method = "twonn"

    def __init__(self, k: int = 20, discard_fraction: float = 0.1) -> None:
        super().__init__(k)
        self.discard_fraction = float(discard_fraction)

    def _kwargs(self) -> dict:
        return {"discard_fraction": self.discard_fraction}


class ESS(_KNNLID):
    """Expected simplex skewness (Johnsson et al. 2015), version 'a'."""

    name = "ess"
    method = "ess"
