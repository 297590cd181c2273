"""A small MLP noise-prediction network on the continuous VP schedule, its training and sampling.

Used for every synthetic task: fast enough on two CPU cores to overfit on purpose. Sampling is
:mod:`mmh_bench.task.sampler`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from mmh_bench.api.score_model import T_MIN, ScoreModel, vp_linear_alpha_bar
from mmh_bench.threads import limited_threads, model_threads


def time_features(t: torch.Tensor, n: int = 32) -> torch.Tensor:
    freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), n // 2, device=t.device))
    ang = t[:, None] * freqs[None, :] * 1.0
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class MLPDenoiser(nn.Module):
    """eps(y, t, c): residual MLP with sinusoidal time features and an optional class embedding.

    Class ``n_classes`` is the null condition used for classifier-free guidance.
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 4, n_classes: int = 0,
                 class_ids: list[int] | None = None) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"dim": dim, "hidden": hidden, "depth": depth, "n_classes": n_classes}
        if class_ids is not None:  # the public id of each embedding row (see MLPScoreModel)
            if len(class_ids) != n_classes or len(set(class_ids)) != n_classes:
                raise ValueError(f"class_ids must be {n_classes} distinct ids, one per class")
            self.config["class_ids"] = [int(c) for c in class_ids]
        self.inp = nn.Linear(dim + 32, hidden)
        self.cond = nn.Embedding(n_classes + 1, hidden) if n_classes > 0 else None
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, y: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None,
                emb: torch.Tensor | None = None) -> torch.Tensor:
        """``emb`` (``[n, hidden]``) replaces the class embedding ``self.cond(c)`` when given."""
        h = self.inp(torch.cat([y, time_features(t)], dim=1))
        if emb is not None:
            h = h + emb
        elif self.cond is not None:
            if c is None:
                c = torch.full((y.shape[0],), self.config["n_classes"], dtype=torch.long, device=y.device)
            h = h + self.cond(c)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), str(path / "weights.safetensors"))
        (path / "config.json").write_text(json.dumps(self.config))

    @classmethod
    def load(cls, path: Path) -> "MLPDenoiser":
        cfg = json.loads((path / "config.json").read_text())
        net = cls(**cfg)
        net.load_state_dict(load_file(str(path / "weights.safetensors")))
        net.eval()
        return net


def sample_times(n: int, power: float, gen: torch.Generator) -> torch.Tensor:
    """Training times ``T_MIN + (1 - T_MIN) u^power``, u uniform: ``power > 1`` spends more steps
    at low noise, where a model resolves (and so can copy) single training images."""
    u = torch.rand(n, generator=gen)
    return T_MIN + (1 - T_MIN) * (u if power == 1.0 else u ** power)


