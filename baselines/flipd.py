"""FLIPD (Kamkari et al., NeurIPS 2024): the model's LID at x from one score evaluation.

FLIPD(x, t0) = D - sigma(t0) * tr(d eps / dy) + ||eps||^2 at y = sqrt(alpha_bar(t0)) x,
the eps-form of D + sigma^2 [tr grad s + ||s||^2]. The trace is exact (D basis JVPs) when
D <= ``exact_max_dim``, otherwise Hutchinson's estimator with ``probes`` Rademacher vectors
(fixed per sample). Low FLIPD means the model collapsed onto x: the memorization score is -FLIPD.

Choosing t0. FLIPD is a function of t0: too small and a trained network's score is inaccurate
(FLIPD drifts to D), too large and the noise washes the manifold out (FLIPD falls to 0).
:func:`flipd_curve` sweeps t0 over a log grid (18 points in [1e-3, 0.44]); in ``fit``, without
labels, the detector takes the mean FLIPD-vs-log(t0) curve over a seeded subset of the task's
samples and picks t0 by one of two rules:

- ``t0="plateau"`` (default, :func:`plateau_index`): the centre of the coarsest stretch over which
  both FLIPD and D - FLIPD stay within a factor 1.3, spanning at least a factor 2 in t0.
- ``t0="knee"`` (:func:`knee_index`): the Kneedle knee, the point farthest below the chord
  between the curve's ends, i.e. where the curve enters its plateau; with no such point (a
  curve that is flat and then falls) the smallest t0.

Why this plateau rule (measured with ``benchmarks/flipd_t0_sweep.py``, results in
``benchmarks/results/flipd_t0/summary.md``): across the synthetic, LID and image tasks it lands
within 0.04 AUROC of the best t0 on the grid (syn100-dd 0.977 vs 0.982, mmh-toy 0.848 vs 0.884,
image-digits 0.950 vs 0.973) and within 0.25 of the best MAE on the LID mixtures; on t2i-digits,
whose unconditional curve falls steadily with no plateau, the fallback gives 0.47 (best 0.57,
FLIPD is uninformative there at any t0). Factors 1.25 and
1.3 choose the same t0 on every task. An absolute band (stable to half a dimension, the previous
rule) finds no plateau in D = 100, where the curve falls through a first shelf at ~12 (the
network's own blur) before the shelf at ~7 that reads LID* = 5; it chose t0 = 0.002 on syn100-dd
(FLIPD ~81 on both classes, AUROC 0.42). The knee rule returns the unresolved tiny t0 on several
tasks (mmh-toy AUROC 0.38). Not a free lunch: on an MLP trained only 3,000 steps on affine
planes (``benchmarks/bench_detectors.py``) the rule picks t0 = 0.215, MAE 1.07 against 0.59 at a
fixed t0 = 0.05, because that network's curve is still falling there. An explicit float fixes t0.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from mmh_bench import Access, AccessError, Batch, Context, LIDEstimator
from mmh_bench.api.score_model import vp_linear_alpha_bar

from ._common import row_noise

#: the plateau rule: stable within this factor (max / min) over at least this factor in t
RATIO = 1.3
MIN_SPAN = 2.0
#: largest t0 the rules consider: beyond it the VP schedule keeps under 0.37 of the signal
#: (alpha_bar < 0.14) and FLIPD reads noise (a flat tail there is washout, not a plateau)
T_MAX = 0.44
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


def plateau_index(t: np.ndarray, y: np.ndarray, dim: int, ratio: float = RATIO,
                  min_span: float = MIN_SPAN) -> int:
    """The coarsest stable stretch of a FLIPD-vs-t curve, and the grid point at its (geometric)
    centre.

    A stretch is stable when both the curve and its distance from D stay within a factor
    ``ratio`` (max / min) over it, it spans at least a factor ``min_span`` in t, and it lies
    strictly between 0 and ``dim`` - 1/2 (at ~D nothing is resolved; at <= 0 noise has washed the
    data out). Asking it of D - y too keeps the slow approach to D at tiny t (e.g. 93, 90, 87 in
    D = 100: stable in y, not in D - y) from counting as a plateau. For every end point the longest
    stable stretch ending there is a candidate; the one ending at the largest t wins. Why the
    coarsest: a trained network's curve falls from ~D through the scales where the network itself
    is blurry (its samples sit off the data by its own error), which can hold a first, too-high
    shelf; the last stretch before washout is where the learned manifold is read above the
    network's resolution. Stability is relative (a factor, not an absolute band) so the rule
    means the same in D = 2 and D = 100. With no stretch that long, the flattest pair of
    neighbours (by the same two-sided measure) wins; with nothing resolved at all, the middle of
    the grid.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = (y > 0.05) & (y < dim - 0.5)
    free = dim - y  # distance from "nothing resolved"; stability is asked of both y and D - y

    def spread(a: int, b: int) -> float:
        """Largest max / min over [a, b] of y and of D - y (log scale)."""
        return max(float(np.log(v[a:b + 1].max() / v[a:b + 1].min())) for v in (y, free))

    best: tuple[int, int] | None = None
    for j in range(len(y)):
        if not ok[j]:
            continue
        i = j
        while i - 1 >= 0 and ok[i - 1] and spread(i - 1, j) <= np.log(ratio):
            i -= 1
        if t[j] / t[i] >= min_span:
            best = (i, j)
    if best is None:
        pairs = [(spread(k, k + 1), k) for k in range(len(y) - 1) if ok[k] and ok[k + 1]]
        return min(pairs)[1] if pairs else len(y) // 2
    i, j = best
    centre = np.sqrt(t[i] * t[j])  # ties (an even-length stretch) go to the smaller t
    return int(np.argmin(np.round(np.abs(np.log(t[i:j + 1] / centre)), 9))) + i


