"""FLIPD (Kamkari et al., NeurIPS 2024): the model's LID at x from one score evaluation.

FLIPD(x, t0) = D - sigma(t0) * tr(d eps / dy) + ||eps||^2 at y = sqrt(alpha_bar(t0)) x,
the eps-form of D + sigma^2 [tr grad s + ||s||^2]. The trace is exact (D basis JVPs) when
D <= ``exact_max_dim``, otherwise Hutchinson's estimator with ``probes`` Rademacher vectors
(fixed per sample). Low FLIPD means the model collapsed onto x: the memorization score is -FLIPD.

Choosing t0. FLIPD is a function of t0: too small and a trained network's score is inaccurate
(FLIPD drifts to D), too large and the noise washes the manifold out (FLIPD falls to 0).
:func:`flipd_curve` sweeps t0 over a log grid; in ``fit``, without labels, the detector takes
the mean FLIPD-vs-log(t0) curve over a seeded subset of the task's samples and picks t0 by one
of two rules:

- ``t0="plateau"`` (default, :func:`plateau_index`): the centre of the longest stretch of the
  curve that is stable to half a dimension, ignoring the unresolved region where FLIPD ~ D.
- ``t0="knee"`` (:func:`knee_index`): the Kneedle knee, the point farthest below the chord
  between the curve's ends, i.e. where the curve enters its plateau; with no such point (a
  curve that is flat and then falls) the smallest t0.

Why the plateau is the default (measured, ``mmh-toy``): its mean curve is flat at ~1 from
t0 = 0.003 to 0.07 and then falls, so the knee rule has no elbow and returns t0 = 0.002, where
the generated copies of the duplicated point (0.01 from it) are not yet resolved: AUROC 0.375
(DD 0.31). The plateau rule picks t0 = 0.015: AUROC 0.844 (DD 1.00). On affine planes in D = 10
(a trained MLP) both rules land on the plateau. An explicit float fixes t0.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from mmh_bench import Access, AccessError, Batch, Context, LIDEstimator

from ._common import row_noise

#: rows, and row x dimension elements, per JVP call when several probes are stacked into one batch
MAX_ROWS = 16384
MAX_ELEMS = 4_000_000
PROBE_STREAM = 100


def flipd(model: Any, x: np.ndarray | torch.Tensor, t0: float, *, cond: Sequence[Any] | None = None,
          probes: torch.Tensor | None = None) -> np.ndarray:
    """FLIPD of ``model`` at the rows of ``x`` and time ``t0``.

    ``probes`` ``[P, n, *shape]`` gives Hutchinson's probe vectors; None computes the exact
    trace with the D basis vectors. Costs P (or D) JVPs per sample, counted by the model.
    """
    tt = torch.tensor(float(t0))
    ab = model.alpha_bar(tt)
    sigma = float(torch.sqrt(1 - ab))
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    n, shape = x.shape[0], tuple(x.shape[1:])
    dim = int(np.prod(shape))
    y = x * torch.sqrt(ab)
    if probes is None:
        eye = torch.eye(dim)
        probes = eye[:, None, :].expand(dim, n, dim).reshape(dim, n, *shape)
        scale = 1.0
    else:
        scale = 1.0 / probes.shape[0]
    trace = torch.zeros(n)
    eps = None
    group = max(1, min(MAX_ROWS // max(n, 1), MAX_ELEMS // max(n * dim, 1)))
    for g0 in range(0, probes.shape[0], group):
        v = probes[g0:g0 + group]
        m = v.shape[0]
        yy = y.repeat(m, *([1] * len(shape)))
        cc = None if cond is None else list(cond) * m
        e, jv = model.eps_jvp(yy, float(t0), v.reshape(m * n, *shape).contiguous(), cc)
        trace += (v.reshape(m, n, dim) * jv.reshape(m, n, dim)).sum(dim=(0, 2))
        if eps is None:
            eps = e[:n].reshape(n, dim)
    sq = (eps ** 2).sum(1)
    return (dim - sigma * scale * trace + sq).double().numpy()


def flipd_curve(model: Any, x: np.ndarray, t_grid: Sequence[float], *, cond: Sequence[Any] | None = None,
                probes: torch.Tensor | None = None) -> np.ndarray:
    """FLIPD at every t0 of ``t_grid``: array ``[len(t_grid), n]``."""
    return np.stack([flipd(model, x, t, cond=cond, probes=probes) for t in t_grid])


def knee_index(x: np.ndarray, y: np.ndarray) -> int:
    """Knee of a curve (Kneedle-style, Satopaa et al. 2011): with both axes scaled to [0, 1],
    the point farthest *below* the chord joining the curve's ends (its convex elbow).

    FLIPD falls from about D at tiny t0 (where a trained network cannot resolve the manifold)
    to a plateau near the LID, then falls again as noise washes the data out: the elbow is the
    start of the plateau. An exact score has no first fall; its curve lies above the chord and
    the rule returns the smallest t0, which is then the right choice. Ties go to the first point.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 3:
        return 0
    xs = (x - x[0]) / (x[-1] - x[0])
    span = y.max() - y.min()
    if not np.isfinite(span) or span <= 1e-12:
        return 0
    ys = (y - y.min()) / span
    chord = ys[0] + (ys[-1] - ys[0]) * xs
    return int(np.argmax(chord - ys))