def fit_eps(net: nn.Module, data: torch.Tensor, labels: torch.Tensor | None, null_label: int, *,
            steps: int, batch_size: int, lr: float, p_uncond: float = 0.1, t_power: float = 1.0,
            seed: int = 0, forward: Callable[..., torch.Tensor] | None = None,
            progress: bool = True, desc: str = "training") -> nn.Module:
    """The one training loop of every shipped denoiser: eps-prediction on the VP schedule, times
    from :func:`sample_times`, Adam with cosine learning-rate decay, and condition dropout (each
    label becomes ``null_label`` with probability ``p_uncond``) so one network gives both the
    conditional and the unconditional prediction. ``forward(net, y, t, labels)`` adapts networks
    whose conditioning is not a label tensor (default ``net(y, t, labels)``)."""
    gen = torch.Generator().manual_seed(seed)
    forward = forward or (lambda m, y, t, c: m(y, t, c))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.01)
    with limited_threads(model_threads(net)):  # small models: one thread (mmh_bench.threads)
        net.train()
        for _ in tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0, leave=False):
            idx = torch.randint(0, len(data), (batch_size,), generator=gen)
            x0 = data[idx]
            t = sample_times(batch_size, t_power, gen)
            z = torch.randn(x0.shape, generator=gen)
            ab = vp_linear_alpha_bar(t).reshape(-1, *([1] * (x0.dim() - 1)))
            y = ab.sqrt() * x0 + (1 - ab).sqrt() * z
            c = None
            if labels is not None:
                c = labels[idx].clone()
                c[torch.rand(batch_size, generator=gen) < p_uncond] = null_label
            loss = ((forward(net, y, t, c) - z) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net


def train_denoiser(x: np.ndarray, *, cond: np.ndarray | None = None, n_classes: int = 0,
                   hidden: int = 256, depth: int = 4, steps: int = 20000, batch_size: int = 256,
                   lr: float = 1e-3, p_uncond: float = 0.1, t_power: float = 1.0, seed: int = 0,
                   progress: bool = True, desc: str = "training", class_ids: list[int] | None = None) -> MLPDenoiser:
    """An :class:`MLPDenoiser` on the rows of ``x`` (flattened when they are images) fitted by
    :func:`fit_eps`; with ``cond`` given, class ids with ``n_classes`` as the null class
    (``cond`` holds embedding rows; ``class_ids``: the public id of each row, kept in the model)."""
    torch.manual_seed(seed)
    data = torch.as_tensor(x, dtype=torch.float32).reshape(len(x), -1)
    labels = torch.as_tensor(cond, dtype=torch.long) if cond is not None else None
    net = MLPDenoiser(data.shape[1], hidden, depth, n_classes, class_ids)
    return fit_eps(net, data, labels, n_classes, steps=steps, batch_size=batch_size, lr=lr,
                   p_uncond=p_uncond, t_power=t_power, seed=seed, progress=progress, desc=desc)


class MLPScoreModel(ScoreModel):
    """The :class:`ScoreModel` adapter over :class:`MLPDenoiser`.

    Conditions are class ids; ``None`` (for the batch or one sample) is the null class. A model
    whose config lists ``class_ids`` (a test instance's: ids drawn from a space far larger than the
    number of classes, so no id names a class of the dev instance) maps each id to its embedding
    row here; otherwise the ids are the rows ``0 .. n_classes - 1``.
    """

    def __init__(self, net: MLPDenoiser) -> None:
        super().__init__()
        self.net = net.eval()
        self.count_module(self.net)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.shape = (net.config["dim"],)
        self.n_classes = net.config["n_classes"]
        self.conditional = self.n_classes > 0
        ids = net.config.get("class_ids")
        self._rows = None if ids is None else {int(c): row for row, c in enumerate(ids)}
        self.capabilities = frozenset({"condition_embedding"}) if self.conditional else frozenset()

    def alpha_bar(self, t: Any) -> torch.Tensor:
        return vp_linear_alpha_bar(t)

    def _labels(self, cond: Sequence[Any] | None, n: int) -> torch.Tensor | None:
        if cond is None:
            return None
        if self._rows is not None:
            unknown = [c for c in cond if c is not None and int(c) not in self._rows]
            if unknown:
                raise ValueError(f"class id {unknown[0]} is not one of this model's {self.n_classes} class ids")
            out = [self.n_classes if c is None else self._rows[int(c)] for c in cond]
            return torch.as_tensor(out, dtype=torch.long)
        out = [self.n_classes if c is None else int(c) for c in cond]
        if any(not 0 <= c <= self.n_classes for c in out):
            raise ValueError(f"class ids must lie in [0, {self.n_classes})")
        return torch.as_tensor(out, dtype=torch.long)

    def _eps(self, y: torch.Tensor, t: torch.Tensor, cond: Sequence[Any] | None) -> torch.Tensor:
        return self.net(y, t, self._labels(cond, y.shape[0]))

    def condition_embedding(self, cond: Sequence[Any]) -> torch.Tensor:
        """The class embedding each condition adds to the hidden state, ``[n, hidden]``."""
        if not self.conditional:
            raise ValueError("this model is unconditional: it has no condition embedding")
        with torch.no_grad():
            return self.net.cond(self._labels(cond, len(cond))).clone()

    def _eps_embedded(self, y: torch.Tensor, t: torch.Tensor, emb: torch.Tensor,
                      cond: Sequence[Any]) -> torch.Tensor:
        return self.net(y.reshape(y.shape[0], -1), t, emb=emb).reshape(y.shape)


def load_mlp(path: Path) -> MLPScoreModel:
    return MLPScoreModel(MLPDenoiser.load(path))


def forget_conditions(path: Path) -> None:
    """Make the saved model in ``path`` unconditional: every class embedding becomes the null
    class's, so its file holds no conditional prediction to reach (a sealed view for a detector
    without Access.MODEL_COND). The file is replaced, never written through (it may be a hard link)."""
    weights = Path(path) / "weights.safetensors"
    state = load_file(str(weights))
    if "cond.weight" in state:
        table = state["cond.weight"]
        state["cond.weight"] = table[-1:].expand_as(table).contiguous()
        weights.unlink()
        save_file(state, str(weights))

