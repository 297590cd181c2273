"""The floor every detector must clear."""
from __future__ import annotations

import numpy as np

from mmh_bench import Access, Batch, Context, Detector


class RandomScore(Detector):
    """Uniform random scores, reproducible from the context seed (AUROC ~ 0.5 by construction)."""

    name = "random"
    group = "chance"
    access = Access.SAMPLES
    cost_note = "none"

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        # seeded by the batch's first row so the scores do not depend on the batch size split
        return np.concatenate([ctx.rng(int(i)).random(1) for i in batch.index])
