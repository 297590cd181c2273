"""The one sampler of the shipped models: deterministic DDIM from stored initial noise.

Why one deterministic sampler: a generation-time detector (the published ones read the prompt, the
initial noise x_T and the first steps of the generation's own trajectory) must see the very
trajectory that produced the labelled sample. With DDIM (eta = 0) a generation is a function of
its condition and x_T alone, so a task stores x_T beside every sample and any part of the
trajectory can be replayed exactly; an ancestral sampler would need every step's noise kept too.

Times run on a uniform grid from ``t_max`` down to ``t_min``; the last step returns the x0
prediction. Default ``t_max`` = 0.73, where the VP-linear schedule keeps the signal fraction that
Stable Diffusion's schedule keeps at its last training timestep (alpha_bar 0.0047): the CPU
tasks start generating from the same signal-to-noise ratio as SD, so "the first step" means the
same thing in both (at t = 1 the schedule is 100 times noisier than any SD step). On Stable
Diffusion the task records its DDIM grid, ``t = (timestep + 1) / 1000``: 0.982 ... 0.002 for 50
steps, which the SD adapter maps back to timesteps 981 ... 1. Guidance is classifier-free: ``eps_u + g (eps_c - eps_u)``, with
both branches evaluated at every step of a conditional generation (also at g = 1, so a detector
reads both at no extra cost). ``clip`` clamps each step's x0 prediction to ``[-clip, clip]`` (as
diffusers' ``clip_sample``), which keeps guided image chains in the pixel range.
``final_alpha_bar`` (Stable Diffusion): diffusers' DDIM with ``set_alpha_to_one=False`` does not
end at the x0 prediction but one step short of it, at signal fraction ``alphas_cumprod[0]``; the
replay ends where the pipeline ended, so a replayed generation is the stored latent.

Bit-exact replay. A CPU matrix product may round a row differently depending on how many rows it
is computed with (measured: batches of 1 and 7 rows differ from 100 in the last bit, while any
permutation of a fixed-size batch does not). Every network call of the sampler therefore runs on
blocks of exactly :data:`BLOCK` rows (the last block padded), so a sample's trajectory does not
depend on which other samples were generated beside it, and replaying any subset of rows
reproduces their samples bit for bit on the same machine. A model whose ``replay_block`` is None
(Stable Diffusion, which slices its own batches to fit the GPU, where kernels promise no such
invariance anyway) is called on the rows as given.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from mmh_bench.api.score_model import SD_MATCHED_T_MAX, T_MIN, ScoreModel

BLOCK = 256  # rows per network call (see the module docstring)
#: first time of the CPU tasks' sampler, SD_MATCHED_T_MAX = 0.73 (mmh_bench.api.score_model):
#: alpha_bar(0.73) = 0.0047 under the VP-linear schedule, Stable Diffusion's alphas_cumprod at its
#: last training timestep (see the module docstring)


@dataclass(frozen=True)
class Sampler:
    """How a task generates: DDIM on ``steps`` uniform times from ``t_max`` to ``t_min``."""

    steps: int = 100
    guidance: float = 1.0
    clip: float | None = None
    kind: str = "ddim"
    t_max: float = SD_MATCHED_T_MAX
    t_min: float = T_MIN
    #: signal fraction the last step moves to instead of returning its x0 prediction (None: x0)
    final_alpha_bar: float | None = None

    def __post_init__(self) -> None:
        if self.kind != "ddim":
            raise ValueError(f"unknown sampler {self.kind!r}; the shipped models generate with 'ddim'")
        if self.steps < 2:
            raise ValueError("a DDIM sampler needs at least 2 steps")
        if not 0 < self.t_min < self.t_max <= 1:
            raise ValueError(f"need 0 < t_min < t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}")
        if self.final_alpha_bar is not None and not 0 < self.final_alpha_bar <= 1:
            raise ValueError(f"final_alpha_bar must lie in (0, 1], got {self.final_alpha_bar}")

    def times(self) -> np.ndarray:
        """The sampler's time grid, first step first."""
        return np.linspace(self.t_max, self.t_min, self.steps)

    def to_meta(self) -> dict[str, Any]:
        """The fields as JSON; ``final_alpha_bar`` only when set, so other tasks' metas stay as they were."""
        out = asdict(self)
        if out["final_alpha_bar"] is None:
            del out["final_alpha_bar"]
        return out

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Sampler":
        keys = ("steps", "guidance", "clip", "kind", "t_max", "t_min", "final_alpha_bar")
        return cls(**{k: meta[k] for k in keys if k in meta})

    @classmethod
    def from_spec(cls, sampling: Any, *, clip: float | None = None) -> "Sampler":
        """The sampler a spec's ``[sampling]`` section asks for (a validated section model, its
        defaults filled; ``clip`` is the builder's)."""
        return cls(steps=sampling.steps, guidance=sampling.guidance, clip=clip, kind=sampling.sampler)


