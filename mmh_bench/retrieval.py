"""Nearest-neighbour search over training sets (FAISS), deduplication and copy labelling.

All distances returned here are plain Euclidean distances. FAISS's L2 indexes work with squared
distances internally; the conversion happens in this module only.
"""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: The nearest-neighbour ratio below which a sample counts as a copy (Yoon et al. 2023; Gu et al.).
COPY_RATIO = 1.0 / 3.0


def as_rows(x: np.ndarray) -> np.ndarray:
    """Flatten to contiguous float32 rows, the layout FAISS expects."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def duplicate_groups(x: np.ndarray, tol: float) -> np.ndarray:
    """Group id per row: rows within ``tol`` (Euclidean) of each other share a group.

    Groups are the connected components of the ``d <= tol`` graph (single linkage), numbered in
    order of each group's first row, so the result is deterministic.
    """
    rows = as_rows(x)
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    index = faiss.IndexFlatL2(rows.shape[1])
    index.add(rows)
    # range_search keeps squared distances strictly below the radius.
    radius = float(tol) ** 2 * (1 + 1e-6) + 1e-12
    lims, _, nbrs = index.range_search(rows, radius)
    src = np.repeat(np.arange(n), np.diff(lims.astype(np.int64)))
    graph = coo_matrix((np.ones(len(nbrs), dtype=np.int8), (src, nbrs)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # renumber by first occurrence
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(first)
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    return remap[comp].astype(np.int64)


class TrainIndex:
    """Exact FAISS index over the deduplicated training set.

    Each duplicate group is represented once (by its first row), so a duplicated point cannot be
    its own second-nearest neighbour. ``group_size[i]`` says how many training rows representative
    ``i`` stands for; ``rep_row[i]`` is its row in the raw training set.
    """

    def __init__(self, train: np.ndarray, dedup_tol: float = 0.0) -> None:
        rows = as_rows(train)
        self.group_of_row = duplicate_groups(rows, dedup_tol)
        n_groups = int(self.group_of_row.max()) + 1 if len(rows) else 0
        _, self.rep_row = np.unique(self.group_of_row, return_index=True)
        self.group_size = np.bincount(self.group_of_row, minlength=n_groups)
        self.data = rows[self.rep_row]
        self.dedup_tol = float(dedup_tol)
        self._index = faiss.IndexFlatL2(rows.shape[1])
        self._index.add(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of the ``k`` nearest representatives, plain Euclidean, ascending."""
        q = as_rows(x)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, index has {self.dim}")
        k = int(min(k, len(self)))
        d2, idx = self._index.search(q, k)
        return np.sqrt(np.maximum(d2, 0.0)).astype(np.float64), idx.astype(np.int64)


@dataclass(frozen=True)
class CopyLabels:
    """Per-sample audit trail of the copy test."""

    d1: np.ndarray  # distance to nearest deduplicated training point
    d2: np.ndarray  # distance to second nearest
    nn: np.ndarray  # index (into the deduplicated set) of the nearest point
    memorized: np.ndarray  # bool

    @property
    def ratio(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.d2 > 0, self.d1 / self.d2, np.inf)


def label_copies(samples: np.ndarray, index: TrainIndex, abs_tol: float,
                 ratio: float = COPY_RATIO) -> CopyLabels:
    """A sample is a copy when ``d1 / d2 < ratio`` AND ``d1 < abs_tol``.

    The ratio test alone would call a blurry blob around an isolated training point a copy (its
    second neighbour is far away), hence the absolute tolerance.
    """
    if len(index) < 2:
        raise ValueError("the ratio test needs at least two distinct training points")
    d, i = index.search(samples, 2)
    d1, d2 = d[:, 0], d[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(d2 > 0, d1 / d2, np.inf)
    mem = (r < ratio) & (d1 < abs_tol)
    return CopyLabels(d1=d1, d2=d2, nn=i[:, 0], memorized=mem)
