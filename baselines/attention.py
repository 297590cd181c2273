"""Post-hoc cross-attention entropy (after Ren et al., ECCV 2024, "Unveiling and mitigating memorization in
text-to-image diffusion models through cross attention").

Sign. Ren et al. find that a memorized prompt spreads its cross-attention over the prompt's
tokens (its "trigger" tokens) where an ordinary prompt concentrates it on the beginning token,
so memorized prompts have the HIGHER entropy; their ``detect.py`` scores plus the entropy over all
77 token positions in both of its modes and never flips labels. Score = plus the entropy of
``ScoreModel.cross_attention`` (probabilities over tokens, averaged over heads and image
positions by the adapter).

Layer and step. Ren's first-step mode ("E") reads one layer, index 3 of the cross-attention
layers in the order the UNet runs them (SD 1 and 2: the second transformer of the second down
block, 32x32 for SD 1), at the first DDIM step (timestep 981), on the conditional branch. Here
``layer=None`` (default) averages every layer, since the CPU models have few. This variant reads
noised versions of the final sample (post-hoc), not the generation's own x_T, on the time window
of ``cfg-norm-posthoc`` (see ``guidance.py``); Ren's own generation-time setting is
``attention-entropy`` (``generation_time.py``). Needs a model with the ``"cross_attention"`` capability;
elsewhere the evaluator marks it not applicable.
"""
from __future__ import annotations

import numpy as np
import torch

from mmh_bench import Access, Batch, Context

from ._common import StartOfGeneration

ATTN_STREAM = 500


def attention_entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of ``p`` (renormalised; zero entries contribute 0)."""
    p = p.double().clamp_min(0)
    p = p / p.sum(1, keepdim=True).clamp_min(1e-300)
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)


class AttentionEntropy(StartOfGeneration):
    """Post-hoc variant of Ren et al.: cross-attention entropy at noised versions of the sample (higher = memorized)."""

    name = "attention-entropy-posthoc"
    access = Access.MODEL_COND
    requires = ("cross_attention",)
    version = "2"
    cost_note = "1 attention-recording forward per step (default 3 steps)"

    def __init__(self, n_steps: int = 3, schedule_steps: int = 10, t_start: float = 0.5,
                 layer: int | None = None) -> None:
        super().__init__(n_steps=n_steps, schedule_steps=schedule_steps, t_start=t_start)
        self.layer = None if layer is None else int(layer)

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        kw = {} if self.layer is None else {"layer": self.layer}

        def stat(model, y, t, cond):
            return attention_entropy(torch.as_tensor(model.cross_attention(y, t, cond, **kw)).reshape(len(y), -1))
        return self.step_mean(batch, ctx, ATTN_STREAM, stat)