def noise_seed(task_seed: int) -> int:
    """The seed of a task's initial noises, one-way from the task's seed: the noises are published
    with a test instance, whose seed (and so its secret placement) they must not reveal."""
    return int(hashlib.sha256(f"{int(task_seed)}:initial-noise".encode()).hexdigest()[:15], 16)


def initial_noise(n: int, shape: Sequence[int], seed: int) -> np.ndarray:
    """The x_T of ``n`` generations: standard normal from ``noise_seed(seed)``."""
    gen = torch.Generator().manual_seed(noise_seed(seed))
    return torch.randn((n, *shape), generator=gen).numpy()


def _blocked(model: ScoreModel, y: torch.Tensor, t: torch.Tensor, cond: list | None) -> torch.Tensor:
    """``model.eps`` on blocks of exactly ``model.replay_block`` rows (the last one padded with its
    own first row); on all rows at once when the model has no block size."""
    block = getattr(model, "replay_block", BLOCK)
    if block is None:
        return model.eps(y, t, cond)
    n = y.shape[0]
    out = []
    for start in range(0, n, block):
        m = min(block, n - start)
        yb = y[start:start + m]
        cb = None if cond is None else list(cond[start:start + m])
        if m < block:
            pad = block - m
            yb = torch.cat([yb, yb[:1].expand(pad, *yb.shape[1:])])
            cb = None if cb is None else cb + [cb[0]] * pad
        out.append(model.eps(yb, t, cb)[:m])
        if m < block and hasattr(model, "nfe"):  # padding buys bit-exact replay; it is not work done
            model.nfe -= block - m
            if hasattr(model, "module_rows"):
                model.module_rows -= block - m
    return torch.cat(out)


@dataclass
class Step:
    """One step of a generation: the state ``y`` at time ``t``, both eps branches, the guided eps
    and its x0 prediction (``eps_c`` is None for an unconditional generation)."""

    i: int
    t: float
    y: torch.Tensor
    eps: torch.Tensor
    eps_c: torch.Tensor | None
    eps_u: torch.Tensor
    x0: torch.Tensor


def trajectory(model: ScoreModel, noise: Any, sampler: Sampler, cond: Sequence[Any] | None = None,
               *, n_steps: int | None = None, progress: bool = False,
               cond_eps: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> Iterator[Step]:
    """The generation's steps from x_T = ``noise``, first step first (all ``sampler.steps`` by
    default, else the first ``n_steps``). Network calls go through ``model.eps`` and are counted.
    ``cond_eps(y, t)`` replaces the conditional branch (a mitigator's changed condition)."""
    grid = sampler.times()
    n_steps = len(grid) if n_steps is None else min(int(n_steps), len(grid))
    y = torch.as_tensor(np.asarray(noise), dtype=torch.float32).clone()
    c = None if cond is None else list(cond)
    with torch.no_grad():
        for i in tqdm(range(n_steps), desc="sampling", disable=not progress, mininterval=1.0, leave=False):
            t = torch.tensor(float(grid[i]))
            e_u = _blocked(model, y, t, None)
            e_c = (cond_eps(y, t) if cond_eps is not None else
                   None if c is None else _blocked(model, y, t, c))
            e = e_u if e_c is None else e_u + sampler.guidance * (e_c - e_u)
            ab_t = model.alpha_bar(t)
            x0 = (y - (1 - ab_t).sqrt() * e) / ab_t.sqrt()
            if sampler.clip is not None:
                x0 = x0.clamp(-sampler.clip, sampler.clip)
                e = (y - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()  # the eps consistent with the clipped x0
            yield Step(i, float(grid[i]), y, e, e_c, e_u, x0)
            if i + 1 < len(grid):
                ab_s = model.alpha_bar(torch.tensor(float(grid[i + 1])))
                y = ab_s.sqrt() * x0 + (1 - ab_s).sqrt() * e
            else:
                y = x0


def generate(model: ScoreModel, noise: Any, sampler: Sampler, cond: Sequence[Any] | None = None,
             *, progress: bool = True,
             cond_eps: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """The finished samples of the generations from x_T = ``noise`` (float32, shape of ``noise``)."""
    last = None
    for last in trajectory(model, noise, sampler, cond, progress=progress, cond_eps=cond_eps):
        pass
    assert last is not None
    if sampler.final_alpha_bar is None:
        return last.x0.numpy().astype(np.float32)
    ab = torch.tensor(float(sampler.final_alpha_bar))
    return (ab.sqrt() * last.x0 + (1 - ab).sqrt() * last.eps).numpy().astype(np.float32)


def sample_task(model: ScoreModel, n: int, seed: int, sampler: Sampler, cond: Sequence[Any] | None = None,
                *, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A task's ``n`` generations: ``(samples, x_T)``, x_T from the task's ``seed``; the builder
    keeps both, so every sample's trajectory can be replayed."""
    from mmh_bench.threads import limited_threads, model_threads
    noise = initial_noise(n, model.shape, seed)
    with limited_threads(model_threads(getattr(model, "net", None))):
        return generate(model, noise, sampler, cond, progress=progress), noise
