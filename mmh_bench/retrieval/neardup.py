"""Duplicate groups at training-set scale: every pair within a threshold, then single linkage.

How the pairs are found (why it scales to millions of rows on a laptop CPU):

1. Bit-identical rows are grouped by hashing (linear time), so a template repeated 100k times costs
   one row in what follows, not 10^10 pairs.
2. Up to :data:`DEDUP_BRUTE_MAX` distinct rows every pair is compared. Above, k-means cells
   (dense cells split, see :func:`~mmh_bench.retrieval.vector_index.balanced_kmeans`) partition the rows and
   each row is compared with the rows of the cells it *probes*, one cell at a time with one matrix
   product per block (BLAS; memory bounded by the block size).
3. Probing is decided by a bisector test: a point within T of x can lie in cell c only if the
   bisector between x's own centroid c0 and c is within T of x,
   ``(|x - c|^2 - |x - c0|^2) / (2 |c - c0|) <= T``. A row that probes every cell passing the test
   is *certified*: all its neighbours within T were seen. ``max_probe`` caps the cells per row
   (the closest bisectors first); ``stats["certified_fraction"]`` says how many rows stayed
   exact. With ``max_probe=None`` every row is certified and the result is exact.
4. Candidate distances from the matrix product are checked against a rounding margin; pairs inside
   the margin band are recomputed exactly, so floating-point cancellation neither adds nor drops a
   pair. No pair farther apart than the threshold is ever linked.

Linkage: groups are the connected components of the graph "distance <= threshold" (single
linkage). A chain a-b-c with d(a,b), d(b,c) <= T puts a and c in one group even when d(a,c) > T;
that is the only way two rows farther apart than T can share a group. ``linkage="complete"`` splits
each component greedily into cliques (every pair within T) instead; ``group_diameters`` verifies.

Longer than ~400 lines: the exact-hash pass, the radius search and the union-find linkage are one
algorithm whose memory bounds depend on each other.

Longer than ~400 lines: the cell search, its calibration and the linkage variants share the
same row and cell arrays; the sharded engine (sharded.py) reuses the cell search from here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from .vector_index import balanced_kmeans, default_nlist, prepare_rows

#: Distinct rows up to which every pair is compared directly.
DEDUP_BRUTE_MAX = 4096
#: ``max_probe="auto"``: the cap is the smallest power of two that reaches, for all but this
#: fraction of sampled rows, the cell of a partner placed exactly at the threshold.
AUTO_MISS_RATE = 1e-3
_BLOCK_Q, _BLOCK_M = 1024, 8192
_EPS32 = 2.0 ** -24


def _renumber_first(labels: np.ndarray) -> np.ndarray:
    """Relabel so group ids follow the order of each group's first row (deterministic)."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv.ravel()]


def exact_duplicate_ids(x: np.ndarray, batch_size: int = 16384) -> np.ndarray:
    """Group id per row for bit-identical rows (``-0.0 == 0.0``), numbered by first row.

    Rows are hashed in batches on up to 64 evenly spaced columns (a random linear hash mod 2^64;
    equal rows are equal there); only rows whose hash repeats are compared byte for byte, so the
    cost is linear and a collision cannot merge different rows.
    """
    rows = np.asarray(x).reshape(len(x), -1)
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    cols = np.unique(np.linspace(0, rows.shape[1] - 1, min(64, rows.shape[1])).astype(np.int64))
    coeff = np.random.default_rng(12345).integers(1, 2**63, size=len(cols), dtype=np.uint64) | np.uint64(1)
    keys = np.empty(n, dtype=np.uint64)
    for s in range(0, n, batch_size):
        blk = np.ascontiguousarray(rows[s:s + batch_size, cols] + np.float32(0), dtype=np.float32)
        keys[s:s + batch_size] = (blk.view(np.uint32).astype(np.uint64) * coeff).sum(axis=1)
    _, kinv, kcount = np.unique(keys, return_inverse=True, return_counts=True)
    kinv = kinv.ravel()
    rep = np.arange(n, dtype=np.int64)
    cand = np.flatnonzero(kcount[kinv] > 1)
    if len(cand):
        sub = np.ascontiguousarray(rows[cand] + np.float32(0), dtype=np.float32)
        sub = sub.view(np.dtype((np.void, sub.shape[1] * 4))).ravel()
        _, first, inv = np.unique(sub, return_index=True, return_inverse=True)
        rep[cand] = cand[first[inv.ravel()]]
    return _renumber_first(rep)


