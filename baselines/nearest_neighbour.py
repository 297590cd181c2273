"""Data-copying statistics from nearest-neighbour search over the deduplicated training set."""
from __future__ import annotations

import numpy as np

from mmh_bench import Access, Batch, Context, Detector


class NNRatio(Detector):
    """Reference: minus the ratio d1/d2 of the labelling rule itself (Yoon et al.; Gu et al.).

    It sees the training set, so it is the ceiling a sample-side detector is compared with,
    not a competitor: its AUROC is high by construction.
    """

    name = "nn-ratio"
    access = Access.TRAIN_DATA
    reference = True
    cost_note = "one 2-NN search"

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        d, _ = ctx.train_index.search(batch.x, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(d[:, 1] > 0, d[:, 0] / d[:, 1], 1.0)
        return -ratio
