"""Nearest-neighbour search over training sets, deduplication, and copy labelling.

The one place copy labels come from: task builders and users labelling their own generated samples
call the same :func:`label_copies` on a :class:`TrainIndex`.

All distances returned here are plain Euclidean distances (for ``metric="cosine"``, between the
normalised vectors). The index machinery lives in :mod:`mmh_bench.retrieval.vector_index` (which index for
which size, saving and loading) and the deduplication in :mod:`mmh_bench.retrieval.neardup`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmh_bench.files import sha256_file

from ._faiss import faiss
from .neardup import DedupResult, find_duplicates, group_diameters
from .vector_index import (DEFAULT_BATCH, EXACT_MAX_ROWS, IndexFileError, VectorIndex, as_rows,
                           choose_kind, cosine_to_distance, prepare_rows)

__all__ = ["COPY_RATIO", "nn_ratio", "as_rows", "duplicate_groups", "find_duplicates", "DedupResult",
           "group_diameters", "TrainIndex", "VectorIndex", "IndexFileError", "CopyLabels",
           "label_copies", "choose_kind", "cosine_to_distance", "EXACT_MAX_ROWS"]

#: The nearest-neighbour ratio below which a sample counts as a copy (Yoon et al. 2023; Gu et al.).
COPY_RATIO = 1.0 / 3.0


def duplicate_groups(x: np.ndarray, tol: float, *, metric: str = "l2", progress: bool = False,
                     **options: Any) -> np.ndarray:
    """Group id per row: rows within ``tol`` (Euclidean) of each other share a group.

    Groups are the connected components of the ``d <= tol`` graph (single linkage), numbered in
    order of each group's first row, so the result is deterministic. ``tol=0`` groups bit-identical
    rows. Scales to millions of rows; ``options`` go to :func:`mmh_bench.retrieval.neardup.find_duplicates`.
    """
    return find_duplicates(x, tol, metric=metric, progress=progress, **options).group_of_row


class TrainIndex:
    """Nearest-neighbour index over the deduplicated training set.

    Each duplicate group is represented once (by its first row), so a duplicated point cannot be
    its own second-nearest neighbour. ``group_size[i]`` says how many training rows representative
    ``i`` stands for; ``rep_row[i]`` is its row in the raw training set.

    ``kind`` picks the index (``"auto"``: exact up to
    :data:`~mmh_bench.retrieval.vector_index.EXACT_MAX_ROWS` representatives, measured IVF above);
    ``index_options`` go to :meth:`VectorIndex.build`. Without duplicates the exact index searches
    the given array in place (no copy), so do not modify it afterwards.
    """

    #: the task's labelling rule (:class:`mmh_bench.task.labels.CopyRule`) when the index is a task
    #: instance's training set: part of what ``Access.TRAIN_DATA`` grants
    rule: Any = None

    def __init__(self, train: np.ndarray, dedup_tol: float = 0.0, *, metric: str = "l2",
                 kind: str = "auto", embedding: str = "raw", progress: bool = False,
                 **index_options: Any) -> None:
        rows = prepare_rows(train, metric)
        if len(rows) == 0:
            raise ValueError("cannot index an empty training set")
        self.metric = metric
        self.dedup_tol = float(dedup_tol)
        dedup = find_duplicates(rows, dedup_tol, normalized=True, progress=progress)
        self.dedup_stats = dedup.stats
        self._set_groups(dedup.group_of_row)
        self._data: np.ndarray | None = rows if len(self.rep_row) == len(rows) else rows[self.rep_row]
        self.index = VectorIndex.build(self._data, kind=kind, metric=metric, embedding=embedding,
                                       normalized=True, progress=progress, **index_options)

    def _set_groups(self, group_of_row: np.ndarray) -> None:
        self.group_of_row = np.asarray(group_of_row, dtype=np.int64)
        n_groups = int(self.group_of_row.max()) + 1 if len(self.group_of_row) else 0
        _, self.rep_row = np.unique(self.group_of_row, return_index=True)
        self.group_size = np.bincount(self.group_of_row, minlength=n_groups)

    def __len__(self) -> int:
        return len(self.rep_row)

    @property
    def dim(self) -> int:
        return self.index.dim

    @property
    def data(self) -> np.ndarray:
        """The representatives' vectors, one row per duplicate group (normalised for cosine)."""
        if self._data is None:
            if self.index.vectors is not None:
                self._data = self.index.vectors
            elif self.index.kind == "ivfpq":
                raise ValueError("an IVF-PQ index keeps only codes; attach_vectors() the raw rows")
            else:
                raw = self.index.faiss_index
                ivf = faiss.try_extract_index_ivf(raw)
                if ivf is not None:
                    ivf.make_direct_map()
                self._data = raw.reconstruct_n(0, raw.ntotal)
        return self._data

    def search(self, x: np.ndarray, k: int, *, batch_size: int = DEFAULT_BATCH,
               progress: bool = False, probe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of the ``k`` nearest representatives, plain Euclidean, ascending."""
        q = as_rows(x)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, index has {self.dim}")
        return self.index.search(q, k, batch_size=batch_size, progress=progress, probe=probe)

    def save(self, path: str | os.PathLike) -> Path:
        """Save the index (``path``), its sidecar (``path.json``) and the groups (``path.groups.npy``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        groups = path.with_name(path.name + ".groups.npy")
        np.save(groups, self.group_of_row)
        info = {"dedup_tol": self.dedup_tol, "groups_file": groups.name,
                "groups_sha256": sha256_file(groups), "n_rows": int(len(self.group_of_row))}
        return self.index.save(path, extra={"train_index": info})

    @classmethod
    def load(cls, path: str | os.PathLike, *, embedding: str | None = None, metric: str | None = None,
             mmap: bool = False, verify: bool = True) -> "TrainIndex":
        """Load what :meth:`save` wrote, verifying both checksums."""
        path = Path(path)
        index = VectorIndex.load(path, embedding=embedding, metric=metric, mmap=mmap, verify=verify)
        info = index.extra.get("train_index")
        if not info:
            raise IndexFileError(f"{path} is a plain VectorIndex, not a saved TrainIndex")
        groups = path.with_name(info["groups_file"])
        if not groups.is_file():
            raise IndexFileError(f"{groups} (the duplicate groups of {path.name}) is missing")
        if verify and sha256_file(groups) != info["groups_sha256"]:
            raise IndexFileError(f"checksum mismatch for {groups}: the file is corrupted or was modified")
        obj = cls.__new__(cls)
        obj.metric, obj.dedup_tol, obj.dedup_stats = index.metric, float(info["dedup_tol"]), {}
        obj._set_groups(np.load(groups, allow_pickle=False))
        if len(obj.rep_row) != len(index):
            raise IndexFileError(f"{groups} has {len(obj.rep_row)} groups but the index {len(index)} rows")
        obj.index, obj._data = index, None
        return obj


@dataclass(frozen=True)
class CopyLabels:
    """Per-sample audit trail of the copy test."""

    d1: np.ndarray  # distance to nearest deduplicated training point
    d2: np.ndarray  # distance to second nearest
    nn: np.ndarray  # index (into the deduplicated set) of the nearest point; -1 if none found
    memorized: np.ndarray  # bool
    copied_row: np.ndarray | None = None  # row of the raw training set that ``nn`` stands for
    group_size: np.ndarray | None = None  # how many training rows that representative stands for

    @property
    def ratio(self) -> np.ndarray:
        return nn_ratio(self.d1, self.d2)


def nn_ratio(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """``d1 / d2``, and +inf where the second neighbour is missing (d2 = inf, as an approximate
    index can return) or at distance 0: neither case is evidence of a copy."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(d2) & (d2 > 0), d1 / d2, np.inf)


def label_copies(samples: np.ndarray, index: TrainIndex, abs_tol: float,
                 ratio: float = COPY_RATIO, *, batch_size: int = DEFAULT_BATCH,
                 progress: bool = False) -> CopyLabels:
    """A sample is a copy when ``d1 / d2 < ratio`` AND ``d1 < abs_tol`` (the base copy test; the
    task labels add a chance test on top, see :mod:`mmh_bench.task.labels`).

    The ratio test alone would call a blurry blob around an isolated training point a copy (its
    second neighbour is far away), hence the absolute tolerance. Distances are to the deduplicated
    set, so a duplicated training point is one neighbour, not a d2 of zero.
    """
    if len(index) < 2:
        raise ValueError("the ratio test needs at least two distinct training points")
    d, i = index.search(samples, 2, batch_size=batch_size, progress=progress)
    d1, d2 = d[:, 0], d[:, 1]
    nn = i[:, 0]
    found = nn >= 0  # an unfound neighbour (-1) is recorded as such, never as the last row
    mem = (nn_ratio(d1, d2) < ratio) & (d1 < abs_tol) & found & (i[:, 1] >= 0)
    safe = np.where(found, nn, 0)
    return CopyLabels(d1=d1, d2=d2, nn=nn, memorized=mem,
                      copied_row=np.where(found, index.rep_row[safe], -1),
                      group_size=np.where(found, index.group_size[safe], 0))