class _Linker:
    """Collects edges and keeps them bounded by compressing to one star per component."""

    def __init__(self, n: int, limit: int = 4_000_000) -> None:
        self.n, self.limit = n, limit
        self.src: list[np.ndarray] = []
        self.dst: list[np.ndarray] = []
        self.count = 0
        self.edges_seen = 0

    def add(self, src: np.ndarray, dst: np.ndarray) -> None:
        if len(src) == 0:
            return
        self.src.append(src.astype(np.int64))
        self.dst.append(dst.astype(np.int64))
        self.count += len(src)
        self.edges_seen += len(src)
        if self.count > self.limit:
            self._compress()
            self.limit = max(self.limit, 2 * self.count)

    def _labels(self) -> np.ndarray:
        src = np.concatenate(self.src) if self.src else np.zeros(0, np.int64)
        dst = np.concatenate(self.dst) if self.dst else np.zeros(0, np.int64)
        graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(self.n, self.n))
        return connected_components(graph, directed=False)[1]

    def _compress(self) -> None:
        comp = self._labels()
        _, first, counts = np.unique(comp, return_index=True, return_counts=True)
        members = np.flatnonzero(counts[comp] > 1)
        root = first[comp[members]]
        keep = members != root
        self.src, self.dst = [members[keep]], [root[keep]]
        self.count = int(keep.sum())

    def labels(self) -> np.ndarray:
        return _renumber_first(self._labels())

    def stars(self) -> tuple[np.ndarray, np.ndarray]:
        """The components as edges member -> first member (fewest edges that keep them)."""
        self._compress()
        return self.src[0], self.dst[0]


def _sqnorms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a, dtype=np.float32)


