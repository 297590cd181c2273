"""Synthetic embedding sets with planted duplicate groups, for retrieval tests and benchmarks.

Generated in place and in batches, so a 1M x 512 float32 set costs its 2 GB and nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def random_vectors(n: int, dim: int, seed: int = 0, batch_size: int = 65536) -> np.ndarray:
    """i.i.d. standard normal rows: no structure at all, the hard case for approximate search."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, batch_size):
        rng.standard_normal(out=out[s:s + batch_size], dtype=np.float32)
    return out


def clustered_vectors(n: int, dim: int, n_clusters: int = 1000, spread: float = 0.5, seed: int = 0,
                      batch_size: int = 65536) -> np.ndarray:
    """Gaussian clusters of unequal size (log-normal weights) around standard normal centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    w = rng.lognormal(0.0, 1.0, n_clusters)
    label = rng.choice(n_clusters, size=n, p=w / w.sum())
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, batch_size):
        blk = out[s:s + batch_size]
        rng.standard_normal(out=blk, dtype=np.float32)
        blk *= np.float32(spread)
        blk += centres[label[s:s + batch_size]]
    return out


def _directions(rng: np.random.Generator, k: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((k, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass
class Planted:
    """Where the planted rows are: ``group[i]`` is the planted group of row i or -1, ``decoy[i]``
    marks rows placed just beyond the threshold from a group (they must stay alone)."""

    group: np.ndarray
    decoy: np.ndarray
    sizes: np.ndarray
    threshold: float


def plant_groups(x: np.ndarray, sizes: list[int] | np.ndarray, threshold: float, seed: int = 0,
                 exact_every: int = 3) -> Planted:
    """Overwrite rows of ``x`` in place with duplicate groups of the given sizes, plus decoys.

    Each group sits around a fresh centre (a copy of a random row): members lie within
    ``threshold / 2`` of it, so every pair is within the threshold. Every ``exact_every``-th group
    is bit-identical copies. Each group gets one decoy at ``1.6 * threshold`` from its centre, hence
    farther than ``1.1 * threshold`` from every member (a merge with it would be false).
    """
    rng = np.random.default_rng(seed + 7)
    sizes = np.asarray(sizes, dtype=np.int64)
    n, dim = x.shape
    need = int(sizes.sum()) + len(sizes)
    if need > n:
        raise ValueError(f"planting {need} rows into {n}")
    pos = rng.permutation(n)[:need]
    group = np.full(n, -1, dtype=np.int64)
    decoy = np.zeros(n, dtype=bool)
    at = 0
    for g, s in enumerate(sizes):
        rows, dec = pos[at:at + s], pos[at + s]
        at += s + 1
        centre = x[rows[0]].astype(np.float64)
        if exact_every and g % exact_every == 0:
            x[rows] = centre.astype(x.dtype)
        else:
            r = rng.uniform(0.0, threshold / 2, size=s)
            x[rows] = (centre + _directions(rng, s, dim) * r[:, None]).astype(x.dtype)
        x[dec] = (centre + _directions(rng, 1, dim)[0] * 1.6 * threshold).astype(x.dtype)
        group[rows] = g
        decoy[dec] = True
    return Planted(group=group, decoy=decoy, sizes=sizes, threshold=float(threshold))


def score_groups(group_of_row: np.ndarray, planted: Planted) -> dict[str, int | bool]:
    """Compare found groups with planted ones.

    ``found`` counts planted groups recovered exactly (one found group, nothing else in it);
    ``false_merges`` counts found groups that join rows of two planted groups, or a planted group
    and any other row (decoys included); ``extra_groups`` are found groups of unplanted rows only
    (chance near-duplicates of the background; correct if within the threshold).
    """
    g = np.asarray(group_of_row)
    counts = np.bincount(g)
    found = split = 0
    for k in range(len(planted.sizes)):
        labels = np.unique(g[planted.group == k])
        if len(labels) == 1 and counts[labels[0]] == planted.sizes[k]:
            found += 1
        elif len(labels) > 1:
            split += 1
    multi = np.flatnonzero(counts > 1)
    in_multi = counts[g] > 1
    false_merges = extra = 0
    if len(multi):
        rows = np.flatnonzero(in_multi)
        order = np.argsort(g[rows], kind="stable")
        rows = rows[order]
        for members in np.split(rows, np.flatnonzero(np.diff(g[rows])) + 1):
            pg = planted.group[members]
            kinds = np.unique(pg)
            if len(kinds) > 1:  # two planted groups, or a planted group and a decoy/background row
                false_merges += 1
            elif kinds[0] < 0:
                extra += 1
    return {"planted": int(len(planted.sizes)), "found": found, "split": split,
            "false_merges": false_merges, "extra_groups": extra,
            "all_found": found == len(planted.sizes) and false_merges == 0}
