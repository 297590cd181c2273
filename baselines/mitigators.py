"""Shipped mitigators: the field's sampling-time interventions, each at about five settings.

Every one runs the task's own sampler from each sample's stored x_T (``ctx.generation``), so its
outputs pair with the unmitigated generations; optimisations run per row, in batches.

- ``none``: the task's generation replayed; reproduces the task's samples bit for bit (Stable
  Diffusion's to float rounding: its pipeline ran the two guidance branches in one batch).
- ``guidance``: classifier-free guidance lowered to ``factor`` times the task's scale (0 = the
  unconditional model).
- ``condition-noise``: Gaussian noise of ``sigma`` times the embedding's RMS added to each
  condition's embedding (the class-condition analogue of random token addition).
- ``random-tokens``: ``k`` random words of the task's caption vocabulary appended to the prompt
  (Somepalli et al. 2023; Jeon et al. sweep k in {1, 2, 4, 6, 8}).
- ``cfg-norm-embedding`` (Wen et al., ICLR 2024): the condition embedding optimised at x_T until
  the guidance term ``||eps(x_T, e) - eps(x_T, empty)||`` falls to ``target`` times its start.
- ``flipd-embedding`` (Ross et al., ICLR 2025, the MMH paper's mitigation): the generation is run
  to a late step (MMH: step 40 of 50, here the same fraction of the task's grid), and the
  condition embedding is optimised there to *raise* FLIPD, the model's LID estimate
  ``D - sigma tr(d eps / d x) + ||eps||^2`` (Hutchinson probes, Jacobian-vector products by
  central differences so the gradient reaches the embedding); then the whole generation is rerun.
- ``initial-noise`` (after Jeon et al., ICML 2025, SAIL): x_T moved by ``iters`` Adam steps to
  where the first step's sharpness ``||H_delta s_delta||`` is small, each row kept at its norm.
- ``attention-rescale`` (Ren et al., ECCV 2024): the first token's cross-attention logits
  multiplied by ``C`` in every layer (Ren's settings 1.1-1.5; models with cross-attention).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmh_bench import Batch, Context
from mmh_bench.mitigation import Mitigator

from ._common import row_noise

COND_NOISE_STREAM, TOKEN_STREAM, PROBE_STREAM = 800, 810, 820
FD_STEP = 1e-3  # central-difference step of the Jacobian-vector products, relative to the state's RMS


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Per-row root mean square, shaped to broadcast over the row."""
    return x.reshape(len(x), -1).pow(2).mean(1).sqrt().reshape(-1, *([1] * (x.dim() - 1))).clamp_min(1e-12)


def _embedded(model: Any, emb: torch.Tensor, cond: list):
    """The conditional branch with ``emb`` in place of each condition's own embedding."""
    return lambda y, t: model.eps_embedded(y, t, emb, cond)


class NoMitigation(Mitigator):
    """The task's generations replayed unchanged."""

    name = "none"
    cost_note = "the sampler's own calls"

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        return ctx.generation.generate(batch)


class LowerGuidance(Mitigator):
    """Classifier-free guidance at ``factor`` times the task's scale."""

    name = "guidance"
    sweep = ("factor", (0.75, 0.5, 0.25, 0.0))
    cost_note = "the sampler's own calls"

    def __init__(self, factor: float = 0.5) -> None:
        self.factor = float(factor)

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        return ctx.generation.generate(batch, guidance=self.factor * ctx.generation.sampler.guidance)


class ConditionNoise(Mitigator):
    """Gaussian noise on each condition's embedding, ``sigma`` times its RMS."""

    name = "condition-noise"
    requires = ("condition_embedding",)
    sweep = ("sigma", (0.25, 0.5, 1.0, 2.0, 4.0))
    cost_note = "the sampler's own calls"

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = float(sigma)

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        cond = list(batch.cond)
        emb = ctx.model.condition_embedding(cond)
        z = row_noise(ctx, batch.index, tuple(emb.shape[1:]), COND_NOISE_STREAM)
        emb = emb + self.sigma * _rms(emb) * z
        return ctx.generation.generate(batch, cond_eps=_embedded(ctx.model, emb, cond))


