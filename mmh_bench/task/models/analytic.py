"""Score models whose answer is known in closed form: for validating detectors, not for tasks.

:class:`FlatGaussianMixture` is a mixture of Gaussians, each concentrated on an affine d-plane
of R^D (d = 0 is a point mass). Under the VP forward process a component stays Gaussian, so the
noise prediction is exact at every time: a detector that estimates the model's LID must return
each component's d, and one that looks for collapse onto a point must single out the d = 0
components. With ``conditional=True`` the condition is the component id, so classifier-free
guidance quantities (conditional minus unconditional noise) are exact too.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from mmh_bench.api.score_model import ScoreModel, vp_linear_alpha_bar


class FlatGaussianMixture(ScoreModel):
    """Exact ``eps`` of a mixture of Gaussians on affine planes, on the linear VP schedule.

    Component ``k`` is ``mean[k] + basis[k] @ z``, ``z ~ N(0, scale[k]^2 I_d)``, with
    ``basis[k]`` a ``[D, d]`` matrix of orthonormal columns. At time t its noised law is
    ``N(sqrt(ab) mean, ab scale^2 U U^T + sigma^2 I)``; the mixture's eps is the posterior-
    weighted average of the components' eps (the score of a mixture).
    """

    def __init__(self, means: np.ndarray, bases: Sequence[np.ndarray], scales: Sequence[float] | float = 1.0,
                 weights: Sequence[float] | None = None, conditional: bool = False) -> None:
        super().__init__()
        means = np.asarray(means, dtype=np.float64)
        self.shape = (means.shape[1],)
        k = len(means)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.bases = [torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(self.shape[0], -1)) for b in bases]
        if len(self.bases) != k:
            raise ValueError("one basis per component")
        # a full-space component given by the identity projects onto itself: no D x D products
        eye = torch.eye(self.shape[0], dtype=torch.float64)
        self._full = [b.shape == eye.shape and torch.equal(b, eye) for b in self.bases]
        self.scales = torch.as_tensor(np.broadcast_to(np.asarray(scales, dtype=np.float64), (k,)).copy())
        w = np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)
        self.log_weights = torch.as_tensor(np.log(w / w.sum()))
        self.conditional = bool(conditional)
        self.n_classes = k

    @property
    def dims(self) -> list[int]:
        """Intrinsic dimension of each component."""
        return [b.shape[1] for b in self.bases]

    @classmethod
    def random_planes(cls, dims: Sequence[int], ambient: int, *, spacing: float = 10.0, scale: float = 1.0,
                      seed: int = 0, conditional: bool = False) -> "FlatGaussianMixture":
        """Planes of the given dimensions, randomly oriented, means ``spacing`` apart on the axes
        (so components barely overlap at small t)."""
        rng = np.random.default_rng(seed)
        means = np.zeros((len(dims), ambient))
        for i in range(len(dims)):
            means[i, i % ambient] = spacing * (1 + i // ambient)
        bases = []
        for d in dims:
            q, _ = np.linalg.qr(rng.standard_normal((ambient, ambient)))
            bases.append(q[:, :d])
        return cls(means, bases, scale, conditional=conditional)

    def alpha_bar(self, t: Any) -> torch.Tensor:
        return vp_linear_alpha_bar(t)

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws and their component ids."""
        rng = np.random.default_rng(seed)
        comp = rng.choice(len(self.means), size=n, p=np.exp(self.log_weights.numpy()))
        x = self.means.numpy()[comp].copy()
        for k, b in enumerate(self.bases):
            m = comp == k
            if b.shape[1] and m.any():
                z = rng.standard_normal((int(m.sum()), b.shape[1])) * float(self.scales[k])
                x[m] += z @ b.numpy().T
        return x.astype(np.float32), comp

    def _component(self, y: torch.Tensor, ab: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(log density up to a shared constant, eps) of component k at y."""
        s2 = 1 - ab
        u = self.bases[k]
        r = y - ab.sqrt() * self.means[k]
        tang = ab * self.scales[k] ** 2 + s2  # variance along the plane
        ur = r if self._full[k] else r @ u  # [n, d]
        quad = (r * r).sum(1, keepdim=True) / s2 - (ur * ur).sum(1, keepdim=True) * (1 / s2 - 1 / tang)
        d, dim = u.shape[1], self.shape[0]
        logdet = d * torch.log(tang) + (dim - d) * torch.log(s2)
        logp = -0.5 * (quad + logdet)
        eps = s2.sqrt() * (r / s2 - (ur if self._full[k] else ur @ u.T) * (1 / s2 - 1 / tang))
        return logp[:, 0], eps

    def _eps(self, y: torch.Tensor, t: torch.Tensor, cond: Sequence[Any] | None) -> torch.Tensor:
        dtype = y.dtype
        y = y.to(torch.float64)
        ab = self.alpha_bar(t).to(torch.float64)[:, None]
        parts = [self._component(y, ab, k) for k in range(len(self.bases))]
        logp = torch.stack([p[0] for p in parts], 1) + self.log_weights  # [n, K]
        eps = torch.stack([p[1] for p in parts], 1)  # [n, K, D]
        if cond is not None:
            ids = [-1 if c is None else int(c) for c in cond]
            mask = torch.zeros_like(logp, dtype=torch.bool)
            for i, c in enumerate(ids):
                if c >= 0:
                    mask[i] = True
                    mask[i, c] = False
            logp = logp.masked_fill(mask, -math.inf)
        w = torch.softmax(logp, dim=1)
        return (w[:, :, None] * eps).sum(1).to(dtype)
