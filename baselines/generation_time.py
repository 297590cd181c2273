"""Generation-time detectors, as the papers define them: each decides from the condition, the initial
noise x_T and the first steps of the generation's *own* trajectory, replayed exactly from the
task's stored x_T and deterministic sampler (``Access.GENERATION``, ``ctx.generation``). None of
them reads the finished sample.

Shared parameters, named as in the papers' protocols (Jeon et al., ICML 2025, Table 1):

- ``n_steps`` (k): the statistic is averaged over the first k sampling steps (step 1 is the
  sampler's first time, pure noise; Stable Diffusion's 50-step DDIM starts at timestep 981);
- ``generations`` (n): the statistic is averaged over n generations of the same condition: the
  sample's own x_T and n - 1 further x_T drawn per sample from the context seed (on Stable
  Diffusion the published protocol draws n latents per prompt in the same way).

Defaults are the published Table 1 protocol: k = 1, n = 1.

- ``cfg-norm`` (Wen et al., ICLR 2024): ``||eps(x_t, c) - eps(x_t, empty)||`` with x_t on the
  generation's guided trajectory.
- ``sharpness`` (Jeon et al., ICML 2025): ``||H_delta s_delta||``, the Hessian-weighted
  difference of the conditional and unconditional scores, with ``s_delta = s(x, c) - s(x, empty)``
  and ``H_delta s_delta`` one Jacobian-vector product of that difference in its own direction
  (in score units ``(J_c - J_u) d_eps / sigma^2``), in fp32.
- ``attention-entropy`` (Ren et al., ECCV 2024, "LE"): entropy of the cross-attention over the
  condition's tokens at the first step, conditional branch, read at one layer: by default
  ``layer=3``, Ren's (the fourth cross-attention layer in the order the UNet runs them; on SD 1
  and 2 the second transformer of the second down block). ``layer=None`` (``layer=null`` on the
  command line) averages every layer instead: a variant, not Ren's LE (Spearman 0.70 against it
  on the tiny test pipeline, issue 24). A model with fewer layers than the one asked (the CPU
  cross-attention MLP of ``t2i-digits`` has three) is not applicable, with that reason, rather than
  read at another layer. Higher = memorized. Ren's late-step "AE" score and Chen et al.'s
  bright-ending mask read spatial attention maps at the last step, which the CPU cross-attention
  model (attention from hidden-state chunks, not image positions) does not have; they are not shipped.
- ``one-step-dcs`` (Webster 2023, "denoising confidence score" of the white-box attack,
  ryanwebster90/onestep-extraction): one sampler step from sigma_max and the mean squared distance
  between its start and its denoised result. The authors' k-diffusion sampler starts from
  ``sigma_max z`` (z the initial noise), sigma_max = ``sqrt((1 - alpha_bar) / alpha_bar)`` at the
  last training timestep (SD: 999), feeds the UNet ``sqrt(1 - alpha_bar) z`` at that timestep and
  steps to its guided denoised prediction, so the score is ``((1 - alpha_bar) / alpha_bar)
  mean(eps_guided^2)`` at ``t = ScoreModel.terminal_time`` on input ``sqrt(1 - alpha_bar) x_T``
  (``start="sigma_max"``, default; one step by definition). ``start="ddim"`` reads the same
  quantity on the replayed DDIM trajectory instead (step 1 at timestep 981 on SD, input x_T
  unscaled; ``n_steps`` steps averaged), the variant this detector computed before issue 24 (up
  to 26% apart per row on the tiny pipeline). A memorized prompt is denoised in one confident
  step, far from its start. Higher = memorized.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from mmh_bench import Access, Batch, Context, Detector

from ._common import require_cond, row_noise

EXTRA_NOISE_STREAM = 700


def _fp32(model: Any) -> contextlib.AbstractContextManager:
    """The model's fp32 mode where it has one (Stable Diffusion on a GPU), else nothing to change."""
    full = getattr(model, "full_precision", None)
    return full() if callable(full) else contextlib.nullcontext()


