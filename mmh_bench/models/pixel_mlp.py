"""A pixel-space MLP denoiser presented to detectors as an image model.

Why an MLP and not a UNet: on two CPU cores a diffusers ``UNet2DModel`` with channels (32, 64)
costs about 0.26 s per training step at 8x8 (batch 128, one thread) against 0.02 s for a 512x4 MLP
(``benchmarks/image_budget.py``); the real-image tasks must build in about two minutes, and the MLP
memorizes small image sets readily. The network is the synthetic tasks' :class:`MLPDenoiser` on
flattened pixels; this adapter keeps the image shape ``[C, H, W]`` on its interface.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..score_model import ScoreModel, vp_linear_alpha_bar
from .mlp import T_MIN, MLPDenoiser, MLPScoreModel, sample_ddpm


def sample_times(n: int, power: float, gen: torch.Generator) -> torch.Tensor:
    """Training times ``T_MIN + (1 - T_MIN) u^power``, u uniform: ``power > 1`` spends more steps
    at low noise, where a model resolves (and so can copy) single training images."""
    return T_MIN + (1 - T_MIN) * torch.rand(n, generator=gen) ** power


def train_pixel_mlp(x: np.ndarray, *, cond: np.ndarray | None = None, n_classes: int = 0,
                    hidden: int = 384, depth: int = 3, steps: int = 6000, batch_size: int = 64,
                    lr: float = 2e-3, p_uncond: float = 0.1, t_power: float = 1.0, seed: int = 0,
                    progress: bool = True, desc: str = "training") -> MLPDenoiser:
    """:func:`mmh_bench.models.mlp.train_denoiser` on flattened images, with a time-sampling power
    (see :func:`sample_times`); ``t_power = 1`` is the same uniform-time recipe."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    data = torch.as_tensor(x, dtype=torch.float32).reshape(len(x), -1)
    labels = torch.as_tensor(cond, dtype=torch.long) if cond is not None else None
    net = MLPDenoiser(data.shape[1], hidden, depth, n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.01)
    net.train()
    for _ in tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0, leave=False):
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        x0 = data[idx]
        t = sample_times(batch_size, t_power, gen)
        z = torch.randn(x0.shape, generator=gen)
        ab = vp_linear_alpha_bar(t)[:, None]
        y = ab.sqrt() * x0 + (1 - ab).sqrt() * z
        c = None
        if labels is not None:
            c = labels[idx].clone()
            c[torch.rand(batch_size, generator=gen) < p_uncond] = n_classes
        loss = ((net(y, t, c) - z) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return net


class PixelMLPScoreModel(MLPScoreModel):
    """:class:`MLPScoreModel` over images: inputs ``[n, C, H, W]``, conditions are class ids."""

    def __init__(self, net: MLPDenoiser, shape: Sequence[int]) -> None:
        super().__init__(net)
        shape = tuple(int(s) for s in shape)
        if int(torch.tensor(shape).prod()) != net.config["dim"]:
            raise ValueError(f"image shape {shape} does not match the network's dimension {net.config['dim']}")
        self.shape = shape

    def _eps(self, y: torch.Tensor, t: torch.Tensor, cond: Sequence[Any] | None) -> torch.Tensor:
        n = y.shape[0]
        return self.net(y.reshape(n, -1), t, self._labels(cond, n)).reshape(y.shape)


@torch.no_grad()
def sample_images(model: ScoreModel, n: int, *, steps: int = 100, seed: int = 0,
                  cond: Sequence[Any] | None = None, guidance: float = 1.0, clip: float = 1.0,
                  batch_size: int = 1000, progress: bool = True) -> np.ndarray:
    """Ancestral DDPM sampling for images in ``[-clip, clip]``: as
    :func:`mmh_bench.models.mlp.sample_ddpm` (same time grid, classifier-free guidance
    ``eps_u + guidance (eps_c - eps_u)``) but each step's x0 prediction is clipped to the pixel
    range, as diffusers' ``DDPMScheduler(clip_sample=True)`` does. Why: at t near 1 the x0
    prediction divides by sqrt(alpha_bar) ~ 0.007, so with guidance and few steps an unclipped
    chain can leave the image range for good.
    """
    return sample_ddpm(model, n, steps=steps, seed=seed, cond=cond, guidance=guidance, clip=clip,
                       batch_size=batch_size, progress=progress)


def save_pixel_mlp(net: MLPDenoiser, shape: Sequence[int], path: Path) -> None:
    net.save(path)
    (path / "image.json").write_text(json.dumps({"shape": [int(s) for s in shape]}))


def load_pixel_mlp(path: Path) -> PixelMLPScoreModel:
    shape = json.loads((Path(path) / "image.json").read_text())["shape"]
    return PixelMLPScoreModel(MLPDenoiser.load(Path(path)), shape)


def _register() -> None:
    from ..instance import register_model_loader
    register_model_loader("pixel-mlp")(load_pixel_mlp)


_register()
