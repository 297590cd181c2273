"""Duplicate groups on a Dask cluster: :func:`~mmh_bench.retrieval.neardup.find_duplicates` with
its cell search split into shards of cells, one task each.

The driver does what needs a pass over all rows but little memory (the exact-hash pass, k-means on
a sample, the probe calibration and the assignment of every row to its cell and probed cells:
indices and one norm per row). Each shard task reads the rows of its cells *and of their visitors*
(rows of neighbouring cells whose bisector test reaches these cells, exactly the comparisons the
single-machine search makes, with the same exact re-check of pairs near the threshold), finds the
pairs within the threshold, and returns them compressed to one star per component. The driver
merges the stars with the same union-find linkage, so the groups are identical to a single-machine
run's (``benchmarks/sharded_dedup.py`` checks it at 1M rows; tests at 50k).

Rows reach the workers from a ``.npy`` file every worker can read (memory-mapped there, so a set
larger than any one machine's memory is split among them), or, for rows held in memory, scattered
from the driver.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmh_bench.threads import limited_threads, task_cores
from .neardup import DedupResult, _CellScan, _Linker, _PairFinder, find_duplicates
from .vector_index import prepare_rows

#: most rows (own and visiting) one shard task holds; cells are whole, so a shard may exceed it by one cell
SHARD_ROWS = 262_144
#: shards per worker, so that faster workers take more of them
SHARDS_PER_WORKER = 4


@dataclass(frozen=True)
class NpySource:
    """Rows in a ``.npy`` file at a path every worker can read, prepared as ``metric`` asks."""
    path: str
    metric: str = "l2"

    def take(self, idx: np.ndarray) -> np.ndarray:
        x = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return prepare_rows(x.reshape(len(x), -1)[idx], self.metric)


def _scan_shard(source: Any, rows_idx: np.ndarray, cells: list[tuple[np.ndarray, np.ndarray]], norms: np.ndarray,
                mu: np.ndarray, threshold: float, margin: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """On a worker: the pairs within ``threshold`` of a shard's cells, as stars over ``rows_idx``."""
    rows = source.take(rows_idx) if isinstance(source, NpySource) else np.asarray(source)[rows_idx]
    linker = _Linker(len(rows_idx))
    with limited_threads(task_cores()):
        scan = _CellScan(rows, np.arange(len(rows_idx)), mu, threshold, margin)
        for mem, vis in cells:
            scan.cell(mem, vis, norms, linker)
    src, dst = linker.stars()
    return rows_idx[src], rows_idx[dst], int(scan.cand), int(scan.band)


def _shards(members: Any, nlist: int, budget: int) -> list[list[int]]:
    """Consecutive cells grouped so that each group holds about ``budget`` rows."""
    out: list[list[int]] = [[]]
    held = 0
    for c in range(nlist):
        size = sum(len(p) for p in members(c))
        if out[-1] and held + size > budget:
            out.append([])
            held = 0
        out[-1].append(c)
        held += size
    return [g for g in out if g]


class ClusterScan:
    """The ``scan`` of :func:`find_duplicates` on a Dask client (see the module doc)."""

    def __init__(self, client: Any, source: NpySource | None = None) -> None:
        self.client, self.source = client, source

    def __call__(self, finder: _PairFinder, linker: _Linker) -> dict[str, Any]:
        from distributed import as_completed
        norms, stats, members = finder.layout()
        n_workers = max(1, len(self.client.scheduler_info()["workers"]))
        total = sum(sum(len(p) for p in members(c)) for c in range(finder.nlist))
        budget = max(1, min(SHARD_ROWS, -(-total // (SHARDS_PER_WORKER * n_workers))))
        # rows held in memory go to the workers once; a file is read by each shard where it runs
        source = self.source or self.client.scatter(finder.rows, broadcast=True)
        futures = []
        for group in _shards(members, finder.nlist, budget):
            cells = [members(c) for c in group]
            pos = np.unique(np.concatenate([np.concatenate(p) for p in cells]))
            local = [(np.searchsorted(pos, m), np.searchsorted(pos, v)) for m, v in cells]
            futures.append(self.client.submit(_scan_shard, source, finder.ids[pos], local, norms[pos], finder.mu,
                                              finder.t, finder.margin, pure=False))
        t0 = time.perf_counter()
        cand = band = 0
        for fut in as_completed(futures):
            src, dst, c, b = fut.result()
            linker.add(src, dst)
            cand, band = cand + c, band + b
            fut.release()
        stats.update(candidate_pairs=cand, rechecked_pairs=band, shards=len(futures), workers=n_workers,
                     shard_seconds=round(time.perf_counter() - t0, 3))
        return stats


def find_duplicates_on_cluster(x: np.ndarray, threshold: float, client: Any, *, source: NpySource | None = None,
                               **kwargs: Any) -> DedupResult:
    """:func:`find_duplicates` with the cell search on the cluster behind ``client``; same groups.
    ``source``: where workers read the rows (else ``x``, prepared, is scattered to them)."""
    return find_duplicates(x, threshold, scan=ClusterScan(client, source), **kwargs)