class FLIPD(LIDEstimator):
    """FLIPD: the model's LID from the score and its Jacobian trace at a small time t0.

    ``t0``: a float, or ``"plateau"`` (default) / ``"knee"`` to choose it in ``fit`` from the mean
    FLIPD-vs-t0 curve over ``fit_samples`` of the task's samples on ``n_t`` log-spaced times in
    ``[t_min, t_max]`` (see the module docstring).
    """

    name = "flipd"
    access = Access.MODEL
    version = "3"
    reference = False
    cost_note = "D JVPs (exact trace, D <= 64) or K JVPs (Hutchinson); t0 rule: + n_t x that on fit_samples"
    _use_cond = False

    def __init__(self, t0: float | str = "plateau", probes: int = 16, exact_max_dim: int = 64,
                 t_min: float = 1e-3, t_max: float = T_MAX, n_t: int = 18, fit_samples: int = 64) -> None:
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

    def t_grid(self, model: Any = None) -> np.ndarray:
        """The t0 sweep: ``n_t`` log-spaced times in ``[t_min, t_max]``. On a discrete-time model
        (one with ``timesteps``, i.e. Stable Diffusion) the sweep ends where that model keeps the
        signal fraction the VP schedule keeps at ``t_max`` (alpha_bar 0.14: timestep 624 on SD,
        not 439 where alpha_bar is still 0.36), and its times are snapped to distinct timesteps
        (no two grid points share one)."""
        if model is None or not hasattr(model, "timesteps"):
            return np.geomspace(self.t_min, self.t_max, self.n_t)
        steps = int(model.num_train_timesteps)
        ab = model.alpha_bar(torch.arange(1, steps + 1, dtype=torch.float64) / steps).numpy()
        below = np.flatnonzero(ab <= float(vp_linear_alpha_bar(torch.tensor(self.t_max))))
        t_hi = (int(below[0]) + 1) / steps if below.size else 1.0
        ks = np.unique(model.timesteps(torch.as_tensor(np.geomspace(self.t_min, t_hi, self.n_t))).numpy())
        return (ks + 1) / steps

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
        grid = self.t_grid(ctx.model)
        curve = flipd_curve(ctx.model, sub.x, grid, cond=self._cond(sub),
                            probes=self._probes(ctx, sub.index, tuple(sub.x.shape[1:])))
        mean = curve.mean(axis=1)
        if self.t0 == "knee":
            i = knee_index(np.log(grid), mean)
        else:
            i = plateau_index(grid, mean, int(np.prod(sub.x.shape[1:])))
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