class GenerationTimeDetector(Detector):
    """Base: a per-step statistic averaged over the first ``n_steps`` steps of ``generations``
    generations of each sample's condition, the first being the sample's own."""

    access = Access.GENERATION
    group = "generation-time"

    def __init__(self, n_steps: int = 1, generations: int = 1) -> None:
        self.n_steps = int(n_steps)
        self.generations = int(generations)
        if self.n_steps < 1 or self.generations < 1:
            raise ValueError("n_steps and generations must be at least 1")

    def statistic(self, model: Any, step: Any, cond: list) -> torch.Tensor:  # pragma: no cover - abstract
        """One value per row of ``step.y`` (a :class:`mmh_bench.task.sampler.Step`)."""
        raise NotImplementedError

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        cond = require_cond(batch, self.name)
        gen = ctx.generation
        shape = tuple(batch.x.shape[1:])
        extra = (row_noise(ctx, batch.index, (self.generations - 1, *shape), EXTRA_NOISE_STREAM)
                 if self.generations > 1 else None)
        total = torch.zeros(len(batch), dtype=torch.float64)
        for g in range(self.generations):
            noise = None if g == 0 else extra[:, g - 1]
            for step in gen.trajectory(batch, self.n_steps, noise=noise):
                total += self.statistic(ctx.model, step, cond).double()
        return (total / (self.n_steps * self.generations)).numpy()


def _needs_both(step: Any, who: str) -> None:
    if step.eps_c is None:
        raise ValueError(f"{who} needs a conditional generation")


class GuidanceNorm(GenerationTimeDetector):
    """Wen et al.: norm of the guidance term on the generation's own trajectory."""

    name = "cfg-norm"
    version = "3"
    cost_note = "2 forwards per step and generation (default 1 step, 1 generation), read from the replay"

    def statistic(self, model: Any, step: Any, cond: list) -> torch.Tensor:
        _needs_both(step, self.name)
        return (step.eps_c - step.eps_u).reshape(len(step.y), -1).norm(dim=1)


def sharpness_term(model: Any, y: torch.Tensor, t: float, cond: list) -> torch.Tensor:
    """``||H_delta s_delta||`` at ``y``: the conditional / unconditional eps in fp32 and one JVP of
    their difference in its own direction (2 forwards + 2 JVP rows per sample)."""
    n = len(y)
    with _fp32(model):
        e = model.eps(torch.cat([y, y]), t, cond + [None] * n)
        d = e[:n] - e[n:]
        _, jv = model.eps_jvp(torch.cat([y, y]), t, torch.cat([d, d]), cond + [None] * n)
    hd = (jv[:n] - jv[n:]) / model.sigma(torch.tensor(float(t))) ** 2
    return hd.reshape(n, -1).norm(dim=1)


class HessianSharpness(GenerationTimeDetector):
    """Jeon et al.: Hessian-weighted score difference at the generation's first step(s)."""

    name = "sharpness"
    version = "3"
    cost_note = "2 replay forwards + 2 forwards + 2 JVPs per step and generation (default 1 step)"

    def statistic(self, model: Any, step: Any, cond: list) -> torch.Tensor:
        return sharpness_term(model, step.y, step.t, cond)


#: Ren et al.'s LE layer: index 3 of the cross-attention layers in forward order
REN_LE_LAYER = 3


