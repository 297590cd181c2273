"""FLIPD (Kamkari et al., NeurIPS 2024): the model's LID at x from one score evaluation.

FLIPD(x, t0) = D - sigma(t0) * tr(d eps / dy) + ||eps||^2 at y = sqrt(alpha_bar(t0)) x,
the eps-form of D + sigma^2 [tr grad s + ||s||^2]. The trace is exact (D basis JVPs) when
D <= ``exact_max_dim``, otherwise Hutchinson's estimator with ``probes`` Rademacher vectors.
Low FLIPD means the model collapsed onto x: the memorization score is -FLIPD.
"""
from __future__ import annotations

import numpy as np
import torch

from mmh_bench import Access, Batch, Context, LIDEstimator


class FLIPD(LIDEstimator):
    """FLIPD: the model's LID from the score and its Jacobian trace at a small time t0."""

    name = "flipd"
    access = Access.MODEL
    cost_note = "D JVPs (exact) or K JVPs (Hutchinson)"

    def __init__(self, t0: float = 0.01, probes: int = 16, exact_max_dim: int = 64) -> None:
        self.t0 = float(t0)
        self.probes = int(probes)
        self.exact_max_dim = int(exact_max_dim)

    def estimate(self, batch: Batch, ctx: Context) -> np.ndarray:
        model = ctx.model
        t0 = torch.tensor(self.t0)
        ab = model.alpha_bar(t0)
        sigma = float(torch.sqrt(1 - ab))
        y = torch.as_tensor(batch.x, dtype=torch.float32) * torch.sqrt(ab)
        n, dim = y.shape[0], model.dim
        trace = torch.zeros(n)
        exact = dim <= self.exact_max_dim
        if exact:
            probes = [torch.eye(dim)[j].expand(n, dim) for j in range(dim)]
        else:
            rng = ctx.rng(int(batch.index[0]))
            probes = [torch.as_tensor(rng.choice([-1.0, 1.0], size=(n, dim)), dtype=torch.float32)
                      for _ in range(self.probes)]
        eps = None
        for v in probes:
            eps, jv = model.eps_jvp(y, self.t0, v.reshape(y.shape).contiguous(), None)
            trace += (v * jv.reshape(n, dim)).sum(1)
        if not exact:
            trace /= len(probes)
        sq = (eps.reshape(n, dim) ** 2).sum(1)
        return (dim - sigma * trace + sq).numpy()
