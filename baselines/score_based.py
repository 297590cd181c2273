"""Detectors that read the model's noise prediction at noised versions of the sample.

All noise is fixed per sample (seeded by the context seed and the sample's index), so scores do
not depend on how the task is cut into batches.

- ``score-norm``: mean ``||eps(y_t)||^2`` over noise draws at a small time t. Near a d-manifold
  at small t, eps is the noise's normal component, so this estimates the codimension D - d: it is
  largest (= D) where the model collapsed onto a point.
- ``denoising-loss``: the training loss ``||eps(y_t) - z||^2`` averaged over fixed (t, z) pairs,
  the loss-based membership signal (Matsumoto et al. 2023; Carlini et al. 2023 use the same
  quantity for membership inference). Lower loss = more memorized, so the score is -loss.
- ``one-step-error-posthoc`` (after Webster 2023, "A reproducible extraction of training images from diffusion
  models"): memorized prompts are regenerated almost exactly by a *single* denoising step from
  the start of generation. Variant used here (the sample's original trajectory is not
  available): noise the sample to ``t_start`` with fixed noise, predict x0 in one step under
  the sample's condition, and score minus the RMS error against the sample, averaged over
  ``draws`` noises. Needs conditions (``MODEL_COND``). Default ``t_start = 0.5``, for the
  reason given in ``guidance.py``: on this schedule t = 1 is far noisier than Stable Diffusion's
  first step, and a small model's one-step prediction there is dominated by its own error
  (AUROC 0.07-0.36 on the 2-D conditional toy from t = 1, 0.89-0.96 from t = 0.5).
"""
from __future__ import annotations

import numpy as np
import torch

from mmh_bench import Access, Batch, Context, Detector

from ._common import generation_times, noised, noised_mean, require_cond, row_noise

NORM_STREAM, LOSS_STREAM, ONESTEP_STREAM = 300, 310, 320


class ScoreNorm(Detector):
    """Mean squared norm of the predicted noise at time ``t`` over ``draws`` fixed noises."""

    name = "score-norm"
    access = Access.MODEL
    cost_note = "draws forwards (default 4)"

    def __init__(self, t: float = 0.05, draws: int = 4) -> None:
        self.t = float(t)
        self.draws = int(draws)

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        model = ctx.model
        shape = tuple(batch.x.shape[1:])
        z = row_noise(ctx, batch.index, (self.draws, *shape), NORM_STREAM)
        out = torch.zeros(len(batch))
        for j in range(self.draws):
            e = model.eps(noised(model, batch.x, self.t, z[:, j]), self.t, None)
            out += (e.reshape(len(batch), -1) ** 2).sum(1)
        return (out / self.draws).double().numpy()


class DenoisingLoss(Detector):
    """Minus the eps-prediction loss averaged over ``n_t`` log-spaced times in [t_min, t_max]."""

    name = "denoising-loss"
    access = Access.MODEL
    cost_note = "n_t x draws forwards (default 4)"

    def __init__(self, t_min: float = 0.02, t_max: float = 0.5, n_t: int = 4, draws: int = 1) -> None:
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.n_t = int(n_t)
        self.draws = int(draws)

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        model = ctx.model
        shape = tuple(batch.x.shape[1:])
        times = np.geomspace(self.t_min, self.t_max, self.n_t)
        z = row_noise(ctx, batch.index, (len(times) * self.draws, *shape), LOSS_STREAM)
        loss = torch.zeros(len(batch))
        for j in range(z.shape[1]):
            t = float(times[j % len(times)])
            e = model.eps(noised(model, batch.x, t, z[:, j]), t, None)
            loss += ((e - z[:, j]).reshape(len(batch), -1) ** 2).mean(1)
        return -(loss / z.shape[1]).double().numpy()


class OneStepError(Detector):
    """Minus the RMS error of the one-step x0 prediction at the start of generation."""

    name = "one-step-error-posthoc"
    access = Access.MODEL_COND
    cost_note = "draws forwards (default 2)"

    def __init__(self, t_start: float = 0.5, schedule_steps: int = 50, n_steps: int = 1,
                 draws: int = 2) -> None:
        self.t_start = float(t_start)
        self.schedule_steps = int(schedule_steps)
        self.n_steps = int(n_steps)
        self.draws = int(draws)

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        model = ctx.model
        cond = require_cond(batch, self.name)
        shape = tuple(batch.x.shape[1:])
        x = torch.as_tensor(np.asarray(batch.x), dtype=torch.float32)
        times = generation_times(self.n_steps, self.schedule_steps, self.t_start)
        z = row_noise(ctx, batch.index, (len(times) * self.draws, *shape), ONESTEP_STREAM)

        def rms_error(y: torch.Tensor, t: float) -> torch.Tensor:
            tt = torch.tensor(t)
            x0 = (y - model.sigma(tt) * model.eps(y, t, cond)) / model.alpha_bar(tt).sqrt()
            return ((x0 - x).reshape(len(batch), -1) ** 2).mean(1).sqrt()
        steps = [(times[j % len(times)], z[:, j]) for j in range(z.shape[1])]
        return -noised_mean(model, x, steps, rms_error).double().numpy()