class RandomTokens(Mitigator):
    """``k`` random words of the task's captions appended to each prompt."""

    name = "random-tokens"
    requires = ("cross_attention",)
    sweep = ("k", (1, 2, 4, 6, 8))
    cost_note = "the sampler's own calls + one text encoding per prompt"

    def __init__(self, k: int = 2) -> None:
        self.k = int(k)

    def fit(self, ctx: Context) -> None:
        captions = list(getattr(ctx.model, "captions", []) or [])
        self._words = sorted({w for c in captions for w in c.split()})
        if not self._words:
            raise ValueError("random-tokens needs a model with caption texts to draw words from")

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        captions = ctx.model.captions
        prompts = []
        for i, c in zip(batch.index, batch.cond):
            rng = np.random.default_rng([ctx.seed, TOKEN_STREAM, int(i)])
            extra = " ".join(self._words[j] for j in rng.integers(0, len(self._words), self.k))
            prompts.append(f"{captions[int(c)]} {extra}")
        return ctx.generation.generate(batch, cond=prompts)


class _EmbeddingOptimiser(Mitigator):
    """Normalised gradient steps on each row's condition embedding, of ``lr`` times its RMS."""

    requires = ("condition_embedding",)
    iters: int
    lr: float

    def optimise(self, emb: torch.Tensor, loss_rows, active=None) -> torch.Tensor:
        """Minimise ``loss_rows(emb)`` (one loss per row) for ``iters`` steps; rows where
        ``active(losses)`` turns False stop moving."""
        scale = _rms(emb).detach()
        e = emb.detach().clone()
        keep = torch.ones(len(e), dtype=torch.bool)
        for _ in range(self.iters):
            e.requires_grad_(True)
            with torch.enable_grad():
                losses = loss_rows(e)
                if active is not None:
                    keep = keep & active(losses.detach())
                    if not keep.any():
                        break
                (g,) = torch.autograd.grad((losses * keep).sum(), e)
            mask = keep.reshape(-1, *([1] * (g.dim() - 1)))
            e = (e - mask * self.lr * scale * g / (_rms(g) + 1e-12)).detach()
        return e.detach()


class GuidanceNormEmbedding(_EmbeddingOptimiser):
    """Wen et al.: the condition embedding optimised down to ``target`` x its guidance-term norm."""

    name = "cfg-norm-embedding"
    sweep = ("target", (0.8, 0.6, 0.4, 0.2, 0.1))
    cost_note = "up to 2 forwards + 1 backward per iteration (<= iters) + the sampler's calls"

    def __init__(self, target: float = 0.4, iters: int = 30, lr: float = 0.05, at: float = 0.0) -> None:
        self.target = float(target)
        self.iters = int(iters)
        self.lr = float(lr)
        self.at = float(at)

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        model, cond, gen = ctx.model, list(batch.cond), ctx.generation
        y, t = state_at(gen, batch, self.at)
        e_u = model.eps(y, t, [None] * len(y)).detach()

        def norms(e):
            return (model.eps_embedded(y, t, e, cond) - e_u).reshape(len(y), -1).norm(dim=1)
        emb = model.condition_embedding(cond)
        start = norms(emb).detach()
        emb = self.optimise(emb, norms, active=lambda n: n > self.target * start)
        return gen.generate(batch, cond_eps=_embedded(model, emb, cond))


def state_at(gen: Any, batch: Batch, at: float) -> tuple[torch.Tensor, float]:
    """The generation's state and time at step ``round(at * (steps - 1))`` of its own trajectory
    (``at = 0``: x_T at the first step)."""
    k = int(round(at * (gen.sampler.steps - 1)))
    step = None
    for step in gen.trajectory(batch, k + 1):
        pass
    return step.y.detach(), step.t