class _PairFinder:
    """All pairs within ``threshold`` among ``ids`` (row indices into ``rows``); see module doc."""

    def __init__(self, rows: np.ndarray, ids: np.ndarray, threshold: float, *, nlist: int | None,
                 max_probe: int | None, seed: int, batch_size: int, progress: bool) -> None:
        self.rows, self.ids, self.t = rows, ids, float(threshold)
        self.t2 = self.t ** 2
        self.max_probe, self.seed, self.batch, self.progress = max_probe, seed, batch_size, progress
        m, d = len(ids), rows.shape[1]
        self.margin = 4.0 * d * _EPS32  # relative bound on float32 dot-product rounding
        self.nlist = 1 if m <= DEDUP_BRUTE_MAX else int(min(nlist or default_nlist(m), m))
        rng = np.random.default_rng(seed)
        sample = ids[np.sort(rng.choice(m, min(m, max(40 * self.nlist, 4096)), replace=False))]
        xs = rows[sample].astype(np.float64)
        self.mu = xs.mean(axis=0).astype(np.float32)
        if self.nlist > 1:
            self.cent = balanced_kmeans(xs - self.mu, self.nlist, seed=seed)
            self.nlist = len(self.cent)
        else:
            self.cent = np.zeros((1, d), dtype=np.float32)
        del xs
        c64 = self.cent.astype(np.float64)
        cn = (c64 ** 2).sum(1)
        self.cn = cn.astype(np.float32)
        self.cc = np.sqrt(np.maximum(cn[:, None] + cn[None, :] - 2 * c64 @ c64.T, 0)).astype(np.float32)

    def _cells(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Own cell, bisector distance h to every cell (own cell -inf) and the test h <= T."""
        an = _sqnorms(a)
        d2 = an[:, None] + self.cn[None, :] - 2.0 * (a @ self.cent.T)
        c0 = np.argmin(d2, axis=1)
        cc = self.cc[c0]
        with np.errstate(divide="ignore", invalid="ignore"):
            # rounding of both this row's and its partner's cell assignment: twice the margin
            slack = 2.0 * self.margin * (an[:, None] + self.cn[None, :] + self.cn[c0][:, None])
            h = (d2 - d2[np.arange(len(a)), c0][:, None] - slack) / (2.0 * cc)
        h[cc <= 0] = 0.0  # any centroid equal to c0
        h[np.arange(len(a)), c0] = -np.inf  # own cell: always probed, and first
        return c0, h, h <= self.t

    def calibrate_cap(self, n_pairs: int = 2000, miss_rate: float = 1e-3) -> dict[str, Any]:
        """Smallest cap (cells per row, closest bisectors first) that reaches the cell of a partner
        placed exactly at the threshold in a random direction, for all but ``miss_rate`` of rows."""
        if self.nlist == 1:
            return {"cap": 1}
        rng = np.random.default_rng(self.seed + 3)
        pick = self.ids[np.sort(rng.choice(len(self.ids), min(n_pairs, len(self.ids)), replace=False))]
        a = self.rows[pick] - self.mu
        u = rng.standard_normal(a.shape)
        b = (a + self.t * u / np.linalg.norm(u, axis=1, keepdims=True)).astype(np.float32)
        _, h, _ = self._cells(a)
        cb = self._cells(b)[0]
        rank = (h < h[np.arange(len(a)), cb][:, None]).sum(1)  # 0 when the partner shares the cell
        hit_rate = {}
        cap = self.nlist
        p = 1
        while True:
            hit_rate[str(p)] = float((rank < p).mean())
            if hit_rate[str(p)] >= 1.0 - miss_rate or p >= self.nlist:
                cap = min(p, self.nlist)
                break
            p *= 2
        return {"cap": cap, "pairs": len(a), "hit_rate": hit_rate}

    def _assign(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Own cell and squared centred norm per row, and the (row position, cell) probe list."""
        m, k = len(self.ids), self.nlist
        cell = np.empty(m, dtype=np.int64)
        norms = np.empty(m, dtype=np.float32)
        pr, pc = [], []
        certified = 0
        cap = self.max_probe
        for s in tqdm(range(0, m, self.batch), desc="dedup: assign", unit="batch",
                      disable=not self.progress or k == 1, leave=False):
            a = self.rows[self.ids[s:s + self.batch]] - self.mu
            norms[s:s + len(a)] = _sqnorms(a)
            pos = np.arange(s, s + len(a))
            if k == 1:
                cell[pos] = 0
                pr.append(pos)
                pc.append(np.zeros(len(a), dtype=np.int64))
                certified += len(a)
                continue
            c0, h, need = self._cells(a)
            cell[pos] = c0
            cnt = need.sum(1)
            over = np.flatnonzero(cnt > cap) if cap is not None else np.zeros(0, np.int64)
            certified += len(a) - len(over)
            if len(over):
                hh = np.where(need[over], h[over], np.inf)
                top = np.argpartition(hh, cap - 1, axis=1)[:, :cap]
                need[over] = False
                need[over[:, None], top] = True
            r, c = np.nonzero(need)
            pr.append(pos[r])
            pc.append(c)
        pr_a, pc_a = np.concatenate(pr), np.concatenate(pc)
        stats = {"nlist": k, "max_probe": cap, "mean_probes": round(len(pr_a) / max(m, 1), 3),
                 "certified_fraction": certified / max(m, 1)}
        return cell, norms, np.stack([pr_a, pc_a]), stats

    def layout(self) -> tuple[np.ndarray, dict[str, Any], Callable[[int], tuple[np.ndarray, np.ndarray]]]:
        """Squared centred norm per row, the probe stats, and ``cell(c)``: the positions of cell
        ``c``'s own rows and of its visitors (rows of other cells that probe it)."""
        cell, norms, probes, stats = self._assign()
        m_order = np.argsort(cell, kind="stable")
        m_start = np.searchsorted(cell[m_order], np.arange(self.nlist + 1))
        visitor = cell[probes[0]] != probes[1]  # rows probing a cell other than their own
        probes = probes[:, visitor]
        q_order = np.argsort(probes[1], kind="stable")
        q_pos = probes[0][q_order]
        q_start = np.searchsorted(probes[1][q_order], np.arange(self.nlist + 1))
        del probes, q_order, visitor

        def members(c: int) -> tuple[np.ndarray, np.ndarray]:
            return m_order[m_start[c]:m_start[c + 1]], q_pos[q_start[c]:q_start[c + 1]]
        return norms, stats, members

    def scanner(self, rows: np.ndarray | None = None, ids: np.ndarray | None = None) -> "_CellScan":
        return _CellScan(self.rows if rows is None else rows, self.ids if ids is None else ids,
                         self.mu, self.t, self.margin)

    def run(self, linker: _Linker) -> dict[str, Any]:
        norms, stats, members = self.layout()
        scan = self.scanner()
        for c in tqdm(range(self.nlist), desc="dedup: pairs", unit="cell",
                      disable=not self.progress, leave=False):
            scan.cell(*members(c), norms, linker)
        stats.update(candidate_pairs=int(scan.cand), rechecked_pairs=int(scan.band))
        return stats


class _CellScan:
    """Pairs within the threshold in one cell: its own rows with each other, its visitors with its
    own rows (positions index ``ids``, which index ``rows``)."""

    def __init__(self, rows: np.ndarray, ids: np.ndarray, mu: np.ndarray, threshold: float, margin: float) -> None:
        self.rows, self.ids, self.mu, self.margin = rows, ids, mu, margin
        self.t2 = float(threshold) ** 2
        self.cand = self.band = 0

    def cell(self, mem: np.ndarray, vis: np.ndarray, norms: np.ndarray, linker: _Linker) -> None:
        # own rows against own rows: each pair once (block upper triangle)
        for qs in range(0, len(mem), _BLOCK_Q):
            self._block(mem[qs:qs + _BLOCK_Q], mem[qs:], norms, linker)
        for qs in range(0, len(vis), _BLOCK_Q):
            self._block(vis[qs:qs + _BLOCK_Q], mem, norms, linker)

    def _block(self, qb: np.ndarray, targets: np.ndarray, norms: np.ndarray, linker: _Linker) -> None:
        """Pairs within the threshold between rows ``qb`` and ``targets`` (positions in ids)."""
        if len(qb) == 0 or len(targets) == 0:
            return
        a = self.rows[self.ids[qb]] - self.mu
        an = norms[qb]
        ua = 0.5 * ((1.0 - self.margin) * an - self.t2)
        for ms in range(0, len(targets), _BLOCK_M):
            mb = targets[ms:ms + _BLOCK_M]
            b = self.rows[self.ids[mb]] - self.mu
            bn = norms[mb]
            vb = (0.5 * (1.0 - self.margin)) * bn
            # d2 = an + bn - 2g <= t2 + margin (an + bn)  <=>  g - vb >= ua
            g = a @ b.T
            g -= vb[None, :]
            i, j = np.nonzero(g >= ua[:, None])
            if len(i) == 0:
                continue
            nsum = an[i].astype(np.float64) + bn[j]
            d2 = nsum - 2.0 * (g[i, j].astype(np.float64) + vb[j])
            sure = d2 <= self.t2 - self.margin * nsum
            src, dst = self.ids[qb[i]], self.ids[mb[j]]
            keep = src != dst
            unsure = np.flatnonzero(~sure & keep)
            if len(unsure):
                exact = self._exact_sq(src[unsure], dst[unsure])
                keep[unsure[exact > self.t2]] = False
            self.cand += len(i)
            self.band += len(unsure)
            linker.add(src[keep], dst[keep])

    def _exact_sq(self, i: np.ndarray, j: np.ndarray, chunk: int = 4096) -> np.ndarray:
        out = np.empty(len(i))
        for s in range(0, len(i), chunk):
            diff = self.rows[i[s:s + chunk]].astype(np.float64) - self.rows[j[s:s + chunk]]
            out[s:s + chunk] = np.einsum("ij,ij->i", diff, diff)
        return out


@dataclass
class DedupResult:
    """Duplicate groups of a set of rows, with how they were found."""

    group_of_row: np.ndarray
    threshold: float
    metric: str = "l2"
    linkage: str = "single"
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.group_of_row)

    @property
    def groups(self) -> list[np.ndarray]:
        """Row indices of each group with two or more rows, ascending, ordered by first row."""
        g = self.group_of_row
        counts = np.bincount(g) if len(g) else np.zeros(0, np.int64)
        rows = np.flatnonzero(counts[g] > 1)
        order = np.argsort(g[rows], kind="stable")
        rows = rows[order]
        cuts = np.flatnonzero(np.diff(g[rows])) + 1
        return np.split(rows, cuts) if len(rows) else []

    def to_json(self, **extra: Any) -> dict[str, Any]:
        groups = self.groups
        sizes = [len(gr) for gr in groups]
        out = {"groups": [gr.tolist() for gr in groups], "sizes": sizes,
               "n_rows": self.n_rows, "n_groups": len(groups), "rows_in_groups": int(sum(sizes)),
               "rows_after_dedup": int(self.n_rows - sum(sizes) + len(groups)),
               "threshold": self.threshold, "metric": self.metric, "linkage": self.linkage,
               "stats": self.stats}
        out.update(extra)
        return out


