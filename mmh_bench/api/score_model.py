"""One adapter interface over every diffusion model the benchmark evaluates.

Time is continuous, ``t`` in (0, 1]; a noised sample is ``y = sqrt(alpha_bar(t)) x + sigma(t) z``
with ``sigma(t) = sqrt(1 - alpha_bar(t))``; the network predicts the noise ``eps``. Adapters over
discrete-time models map ``t`` to their own timesteps. Every call is counted per sample, so a
detector's cost is measured rather than claimed.
"""
from __future__ import annotations

import abc
import math
from typing import Any, Sequence

import numpy as np
import torch

T_MIN = 1e-3  # smallest training and sampling time: the VP schedule is singular at 0
#: the VP-linear time whose signal fraction is Stable Diffusion's at its last training timestep
#: (alphas_cumprod[999] = 0.0047; vp_linear_alpha_bar(0.73) = 0.0046): where the CPU tasks' samplers
#: start and what the CPU models take as SD's t = T - 1 (:attr:`ScoreModel.terminal_time`)
SD_MATCHED_T_MAX = 0.73


def as_tensor(x: Any, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


class ScoreModel(abc.ABC):
    """Noise-prediction model with a VP schedule.

    Subclasses implement :meth:`_eps` (batched network call, conditions already resolved) and
    :meth:`alpha_bar`. ``cond=None`` asks for the unconditional prediction; a per-sample entry of
    None does so for that sample alone.
    """

    shape: tuple[int, ...]
    conditional: bool = False
    #: optional extras a model offers beyond eps, e.g. "cross_attention"; detectors list theirs in
    #: ``Detector.requires`` and are skipped as not applicable on models without them
    capabilities: frozenset[str] = frozenset()
    #: the time of the noisiest level the model is sampled from in Stable Diffusion's terms: SD's
    #: last training timestep T - 1 (Webster's sigma_max). The CPU models, trained on (0, 1] with
    #: the VP-linear schedule (at t = 1 a hundred times noisier than any SD step), take the time of
    #: SD's signal fraction there, as their samplers do; the SD adapter overrides it with t = 1.
    terminal_time: float = SD_MATCHED_T_MAX

    def __init__(self) -> None:
        self.nfe = 0  # forward passes, per sample
        self.njvp = 0  # Jacobian-vector products, per sample
        self.module_rows = 0  # rows through the network itself (count_module), however it was reached
        self.device = torch.device("cpu")

    # -- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def _eps(self, y: torch.Tensor, t: torch.Tensor, cond: Sequence[Any] | None) -> torch.Tensor:
        """Network call on ``y`` of shape ``[n, *shape]`` and ``t`` of shape ``[n]``."""

    @abc.abstractmethod
    def alpha_bar(self, t: Any) -> torch.Tensor:
        """Signal fraction at time ``t`` (tensor in, tensor out, same shape)."""

    # -- public -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(math.prod(self.shape))

    def sigma(self, t: Any) -> torch.Tensor:
        return torch.sqrt(1.0 - self.alpha_bar(t))

    def reset_counters(self) -> None:
        self.nfe = 0
        self.njvp = 0
        self.module_rows = 0

    def count_module(self, module: torch.nn.Module) -> None:
        """Count every call of the network ``module`` where it happens (rows of its first input),
        so code that reaches the network past this interface is charged for it all the same."""
        def hook(_: Any, args: tuple, kwargs: dict) -> None:
            first = args[0] if args else next(iter(kwargs.values()), None)
            self.module_rows += int(first.shape[0]) if getattr(first, "ndim", 0) else 1
        module.register_forward_pre_hook(hook, with_kwargs=True)

    @property
    def evaluations(self) -> int:
        """Network evaluations (forwards and JVPs, per sample): what the interface counted, or what
        the network itself saw where that is more."""
        return max(self.nfe + self.njvp, self.module_rows)

    def _prepare(self, x: Any, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
        y = as_tensor(x, self.device)
        if tuple(y.shape[1:]) != tuple(self.shape):
            raise ValueError(f"expected samples of shape [n, {', '.join(map(str, self.shape))}], "
                             f"got {list(y.shape)}")
        tt = as_tensor(t).reshape(-1)  # checked on the CPU (no device sync), then moved
        if tt.numel() == 1:
            tt = tt.expand(y.shape[0])
        if tt.shape[0] != y.shape[0]:
            raise ValueError(f"t has {tt.shape[0]} entries for {y.shape[0]} samples")
        if bool(((tt <= 0) | (tt > 1)).any()):
            raise ValueError("t must lie in (0, 1]")
        return y, tt.to(self.device)

    def _check_cond(self, cond: Sequence[Any] | None, n: int) -> Sequence[Any] | None:
        if cond is None:
            return None
        if not self.conditional:
            raise ValueError("this model is unconditional; pass cond=None")
        if len(cond) != n:
            raise ValueError(f"cond has {len(cond)} entries for {n} samples")
        return cond

    @torch.no_grad()
    def eps(self, x: Any, t: Any, cond: Sequence[Any] | None = None) -> torch.Tensor:
        """Predicted noise at noised input ``x`` and time ``t`` (scalar or one per sample)."""
        y, tt = self._prepare(x, t)
        cond = self._check_cond(cond, y.shape[0])
        self.nfe += y.shape[0]
        return self._eps(y, tt, cond)

    def eps_jvp(self, x: Any, t: Any, v: Any, cond: Sequence[Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(eps(x), J v)`` where ``J = d eps / d x``: one forward-mode pass, counted as one JVP."""
        y, tt = self._prepare(x, t)
        vv = as_tensor(v, self.device).reshape(y.shape)
        cond = self._check_cond(cond, y.shape[0])
        self.njvp += y.shape[0]
        out, jv = torch.func.jvp(lambda z: self._eps(z, tt, cond), (y,), (vv,))
        return out.detach(), jv.detach()

    def condition_embedding(self, cond: Sequence[Any]) -> torch.Tensor:
        """The tensor through which each condition enters the network (capability
        ``"condition_embedding"``): what a mitigator may optimize or perturb."""
        raise NotImplementedError(f"{type(self).__name__} exposes no condition embedding")

    def _eps_embedded(self, y: torch.Tensor, t: torch.Tensor, emb: torch.Tensor,
                      cond: Sequence[Any]) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} exposes no condition embedding")

    def eps_embedded(self, x: Any, t: Any, emb: torch.Tensor, cond: Sequence[Any]) -> torch.Tensor:
        """``eps`` with each condition of ``cond`` entering as the embedding ``emb`` instead of its
        own (:meth:`condition_embedding`; ``cond`` still gives what is not embedded, e.g. which
        caption tokens are padding), with gradients to ``x`` and ``emb``; counted as a forward."""
        y, tt = self._prepare(x, t)
        if emb.shape[0] != y.shape[0] or len(cond) != y.shape[0]:
            raise ValueError(f"emb and cond need one row per sample ({y.shape[0]})")
        self.nfe += y.shape[0]
        return self._eps_embedded(y, tt, emb, cond)

    def cross_attention(self, x: Any, t: Any, cond: Sequence[Any], layer: int | None = None) -> torch.Tensor:
        """Cross-attention probabilities over condition tokens, ``[n, tokens]`` averaged over
        heads and queries, and over every layer (``layer=None``) or read at one (``layer`` counts
        the cross-attention layers in the order a forward runs them; one that does not exist is a
        ValueError), capability ``"cross_attention"``; counted as one evaluation."""
        raise NotImplementedError(f"{type(self).__name__} has no cross-attention")

    @property
    def cross_attention_layers(self) -> int:
        """How many cross-attention layers :meth:`cross_attention` can read one at a time, so a
        detector that reads one layer (Ren et al.'s LE: layer 3) is judged applicable before it runs."""
        raise NotImplementedError(f"{type(self).__name__} has no cross-attention")

    def score(self, x: Any, t: Any, cond: Sequence[Any] | None = None) -> torch.Tensor:
        """Score ``grad log p_t(x) = -eps / sigma``."""
        _, tt = self._prepare(x, t)
        s = self.sigma(tt).reshape(-1, *([1] * len(self.shape)))
        return -self.eps(x, t, cond) / s


def vp_linear_alpha_bar(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    """Continuous-time VP schedule with linear beta (the DDPM schedule in the limit of many steps)."""
    t = torch.as_tensor(t, dtype=torch.float32)
    return torch.exp(-(beta_min * t + 0.5 * (beta_max - beta_min) * t * t))
