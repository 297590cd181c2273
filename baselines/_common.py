"""Small helpers shared by the shipped detectors (not part of the public API)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from mmh_bench import Batch, Context, Detector
from mmh_bench.api.score_model import T_MIN


def row_noise(ctx: Context, index: np.ndarray, shape: tuple[int, ...], stream: int,
              rademacher: bool = False) -> torch.Tensor:
    """One fixed noise draw per sample, keyed by (context seed, stream, sample index).

    Seeding per row keeps a sample's score independent of how the task is cut into batches.
    """
    out = np.empty((len(index), *shape), dtype=np.float32)
    for r, i in enumerate(np.asarray(index)):
        rng = np.random.default_rng([ctx.seed, stream, int(i)])
        out[r] = (rng.integers(0, 2, size=shape) * 2 - 1) if rademacher else rng.standard_normal(shape)
    return torch.from_numpy(out)


def noised(model, x: np.ndarray | torch.Tensor, t: float, z: torch.Tensor) -> torch.Tensor:
    """``sqrt(alpha_bar(t)) x + sigma(t) z``: the forward process at time t with noise z."""
    tt = torch.tensor(float(t))
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return model.alpha_bar(tt).sqrt() * x + model.sigma(tt) * z


def generation_times(n_steps: int, schedule_steps: int, t_start: float = 1.0) -> list[float]:
    """The first ``n_steps`` times of a ``schedule_steps``-step uniform sampler from ``t_start``."""
    grid = np.linspace(t_start, T_MIN, schedule_steps)
    return [float(t) for t in grid[:n_steps]]


def noised_mean(model, x: np.ndarray | torch.Tensor, steps: Sequence[tuple[float, torch.Tensor]],
                stat: Callable[[torch.Tensor, float], torch.Tensor]) -> torch.Tensor:
    """Mean over ``steps`` of ``stat(y, t)`` (one value per sample), ``y = noised(model, x, t, z)``
    for each (time t, noise z) step."""
    total = None
    for t, z in steps:
        v = stat(noised(model, x, t, z), t)
        total = v if total is None else total + v
    return total / len(steps)


def require_cond(batch: Batch, who: str) -> Sequence:
    if batch.cond is None:
        raise ValueError(f"{who} needs the samples' conditions (conditional task, Access.MODEL_COND)")
    return list(batch.cond)


class StartOfGeneration(Detector):
    """Base of the detectors read at the first ``n_steps`` of a ``schedule_steps``-step sampler
    started at ``t_start`` (cfg-norm, sharpness, attention-entropy): one set of knobs, one grid."""

    def __init__(self, n_steps: int = 3, schedule_steps: int = 10, t_start: float = 0.5) -> None:
        self.n_steps = int(n_steps)
        self.schedule_steps = int(schedule_steps)
        self.t_start = float(t_start)

    def times(self) -> list[float]:
        return list(generation_times(self.n_steps, self.schedule_steps, self.t_start))

    def step_mean(self, batch: Batch, ctx: Context, stream: int,
                  stat: Callable[[Any, torch.Tensor, float, list], torch.Tensor]) -> np.ndarray:
        """Mean over :meth:`times` of ``stat(model, y_t, t, cond)`` (one value per sample), where
        ``y_t`` noises the samples to time t with fixed per-sample noise from ``stream``."""
        cond = require_cond(batch, self.name)
        z = row_noise(ctx, batch.index, tuple(batch.x.shape[1:]), stream)
        model = ctx.model
        return noised_mean(model, batch.x, [(t, z) for t in self.times()],
                           lambda y, t: stat(model, y, t, cond)).double().numpy()