class CrossAttentionEntropy(GenerationTimeDetector):
    """Ren et al. (LE): cross-attention entropy at the generation's first step, conditional branch,
    at Ren's layer by default (``layer=None``: the mean over layers, a variant)."""

    name = "attention-entropy"
    version = "4"
    requires = ("cross_attention",)
    cost_note = "2 replay forwards + 1 attention-recording forward per step (default 1 step)"

    def __init__(self, n_steps: int = 1, generations: int = 1, layer: int | None = REN_LE_LAYER) -> None:
        super().__init__(n_steps=n_steps, generations=generations)
        if layer is not None and (isinstance(layer, bool) or int(layer) != layer or layer < 0):
            raise ValueError(f"layer must be a cross-attention layer index >= 0 or None (mean of all), got {layer!r}")
        self.layer = None if layer is None else int(layer)

    def unsuited_model(self, model: Any) -> str | None:
        if self.layer is None:
            return None
        n = model.cross_attention_layers
        if self.layer >= n:
            return (f"reads cross-attention layer {self.layer} (Ren et al.'s LE: 3); the model has {n} "
                    f"(0-{n - 1}); layer=null averages them (a variant)")
        return None

    def statistic(self, model: Any, step: Any, cond: list) -> torch.Tensor:
        from .attention import attention_entropy
        kw = {} if self.layer is None else {"layer": self.layer}
        p = torch.as_tensor(model.cross_attention(step.y, step.t, cond, **kw))
        return attention_entropy(p.reshape(len(step.y), -1))


def dcs(model: Any, eps: torch.Tensor, t: float) -> torch.Tensor:
    """Webster's score from a guided eps at time t: ``mean((sigma_VE eps)^2)`` with
    ``sigma_VE^2 = (1 - alpha_bar) / alpha_bar`` (the k-diffusion scaling of the authors' sampler)."""
    ab = model.alpha_bar(torch.tensor(float(t))).double()
    return (1 - ab) / ab * (eps.reshape(len(eps), -1).double() ** 2).mean(1)


class OneStepDCS(GenerationTimeDetector):
    """Webster: distance between the start of one sampler step from sigma_max and its denoised
    result (higher = memorized); ``start="ddim"`` reads the replayed DDIM steps instead."""

    name = "one-step-dcs"
    version = "2"
    cost_note = "2 forwards per generation (sigma_max; or per replayed step with start='ddim')"
    STARTS = ("sigma_max", "ddim")

    def __init__(self, n_steps: int = 1, generations: int = 1, start: str = "sigma_max") -> None:
        super().__init__(n_steps=n_steps, generations=generations)
        if start not in self.STARTS:
            raise ValueError(f"start must be one of {self.STARTS}, got {start!r}")
        if start == "sigma_max" and self.n_steps != 1:
            raise ValueError("Webster's attack takes one step from sigma_max (n_steps=1); "
                             "start='ddim' averages the first n_steps replayed DDIM steps")
        self.start = start

    def statistic(self, model: Any, step: Any, cond: list) -> torch.Tensor:
        return dcs(model, step.eps, step.t)

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        if self.start == "ddim":
            return super().score(batch, ctx)
        cond = require_cond(batch, self.name)
        if batch.noise is None:
            raise ValueError(f"{self.name} needs each sample's initial noise (Access.GENERATION)")
        model, g = ctx.model, float(ctx.generation.sampler.guidance)
        t = float(model.terminal_time)
        shape = tuple(batch.x.shape[1:])
        extra = (row_noise(ctx, batch.index, (self.generations - 1, *shape), EXTRA_NOISE_STREAM)
                 if self.generations > 1 else None)
        total = torch.zeros(len(batch), dtype=torch.float64)
        n = len(batch)
        for k in range(self.generations):
            z = torch.as_tensor(np.asarray(batch.noise), dtype=torch.float32) if k == 0 else extra[:, k - 1]
            y = model.sigma(torch.tensor(t)) * z  # sigma_max z fed through k-diffusion's c_in
            e = model.eps(torch.cat([y, y]), t, cond + [None] * n)
            total += dcs(model, e[n:] + g * (e[:n] - e[n:]), t).cpu()
        return (total / self.generations).numpy()


#: the generation-time detectors, for the registry and the tests
GENERATION_TIME: tuple[type[GenerationTimeDetector], ...] = (GuidanceNorm, HessianSharpness,
                                                             CrossAttentionEntropy, OneStepDCS)
