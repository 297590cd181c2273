"""Cross-attention entropy (Ren et al., ECCV 2024, "Unveiling and mitigating memorization in
text-to-image diffusion models through cross attention").

Memorized prompts make the cross-attention concentrate on a few "trigger" tokens, so the
entropy of the attention distribution over condition tokens is low. Score = minus the entropy
of ``ScoreModel.cross_attention`` (probabilities over tokens, averaged over layers, heads and
queries by the adapter), averaged over the first steps of generation at noised versions of the
sample, on the same time window as ``cfg-norm`` (see ``guidance.py``). Needs a model with the
``"cross_attention"`` capability; elsewhere the evaluator marks it not applicable.
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
    """Minus the entropy of cross-attention over condition tokens at the start of generation."""

    name = "attention-entropy"
    access = Access.MODEL_COND
    requires = ("cross_attention",)
    cost_note = "1 attention-recording forward per step (default 3 steps)"

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        def stat(model, y, t, cond):
            return -attention_entropy(torch.as_tensor(model.cross_attention(y, t, cond)).reshape(len(y), -1))
        return self.step_mean(batch, ctx, ATTN_STREAM, stat)
