"""FLIPD of the empirical training distribution, in closed form ("closed-form diffusion model").

The perfectly memorizing diffusion model is the one whose data distribution is the training set
itself (the closed-form score of Scarvelis et al., 2023, unsmoothed). Its noised law at time t
is a Gaussian mixture, sum_i m_i N(sqrt(ab) x_i, sigma^2 I) (m_i = duplicate-group size), and
its FLIPD at y = sqrt(ab) x has a closed form: with h^2 = sigma^2 / ab,

    FLIPD_emp(x) = sum_i w_i ||x - x_i||^2 / h^2,   w_i ∝ m_i exp(-||x - x_i||^2 / (2 h^2)),

the posterior-weighted squared distance to the training points in units of the bandwidth h.
Where training points are dense on a d-manifold at scale h it is ~d; at a copy of a training
point it is ~0. Only the ``k`` nearest deduplicated training points are used (the weights of the
rest vanish). No network is evaluated.

Bandwidth: ``bandwidth`` (data units), else ``bandwidth_factor`` times the median distance
between a deduplicated training point and its nearest neighbour (over at most 5000 of them),
chosen in ``fit`` without labels (the scale at which the training set looks continuous where it is dense).
"""
from __future__ import annotations

import numpy as np

from mmh_bench import Access, Batch, Context, LIDEstimator

#: training points used to measure the median nearest-neighbour spacing
FIT_POINTS = 5000


def empirical_flipd(dist: np.ndarray, mult: np.ndarray, h: float) -> np.ndarray:
    """Closed-form FLIPD from distances ``[n, k]`` to training points with multiplicities ``mult``."""
    q = (dist / h) ** 2
    logw = np.log(np.maximum(mult, 1)) - 0.5 * q
    logw -= logw.max(axis=1, keepdims=True)
    w = np.exp(logw)
    w /= w.sum(axis=1, keepdims=True)
    return (w * q).sum(axis=1)


class CFDM(LIDEstimator):
    """FLIPD of the (deduplicated, multiplicity-weighted) training set as a diffusion model."""

    name = "cfdm"
    access = Access.TRAIN_DATA
    cost_note = "one k-NN search in the training set; no network"
    note = ("cfdm's rows depend on its bandwidth rule (2x the training set's median nearest-neighbour "
            "spacing): where the model's copies are blurrier than that, or non-copies sit in dense regions, "
            "the ranking inverts; a tenth of it ranks very differently (set bandwidth_factor).")

    def __init__(self, k: int = 64, bandwidth: float | None = None, bandwidth_factor: float = 2.0) -> None:
        self.k = int(k)
        self.bandwidth = None if bandwidth is None else float(bandwidth)
        self.bandwidth_factor = float(bandwidth_factor)
        self._h: float | None = self.bandwidth

    def fit(self, ctx: Context) -> None:
        if self.bandwidth is not None:
            self._h = self.bandwidth
            return
        index = ctx.train_index
        rep = np.arange(len(index))
        if len(rep) > FIT_POINTS:  # the median spacing needs a sample of points, not all of them
            rep = np.sort(ctx.rng(11).choice(len(rep), FIT_POINTS, replace=False))
        d, i = index.search(index.data[rep], 2)
        nn = np.where(i[:, 0] == rep, d[:, 1], d[:, 0])
        spacing = float(np.median(nn)) if len(index) > 1 else 1.0
        self._h = self.bandwidth_factor * max(spacing, 1e-12)

    def estimate(self, batch: Batch, ctx: Context) -> np.ndarray:
        if self._h is None:
            self.fit(ctx)
        index = ctx.train_index
        d, i = index.search(batch.x, self.k)
        return empirical_flipd(d, index.group_size[i].astype(float), self._h)