def plateau_index(y: np.ndarray, dim: int, band: float = 0.5) -> int:
    """Centre of the longest run of consecutive grid points over which the curve varies by at most
    ``band`` (in LID units, i.e. the estimate is stable to half a dimension), leaving out points
    at ``>= dim - band`` (there the network resolves no structure: FLIPD ~ D). Ties go to the
    flattest run; an even-length run's centre rounds towards smaller t (less washout bias).
    When every point is at ~D (nothing resolved at any t0), all points are considered.
    """
    y = np.asarray(y, dtype=float)
    ok = y < dim - band
    if not ok.any():
        ok[:] = True
    best: tuple[int, float, int, int] | None = None
    for i in range(len(y)):
        for j in range(i, len(y)):
            if not ok[j]:
                break
            seg = y[i:j + 1]
            spread = float(seg.max() - seg.min())
            if spread > band:
                break
            key = (j - i + 1, -spread, i, j)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        return 0
    _, _, i, j = best
    return (i + j) // 2


class FLIPD(LIDEstimator):
    """FLIPD: the model's LID from the score and its Jacobian trace at a small time t0.

    ``t0``: a float, or ``"plateau"`` (default) / ``"knee"`` to choose it in ``fit`` from the mean
    FLIPD-vs-t0 curve over ``fit_samples`` of the task's samples on ``n_t`` log-spaced times in
    ``[t_min, t_max]`` (see the module docstring).
    """

    name = "flipd"
    access = Access.MODEL
    version = "2"
    reference = False
    cost_note = "D JVPs (exact trace, D <= 64) or K JVPs (Hutchinson); t0 rule: + n_t x that on fit_samples"
    _use_cond = False

    def __init__(self, t0: float | str = "plateau", probes: int = 16, exact_max_dim: int = 64,
                 t_min: float = 2e-3, t_max: float = 0.5, n_t: int = 12, fit_samples: int = 64) -> None:
        if isinstance(t0, str) and t0 not in ("knee", "plateau"):
            t0 = float(t0)
        self.t0: float | str = t0
        self.probes = int(probes)
        self.exact_max_dim = int(exact_max_dim)
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.n_t = int(n_t)
        self.fit_samples = int(fit_samples)
        self._t0 = None if isinstance(t0, str) else float(t0)
        self._curve: tuple[np.ndarray, np.ndarray] | None = None

    def t_grid(self) -> np.ndarray:
        return np.geomspace(self.t_min, self.t_max, self.n_t)

    def _probes(self, ctx: Context, index: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor | None:
        if int(np.prod(shape)) <= self.exact_max_dim:
            return None
        per_row = row_noise(ctx, index, (self.probes, *shape), PROBE_STREAM, rademacher=True)
        return per_row.transpose(0, 1).contiguous()

    def _cond(self, batch: Batch) -> Sequence[Any] | None:
        return list(batch.cond) if self._use_cond and batch.cond is not None else None

    def fit(self, ctx: Context) -> None:
        if not isinstance(self.t0, str):
            self._t0 = float(self.t0)
            return
        try:
            allx = ctx.samples
        except AccessError:  # a context without the task's samples: choose on the first batch
            self._t0 = None
            return
        self._choose(ctx, allx)

    def _choose(self, ctx: Context, allx: Batch) -> None:
        """Pick t0 by the rule from the mean FLIPD curve over a seeded subset of ``allx``."""
        n = len(allx)
        pick = np.sort(ctx.rng(7).choice(n, size=min(self.fit_samples, n), replace=False))
        sub = Batch(x=allx.x[pick], cond=None if allx.cond is None else [allx.cond[i] for i in pick],
                    index=np.asarray(allx.index)[pick])
        grid = self.t_grid()
        curve = flipd_curve(ctx.model, sub.x, grid, cond=self._cond(sub),
                            probes=self._probes(ctx, sub.index, tuple(sub.x.shape[1:])))
        mean = curve.mean(axis=1)
        if self.t0 == "knee":
            i = knee_index(np.log(grid), mean)
        else:
            i = plateau_index(mean, int(np.prod(sub.x.shape[1:])))
        self._t0 = float(grid[i])
        self._curve = (grid, mean)

    @property
    def chosen_t0(self) -> float | None:
        """The t0 in use (after ``fit`` when t0 is chosen by a rule)."""
        return self._t0

    @property
    def curve(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(t grid, mean FLIPD)`` of the last t0 sweep, for inspection and plots."""
        return self._curve

    def estimate(self, batch: Batch, ctx: Context) -> np.ndarray:
        if self._t0 is None:
            self._choose(ctx, batch)
        return flipd(ctx.model, batch.x, self._t0, cond=self._cond(batch),
                     probes=self._probes(ctx, batch.index, tuple(batch.x.shape[1:])))


class CondFLIPD(FLIPD):
    """FLIPD of the conditional model at each sample's own condition (text-to-image style)."""

    name = "flipd-cond"
    access = Access.MODEL_COND
    _use_cond = True