def find_duplicates(x: np.ndarray, threshold: float, *, metric: str = "l2", linkage: str = "single",
                    nlist: int | None = None, max_probe: int | str | None = "auto", seed: int = 0,
                    batch_size: int = 4096, progress: bool = False, normalized: bool = False,
                    scan: Callable[["_PairFinder", _Linker], dict[str, Any]] | None = None) -> DedupResult:
    """Group rows within ``threshold`` (Euclidean; chord distance for ``metric="cosine"``).

    Up to :data:`DEDUP_BRUTE_MAX` distinct rows every pair is compared (exact). Above,
    ``max_probe`` caps the cells each row is compared with: ``"auto"`` measures the cap (see
    :data:`AUTO_MISS_RATE`), an int fixes it, ``None`` removes it (exact; on unstructured
    high-dimensional data this approaches comparing all pairs). ``stats["certified_fraction"]``
    is the fraction of rows whose neighbourhood was searched completely. ``scan``: runs the cell
    search instead of this process (a cluster: :mod:`mmh_bench.retrieval.sharded`; same groups).
    """
    if threshold < 0 or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite distance >= 0, got {threshold}")
    if linkage not in ("single", "complete"):
        raise ValueError(f"unknown linkage {linkage!r}; choose single or complete")
    t0 = time.perf_counter()
    rows = prepare_rows(x, "l2" if normalized else metric)
    n = len(rows)
    ids = exact_duplicate_ids(rows)
    _, reps = np.unique(ids, return_index=True)
    stats: dict[str, Any] = {"exact_duplicate_rows": int(n - len(reps)), "distinct_rows": int(len(reps))}
    linker = _Linker(n)
    rep_of_row = reps[ids]
    dup = np.flatnonzero(rep_of_row != np.arange(n))
    linker.add(dup, rep_of_row[dup])
    if threshold > 0 and len(reps) > 1:
        finder = _PairFinder(rows, reps, threshold, nlist=nlist, max_probe=None, seed=seed,
                             batch_size=batch_size, progress=progress)
        if max_probe == "auto":
            cal = finder.calibrate_cap(miss_rate=AUTO_MISS_RATE)
            finder.max_probe = cal["cap"] if finder.nlist > 1 else None
            stats["probe_calibration"] = cal
        elif max_probe is not None:
            finder.max_probe = max(1, int(max_probe))
        stats.update(finder.run(linker) if scan is None else scan(finder, linker))
        stats["method"] = "all-pairs" if finder.nlist == 1 else "ivf-cells"
    else:
        stats.update(method="exact-hash", certified_fraction=1.0)
    stats["edges"] = int(linker.edges_seen)
    groups = linker.labels()
    if linkage == "complete":
        groups = split_complete_linkage(rows, groups, threshold)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return DedupResult(groups, float(threshold), metric, linkage, stats)


