"""Post-hoc variants of the guidance detectors (the published methods are in ``generation_time.py``).

These see the final sample x and its condition, not the generation's trajectory: the setting of a
detector handed an image from elsewhere. The published methods evaluate at the start of the
generation's own trajectory; these evaluate at noised versions of x
at the first ``n_steps`` times of a ``schedule_steps``-step uniform sampler that starts at
``t_start``: ``y_t = sqrt(ab_t) x + sigma_t z``, noise z fixed per sample (context seed + index).

Where does generation "start"? That depends on the schedule and the dimension. Stable
Diffusion's 50-step DDIM sampler starts at timestep 981 (alpha_bar = 0.0058; 0.0047 is timestep
999, which DDIM never visits); the benchmark's VP-linear schedule reaches 0.0058 at t = 0.71 and
is 100 times noisier at t = 1. In a CPU-scale model in low dimension the
condition's effect there is below the network's own error: on the 2-D conditional toy of the
tests (three training seeds) cfg-norm's AUROC for the duplicated condition was 0.34-0.86 from
t = 1 and 0.54-0.89 from t = 0.73, but 0.96-0.99 from t = 0.5. Default: the first 3 steps of a
10-step sampler started at t_start = 0.5 (t = 0.5, 0.44, 0.39), the earliest window where such
models resolve the condition. On Stable Diffusion pass ``t_start=0.982, schedule_steps=50``: the
SD adapter maps t to timestep ``ceil(1000 t) - 1``, so the grid is DDIM's own 981, 961, 941, ...
(the published first steps; the README's SD commands do this).

Precision. Wen et al. ran cfg-norm in fp16 (so does the SD adapter's forward); Jeon et al. run
sharpness in fp32, where the difference of two nearly equal vectors is most exposed, so
``sharpness`` computes its guidance difference and both JVPs in fp32 (through the adapter's
``full_precision`` when the model has one; the CPU models are fp32 anyway).

- ``cfg-norm-posthoc`` (after Wen et al., ICLR 2024, "Detecting, explaining, and mitigating memorization in
  diffusion models"): ``||eps(y_t, c) - eps(y_t, null)||`` averaged over the steps. A memorized
  condition dictates the output and its guidance term is large.
- ``sharpness-posthoc`` (after Jeon et al., ICML 2025, "Understanding and mitigating memorization in generative
  models via sharpness of probability landscapes"): the Hessian-weighted score difference
  ``||H_delta s_delta||`` with ``s_delta = s(y, c) - s(y, null)`` and ``H_delta`` the Jacobian
  of that difference, through one forward-mode JVP per branch in the direction ``s_delta``. In
  score units ``H_delta s_delta = (J_c - J_u) d_eps / sigma^2`` with ``d_eps = eps_c - eps_u``.
"""
from __future__ import annotations

import numpy as np
import torch

from mmh_bench import Access, Batch, Context

from ._common import StartOfGeneration
from .generation_time import sharpness_term

CFG_STREAM, SHARP_STREAM = 400, 410


def _pair(model, y: torch.Tensor, t: float, cond: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditional and unconditional eps at y in one batched call (2 evaluations per sample)."""
    n = y.shape[0]
    e = model.eps(torch.cat([y, y]), t, cond + [None] * n)
    return e[:n], e[n:]


class CFGNorm(StartOfGeneration):
    """Post-hoc variant of Wen et al.: the guidance term's norm at noised versions of the sample."""

    name = "cfg-norm-posthoc"
    access = Access.MODEL_COND
    cost_note = "2 forwards per step (default 3 steps)"

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        def stat(model, y, t, cond):
            ec, eu = _pair(model, y, t, cond)
            return (ec - eu).reshape(len(y), -1).norm(dim=1)
        return self.step_mean(batch, ctx, CFG_STREAM, stat)


class Sharpness(StartOfGeneration):
    """Post-hoc variant of Jeon et al.: the Hessian-weighted score difference at noised versions of the sample."""

    name = "sharpness-posthoc"
    access = Access.MODEL_COND
    cost_note = "2 forwards + 2 JVPs per step (default 3 steps)"

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        return self.step_mean(batch, ctx, SHARP_STREAM, sharpness_term)
