"""Set-level data-copying statistic C_T (Meehan, Chaudhuri & Dasgupta, AISTATS 2020).

"A non-parametric test to detect data-copying in generative models": partition the space into
cells (k-means on the training set); in each cell compare the distances to the nearest training
point of held-out data (drawn from the data distribution, never trained on) and of generated
samples with a Mann-Whitney U test, as a z-score; average the cells' z-scores weighted by their
share of held-out points, over the cells that hold enough generated samples.

C_T << 0: generated samples sit closer to the training set than fresh data does (data-copying);
C_T ~ 0: no evidence of copying; C_T >> 0: underfitting. One number per task and model, next to
the per-sample scores of the detectors: it needs a held-out set, which per-sample detectors
never see.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans

from mmh_bench.retrieval.train_index import TrainIndex, as_rows

__all__ = ["CopyingStatistic", "cells_seed", "copying_record", "data_copying_ct", "instance_ct", "mann_whitney_z"]


def mann_whitney_z(gen: np.ndarray, held: np.ndarray) -> float:
    """z-score of the Mann-Whitney U of ``gen`` against ``held`` (negative: ``gen`` smaller)."""
    m, n = len(gen), len(held)
    u = mannwhitneyu(gen, held, alternative="two-sided").statistic  # pairs gen > held, ties 1/2
    return float((u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12))


@dataclass(frozen=True)
class CopyingStatistic:
    """C_T and its audit trail."""

    ct: float  # the statistic (nan when no cell qualifies)
    z: np.ndarray  # per-cell z-score (nan for cells left out)
    held_share: np.ndarray  # fraction of held-out points per cell
    gen_count: np.ndarray  # generated samples per cell
    used: np.ndarray  # cells that entered the average

    def as_dict(self) -> dict:
        return {"ct": None if not np.isfinite(self.ct) else round(self.ct, 4),
                "n_cells": int(len(self.z)), "n_cells_used": int(self.used.sum())}


def data_copying_ct(train: np.ndarray, heldout: np.ndarray, samples: np.ndarray, *,
                    n_cells: int | None = None, min_gen: int = 20, seed: int = 0) -> CopyingStatistic:
    """C_T of ``samples`` against ``train``, with ``heldout`` fresh draws from the data distribution.

    ``n_cells`` defaults to ``clip(len(heldout) // 50, 1, 50)`` so every cell holds about 50
    held-out points; a cell enters the average when it holds at least ``min_gen`` generated
    samples (and some held-out points). Distances are to the nearest *deduplicated* training
    point (duplicates do not change a nearest-neighbour distance).
    """
    train, heldout, samples = as_rows(train), as_rows(heldout), as_rows(samples)
    if n_cells is None:
        n_cells = int(np.clip(len(heldout) // 50, 1, 50))
    n_cells = int(min(n_cells, len(train)))
    km = KMeans(n_clusters=n_cells, n_init=3, random_state=seed).fit(train.astype(np.float64))
    cell_h = km.predict(heldout.astype(np.float64))
    cell_g = km.predict(samples.astype(np.float64))
    index = TrainIndex(train)
    d_h = index.search(heldout, 1)[0][:, 0]
    d_g = index.search(samples, 1)[0][:, 0]
    z = np.full(n_cells, np.nan)
    share = np.bincount(cell_h, minlength=n_cells) / max(len(heldout), 1)
    count = np.bincount(cell_g, minlength=n_cells)
    used = np.zeros(n_cells, dtype=bool)
    for c in range(n_cells):
        g, h = d_g[cell_g == c], d_h[cell_h == c]
        if len(g) >= min_gen and len(h) > 0:
            z[c] = mann_whitney_z(g, h)
            used[c] = True
    ct = float((share[used] * z[used]).sum() / share[used].sum()) if used.any() and share[used].sum() > 0 \
        else float("nan")
    return CopyingStatistic(ct=ct, z=z, held_share=share, gen_count=count, used=used)


def cells_seed(train: np.ndarray, heldout: np.ndarray) -> int:
    """The k-means seed of an instance's C_T, derived from its training and held-out rows (both
    published), so anyone holding the published arrays recomputes the board's C_T exactly; a seed
    drawn from a test instance's secret would make it unrecomputable, and publishing that seed
    would reveal the placement."""
    from mmh_bench.files import sha256_arrays
    digest = sha256_arrays({"train": np.asarray(train), "heldout": np.asarray(heldout)})
    return int(digest[:8], 16)  # 32 bits: sklearn's random_state


def instance_ct(arrays: dict[str, np.ndarray]) -> CopyingStatistic:
    """C_T of a built or published instance from its arrays alone (``train``, ``heldout``, ``samples``)."""
    seed = cells_seed(arrays["train"], arrays["heldout"])
    return data_copying_ct(arrays["train"], arrays["heldout"], arrays["samples"], seed=seed)


def copying_record(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The ``copying`` entry of an instance's record: its C_T (:func:`instance_ct`) and how many
    held-out points it compared against; the build writes it, a restamp recomputes it the same way."""
    return {**instance_ct(arrays).as_dict(), "n_heldout": int(len(arrays["heldout"]))}