def _member_lists(group_of_row: np.ndarray) -> list[np.ndarray]:
    return DedupResult(group_of_row, 0.0).groups


def split_complete_linkage(rows: np.ndarray, group_of_row: np.ndarray, threshold: float) -> np.ndarray:
    """Split every group greedily into cliques whose pairwise distances are all <= threshold.

    Deterministic: the lowest remaining row seeds a clique, and rows join in index order while
    they are within the threshold of every member so far. Cost O(s^2) distances per group of s.
    """
    out = np.arange(len(group_of_row), dtype=np.int64)
    t2 = float(threshold) ** 2
    for members in _member_lists(group_of_row):
        remaining = members
        while len(remaining):
            clique = [remaining[0]]
            cand = remaining[1:]
            while len(cand):
                diff = rows[cand].astype(np.float64) - rows[clique[-1]]
                cand = cand[np.einsum("ij,ij->i", diff, diff) <= t2]
                if len(cand):
                    clique.append(cand[0])
                    cand = cand[1:]
            out[clique] = clique[0]
            remaining = np.setdiff1d(remaining, clique, assume_unique=True)
    return _renumber_first(out)


def group_diameters(rows: np.ndarray, groups: list[np.ndarray], exact_max: int = 5000) -> np.ndarray:
    """Largest pairwise distance in each group (exact up to ``exact_max`` rows; above, the upper
    bound twice the largest distance to the group's first row)."""
    out = np.zeros(len(groups))
    for g, members in enumerate(groups):
        x = rows[members].astype(np.float64)
        if len(members) > exact_max:
            out[g] = 2.0 * np.sqrt(((x - x[0]) ** 2).sum(1).max())
            continue
        sq = (x ** 2).sum(1)
        best = 0.0
        for s in range(0, len(x), 1024):
            d2 = sq[s:s + 1024, None] + sq[None, :] - 2 * x[s:s + 1024] @ x.T
            best = max(best, float(d2.max()))
        out[g] = np.sqrt(max(best, 0.0))
    return out