def flipd_rows(model: Any, y: torch.Tensor, t: float, eps_fn, probes: torch.Tensor) -> torch.Tensor:
    """FLIPD ``D - sigma tr(J) + ||eps||^2`` per row at ``(y, t)`` for the eps of ``eps_fn``, the
    trace by Hutchinson over ``probes`` ``[k, n, ...]`` with central-difference JVPs
    (differentiable in whatever ``eps_fn`` closes over)."""
    sigma = model.sigma(torch.tensor(float(t)))
    e = eps_fn(y)
    h = FD_STEP * _rms(y)
    tr = 0.0
    for v in probes:
        jv = (eps_fn(y + h * v) - eps_fn(y - h * v)) / (2 * h)
        tr = tr + (v * jv).reshape(len(y), -1).sum(1)
    tr = tr / len(probes)
    dim = y[0].numel()
    return dim - sigma * tr + e.reshape(len(y), -1).pow(2).sum(1)


class FLIPDEmbedding(_EmbeddingOptimiser):
    """MMH: the condition embedding optimised at a late step to raise the model's LID there."""

    name = "flipd-embedding"
    sweep = ("lr", (0.001, 0.002, 0.005, 0.01, 0.02))
    cost_note = "the sampler to the late step + (2 probes x 2 + 1) forwards and a backward per iteration + the sampler"

    def __init__(self, lr: float = 0.002, iters: int = 20, at: float = 0.8, probes: int = 2) -> None:
        self.lr = float(lr)
        self.iters = int(iters)
        self.at = float(at)
        self.probes = int(probes)

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        model, cond, gen = ctx.model, list(batch.cond), ctx.generation
        y, t = state_at(gen, batch, self.at)
        v = row_noise(ctx, batch.index, (self.probes, *y.shape[1:]), PROBE_STREAM, rademacher=True).transpose(0, 1)

        def minus_flipd(e):
            return -flipd_rows(model, y, t, lambda z: model.eps_embedded(z, t, e, cond), v)
        emb = self.optimise(model.condition_embedding(cond), minus_flipd)
        return gen.generate(batch, cond_eps=_embedded(model, emb, cond))


class InitialNoise(Mitigator):
    """After Jeon et al. (SAIL): x_T moved to where the first step's sharpness is small."""

    name = "initial-noise"
    sweep = ("iters", (1, 2, 5, 10, 20))
    cost_note = "6 forwards + 1 backward per iteration + the sampler's calls"

    def __init__(self, iters: int = 5, lr: float = 0.05) -> None:
        self.iters = int(iters)
        self.lr = float(lr)

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        model, cond = ctx.model, list(batch.cond)
        t = ctx.generation.times()[0]
        x = torch.as_tensor(np.asarray(batch.noise), dtype=torch.float32)
        norm = x.reshape(len(x), -1).norm(dim=1).reshape(-1, *([1] * (x.dim() - 1)))
        sigma2 = model.sigma(torch.tensor(float(t))) ** 2

        def delta(z):  # eps_c - eps_u, differentiable in z
            with torch.enable_grad():
                both = model.eps_embedded(torch.cat([z, z]), t, torch.cat([emb, null]), cond + [None] * len(z))
            return both[:len(z)] - both[len(z):]
        emb = model.condition_embedding(cond)
        null = model.condition_embedding([None] * len(cond))
        z = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr)
        for _ in range(self.iters):
            with torch.enable_grad():
                d = delta(z)
                h = FD_STEP * _rms(z)
                hd = (delta(z + h * d) - delta(z - h * d)) / (2 * h) / sigma2
                loss = hd.reshape(len(z), -1).norm(dim=1).sum()
                opt.zero_grad()
                loss.backward()
            opt.step()
            with torch.no_grad():  # stay on the shell a Gaussian x_T lives on
                z *= norm / z.reshape(len(z), -1).norm(dim=1).reshape(norm.shape)
        return ctx.generation.generate(batch, noise=z.detach().numpy())


class AttentionRescale(Mitigator):
    """Ren et al.: the first token's cross-attention logits multiplied by ``C``."""

    name = "attention-rescale"
    requires = ("attention_rescale",)
    sweep = ("C", (1.1, 1.2, 1.25, 1.3, 1.5))
    cost_note = "the sampler's own calls"

    def __init__(self, C: float = 1.25) -> None:
        self.C = float(C)

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        with ctx.model.rescaled_attention(self.C):
            return ctx.generation.generate(batch)
