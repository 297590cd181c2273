"""Exact and approximate nearest-neighbour indexes that report plain Euclidean distances.

Which index (``kind="auto"``; pass ``kind=`` to override):

- ``"flat"`` (exact) up to :data:`EXACT_MAX_ROWS` rows. It searches the caller's array in place
  (no copy), so memory stays at the data plus a few blocks. On one (shared) core of this
  project's machine 100k x 512 rows answered about 650 queries a second and 1M about 50, so 200k
  (about 300) is still interactive and keeps labels exact.
- ``"ivf"`` (IVF-Flat) above it, with ``nlist`` = the power of two nearest sqrt(n) (dense cells
  split, :func:`balanced_kmeans`) and ``nprobe`` *measured* at build time: the smallest probe count
  whose recall@1 on copy-regime queries (a training row moved by a third of its nearest-neighbour
  distance, the edge of the ratio test) reaches ``target_recall``. The measurement is stored with
  the index. Queries are scanned list by list in batches (:meth:`VectorIndex._ivf_batched`).
- ``"hnsw"`` (HNSW-Flat, ``efSearch`` measured the same way) and ``"ivfpq"`` (IVF-PQ, 8 dims per
  byte; candidates re-ranked exactly against the raw vectors when those are attached) on request.

Metric ``"l2"`` or ``"cosine"``. Cosine normalises rows and searches by inner product, but the
distances reported are still Euclidean, between the normalised vectors (chord distance,
``sqrt(2 - 2 cos)``), so thresholds and the ratio test mean the same thing under both metrics.

Indexes are saved with :func:`faiss.write_index` next to a JSON sidecar (``<path>.json``) that
records the embedding name, metric, dimension, size, measured probe count and the file's sha256;
:meth:`VectorIndex.load` refuses a file whose checksum does not match before FAISS parses it.

Longer than ~400 lines: choosing, building, calibrating, searching and saving an index depend on
the same per-kind details (flat, HNSW, IVF, IVF-PQ); splitting them would spread each kind over files.

Longer than ~400 lines: one index type per FAISS family with its tuning and exact re-check;
each class is small, and they share the recall-check helpers.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mmh_bench.files import sha256_file

from ._faiss import faiss

log = logging.getLogger(__name__)

#: Largest training set searched exactly by ``kind="auto"``.
EXACT_MAX_ROWS = 200_000
KINDS = ("flat", "ivf", "hnsw", "ivfpq")
METRICS = ("l2", "cosine")
#: Queries per batch: bounds the per-batch working memory (FAISS tiles the flat search itself).
DEFAULT_BATCH = 4096
FORMAT_VERSION = 1
_PQ_REFINE = 8  # IVF-PQ: candidates per requested neighbour re-ranked exactly


class IndexFileError(ValueError):
    """A saved index is missing its metadata, fails its checksum, or does not match what was asked."""


def as_rows(x: np.ndarray) -> np.ndarray:
    """Flatten to contiguous float32 rows, the layout FAISS expects (no copy when already so)."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def normalize_rows(x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Unit-norm copy of the rows (all-zero rows stay zero), made in batches to bound temporaries."""
    rows = as_rows(x)
    out = np.empty_like(rows)
    for s in range(0, len(rows), batch_size):
        blk = rows[s:s + batch_size]
        norm = np.sqrt(np.einsum("ij,ij->i", blk, blk, dtype=np.float64))
        out[s:s + batch_size] = blk / np.where(norm > 0, norm, 1.0)[:, None]
    return out


def prepare_rows(x: np.ndarray, metric: str) -> np.ndarray:
    """Rows as the index stores them: as-is for ``l2``, normalised (a copy) for ``cosine``."""
    check_metric(metric)
    return normalize_rows(x) if metric == "cosine" else as_rows(x)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def cosine_to_distance(cos: float | np.ndarray) -> float | np.ndarray:
    """Euclidean distance between unit vectors with this cosine similarity: ``sqrt(2 - 2 cos)``."""
    return np.sqrt(np.maximum(2.0 - 2.0 * np.asarray(cos, dtype=np.float64), 0.0))


def choose_kind(n: int, exact_max: int = EXACT_MAX_ROWS) -> str:
    """The documented rule: exact search up to ``exact_max`` rows, IVF above it."""
    return "flat" if n <= exact_max else "ivf"


def default_nlist(n: int) -> int:
    """Power of two nearest sqrt(n), and at most n/39 so k-means gets 39 points per centroid."""
    if n < 2 * 39:
        return 1
    p = 2 ** int(round(math.log2(math.sqrt(n))))
    return int(max(1, min(p, n // 39)))


def balanced_kmeans(xs: np.ndarray, k: int, *, seed: int = 0, spherical: bool = False,
                    niter: int = 10) -> np.ndarray:
    """k-means centroids of ``xs``, then every cell holding over 3x the mean share is replaced by
    sub-centroids (k-means inside it), so no cell is much larger than the rest.

    Why: the work of an IVF scan is the sum over probed cells of their sizes; on high-dimensional
    data k-means leaves "hub" cells several times the mean (imbalance 5x on the benchmark's data),
    and the queries that probe them pay for it. The result is a flat set of centroids, so
    nearest-centroid cells (and the bisector test in :mod:`mmh_bench.retrieval.neardup`) stay valid.
    """
    xs = np.ascontiguousarray(xs, dtype=np.float32)
    d = xs.shape[1]
    k = max(1, min(int(k), len(xs)))
    if k == 1:
        cent = xs.mean(axis=0, keepdims=True)
        return cent / max(np.linalg.norm(cent), 1e-30) if spherical else cent
    km = faiss.Kmeans(d, k, niter=niter, seed=int(seed), spherical=spherical,
                      max_points_per_centroid=max(64, len(xs) // k + 1))
    km.train(xs)
    cent = np.ascontiguousarray(km.centroids, dtype=np.float32)
    metric = faiss.METRIC_INNER_PRODUCT if spherical else faiss.METRIC_L2
    _, own = faiss.knn(xs, cent, 1, metric)
    counts = np.bincount(own[:, 0], minlength=k)
    mean = len(xs) / k
    keep, extra = [], []
    for c in range(k):
        sub = int(min(np.ceil(counts[c] / mean), counts[c] // 39))
        if counts[c] <= 3 * mean or sub < 2:
            keep.append(c)
            continue
        km = faiss.Kmeans(d, sub, niter=niter, seed=int(seed) + c, spherical=spherical)
        km.train(np.ascontiguousarray(xs[own[:, 0] == c]))
        extra.append(km.centroids)
    return np.ascontiguousarray(np.concatenate([cent[keep]] + extra), dtype=np.float32)


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def _faiss_metric(metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2


def _to_euclid(raw: np.ndarray, metric: str) -> np.ndarray:
    raw = raw.astype(np.float64)
    if metric == "cosine":
        return np.sqrt(np.maximum(2.0 - 2.0 * raw, 0.0))
    return np.sqrt(np.maximum(raw, 0.0))


def _probe_ladder(kind: str, nlist: int) -> list[int]:
    if kind == "hnsw":
        return [16, 32, 64, 128, 256, 512]
    ladder, p = [], 1
    while p < min(nlist, 256):
        ladder.append(p)
        p *= 2
    return ladder + [min(nlist, 256)]


class VectorIndex:
    """A FAISS index (or a plain array searched exactly) with its metric, embedding and probe count.

    Build with :meth:`build`, query with :meth:`search`, persist with :meth:`save` / :meth:`load`.
    """

    def __init__(self, kind: str, metric: str, dim: int, ntotal: int, embedding: str = "raw", *,
                 index: Any = None, vectors: np.ndarray | None = None, probe: int | None = None,
                 nlist: int | None = None, calibration: dict | None = None,
                 extra: dict | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of auto, {', '.join(KINDS)}")
        check_metric(metric)
        if kind == "flat" and vectors is None:
            raise ValueError("a flat index needs its vectors")
        self.kind, self.metric, self.dim, self.ntotal = kind, metric, int(dim), int(ntotal)
        self.embedding = embedding
        self.probe, self.nlist = probe, nlist
        self.calibration = calibration or {}
        self.extra = dict(extra or {})
        self._index = index
        self._vectors = vectors

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def build(cls, x: np.ndarray, *, kind: str = "auto", metric: str = "l2", embedding: str = "raw",
              exact_max: int = EXACT_MAX_ROWS, nlist: int | None = None, probe: int | None = None,
              target_recall: float = 0.995, calib_radius: float | None = None,
              calib_queries: int = 500, pq_m: int | None = None, hnsw_m: int = 32,
              normalized: bool = False, seed: int = 0, batch_size: int = 65536,
              progress: bool = False) -> "VectorIndex":
        """Index the rows of ``x`` (one vector per row; images are flattened).

        ``probe`` fixes ``nprobe`` / ``efSearch``; left as None it is measured (see module doc),
        with queries at ``calib_radius`` from a training row when given, else at a third of that
        row's nearest-neighbour distance. ``normalized=True`` says cosine rows are already unit norm.
        """
        check_metric(metric)
        rows = as_rows(x) if (normalized or metric == "l2") else normalize_rows(x)
        n, d = rows.shape
        if n == 0:
            raise ValueError("cannot index an empty array")
        kind = choose_kind(n, exact_max) if kind == "auto" else kind
        if kind == "flat":
            return cls("flat", metric, d, n, embedding, vectors=rows)
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of auto, {', '.join(KINDS)}")
        t0 = time.perf_counter()
        fm = _faiss_metric(metric)
        if kind == "hnsw":
            index, nlist = faiss.index_factory(d, f"HNSW{int(hnsw_m)},Flat", fm), None
        else:
            rng = np.random.default_rng(seed)
            nlist = int(nlist or default_nlist(n))
            n_train = min(n, 40 * nlist if kind == "ivf" else max(40 * nlist, 256 * 64))
            sample = np.sort(rng.choice(n, n_train, replace=False)) if n_train < n else slice(None)
            xs = np.ascontiguousarray(rows[sample])
            cent = balanced_kmeans(xs, nlist, seed=seed, spherical=metric == "cosine")
            nlist = len(cent)
            quant = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
            quant.add(cent)
            if kind == "ivf":
                index = faiss.IndexIVFFlat(quant, d, nlist, fm)
            else:
                m = int(pq_m or max(k for k in range(1, max(1, d // 8) + 1) if d % k == 0))
                index = faiss.IndexIVFPQ(quant, d, nlist, m, 8, fm)
                index.do_polysemous_training = False  # Hamming filtering is unused; it costs minutes
                index.train(xs)  # the PQ codebooks only: the quantizer is already trained
            index.own_fields = True  # the index owns (and frees) its quantizer from here on
            quant.this.disown()
            del xs
        train_s = time.perf_counter() - t0
        for s in tqdm(range(0, n, batch_size), desc=f"add ({kind})", unit="batch",
                      disable=not progress, leave=False):
            index.add(rows[s:s + batch_size])
        out = cls(kind, metric, d, n, embedding, index=index, nlist=nlist,
                  vectors=rows if kind == "ivfpq" else None)
        out.extra["train_seconds"] = round(train_s, 3)
        out.extra["build_seconds"] = round(time.perf_counter() - t0, 3)
        if probe is not None:
            out.probe = int(probe)
        else:
            out.calibrate(rows, radius=calib_radius, target=target_recall, n_queries=calib_queries,
                          seed=seed)
        return out

    def calibrate(self, rows: np.ndarray, *, radius: float | None = None, target: float = 0.99,
                  n_queries: int = 500, seed: int = 0) -> dict:
        """Measure and set the smallest probe count with copy-regime recall@1 >= ``target``.

        ``rows`` are the indexed vectors (in index order). A query is a sampled row moved in a
        random direction by ``radius`` (or by a third of the row's nearest-neighbour distance): its
        nearest neighbour is that row, so a hit is finding it (or anything at least as close).
        """
        if self.kind == "flat":
            return {}
        rng = np.random.default_rng(seed + 1)
        m = min(int(n_queries), self.ntotal)
        ids = np.sort(rng.choice(self.ntotal, m, replace=False))
        src = np.ascontiguousarray(rows[ids], dtype=np.float32)
        ladder = _probe_ladder(self.kind, self.nlist or 1)
        if radius is None:  # exact nearest-neighbour distances of the sampled rows (BLAS)
            raw, i = faiss.knn(src, rows, 2, _faiss_metric(self.metric))
            d = _to_euclid(raw, self.metric)
            r = np.where(i[:, 0] == ids, d[:, 1], d[:, 0]) / 3.0
        else:
            r = np.full(m, float(radius))
        noise = rng.standard_normal(src.shape).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        q = src + noise * r[:, None].astype(np.float32)
        if self.metric == "cosine":
            q = normalize_rows(q)
        d_src = np.linalg.norm(q.astype(np.float64) - src, axis=1)
        recall: dict[str, float] = {}
        chosen = ladder[-1]
        for p in ladder:
            d, i = self.search(q, 1, probe=p)
            hit = (i[:, 0] == ids) | (d[:, 0] <= d_src * (1 + 1e-5) + 1e-7)
            recall[str(p)] = float(hit.mean())
            if hit.mean() >= target:
                chosen = p
                break
        else:
            log.warning("no probe count reached recall %.3f (best %.4f at %d)", target,
                        max(recall.values()), chosen)
        self.probe = chosen
        self.calibration = {"queries": m, "radius": "nn/3" if radius is None else float(radius),
                            "target": float(target), "recall": recall, "chosen": chosen}
        return self.calibration

    # -- queries --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.ntotal

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    @property
    def faiss_index(self) -> Any:
        """The underlying FAISS index (for callers that reconstruct its rows)."""
        return self._index

    @property
    def vectors(self) -> np.ndarray | None:
        """The stored rows when the index keeps them as an array (flat; IVF-PQ's re-rank source)."""
        return self._vectors

    def attach_vectors(self, x: np.ndarray) -> None:
        """Give a loaded IVF-PQ index the raw rows (e.g. a memory-mapped .npy) for exact re-ranking."""
        rows = as_rows(x)
        if rows.shape != (self.ntotal, self.dim):
            raise ValueError(f"vectors of shape {rows.shape} do not match the index ({self.ntotal}, {self.dim})")
        self._vectors = rows

    def _set_probe(self, probe: int | None) -> None:
        p = self.probe if probe is None else int(probe)
        if p is None:
            return
        if self.kind == "hnsw":
            faiss.downcast_index(self._index).hnsw.efSearch = max(p, 1)
        else:
            faiss.extract_index_ivf(self._index).nprobe = max(1, min(p, self.nlist or 1))

    def _exact(self, q: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """Raw scores (squared L2, or inner product) of each query against its own rows ``xb``
        (shape (nq, k, d)), computed directly: no cancellation, so an exact copy scores 0."""
        if self.metric == "cosine":
            return np.einsum("qd,qkd->qk", q, xb)
        diff = xb - q[:, None, :]
        return np.einsum("qkd,qkd->qk", diff, diff)

    def _refine(self, q: np.ndarray, raw: np.ndarray, ids: np.ndarray,
                rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Recompute the scores of returned rows exactly and re-sort (BLAS-based paths)."""
        k = ids.shape[1]
        step = max(1, (1 << 24) // max(1, k * self.dim))
        worst = -np.inf if self.metric == "cosine" else np.inf
        for s in range(0, len(q), step):
            ii = ids[s:s + step]
            ex = self._exact(q[s:s + step], rows[np.where(ii < 0, 0, ii)])
            raw[s:s + step] = np.where(ii < 0, worst, ex)
        order = np.argsort(-raw if self.metric == "cosine" else raw, axis=1, kind="stable")
        return np.take_along_axis(raw, order, 1), np.take_along_axis(ids, order, 1)

    def _ivf_lists(self) -> tuple[np.ndarray, list]:
        """Centroids, and zero-copy views (vectors, ids) plus half squared norms of every list."""
        if getattr(self, "_lists", None) is None:
            ivf = faiss.extract_index_ivf(self._index)
            quant = faiss.downcast_index(ivf.quantizer)
            cent = faiss.rev_swig_ptr(quant.get_xb(), ivf.nlist * self.dim).reshape(ivf.nlist, self.dim)
            inv, views = ivf.invlists, []
            for lst in range(ivf.nlist):
                size = inv.list_size(lst)
                if size == 0:
                    views.append(None)
                    continue
                vec = faiss.rev_swig_ptr(inv.get_codes(lst), size * ivf.code_size).view(np.float32)
                vec = vec.reshape(size, self.dim)
                ids = faiss.rev_swig_ptr(inv.get_ids(lst), size).view(np.int64)
                views.append((vec, ids, 0.5 * np.einsum("ij,ij->i", vec, vec)))
            self._lists = (np.array(cent), views)
        return self._lists

    def _ivf_batched(self, q: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """IVF-Flat search that reads each probed list once per batch of queries.

        FAISS scans lists query by query, which streams every probed list from memory again for
        each query (memory-bound: 11 queries/s at nprobe 32 on 1M x 512 here). Grouping the
        queries by list turns the scan into one matrix product per list (compute-bound), then the
        k best per list are re-scored exactly and merged.
        """
        cent, views = self._ivf_lists()
        cos = self.metric == "cosine"
        nprobe = max(1, min(nprobe, len(cent)))
        _, probes = faiss.knn(q, cent, nprobe, _faiss_metric(self.metric))
        nq = len(q)
        worst = -np.inf if cos else np.inf
        cand_s = np.full((nq, nprobe * k), worst, dtype=np.float32)
        cand_i = np.full((nq, nprobe * k), -1, dtype=np.int64)
        flat = probes.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(len(cent) + 1))
        for lst in np.unique(flat[flat >= 0]):
            view = views[lst]
            if view is None:
                continue
            vec, ids, half_norm = view
            hit = order[bounds[lst]:bounds[lst + 1]]
            qi, slot = hit // nprobe, hit % nprobe
            kk = min(k, len(vec))
            qs = q[qi]
            if len(qi) < 20:  # FAISS's SIMD scan beats a skinny matrix product
                _, part = faiss.knn(qs, vec, kk, _faiss_metric(self.metric))
            else:  # rank by |x|^2/2 - q.x (or -q.x), in place on the product
                g = qs @ vec.T
                if cos:
                    np.negative(g, out=g)
                else:
                    np.subtract(half_norm, g, out=g)
                part = np.argpartition(g, kk - 1, axis=1)[:, :kk] if len(vec) > kk else \
                    np.broadcast_to(np.arange(kk), (len(qi), kk))
            ex = self._exact(qs, vec[part])
            cols = slot[:, None] * k + np.arange(kk)[None, :]
            cand_s[qi[:, None], cols] = ex
            cand_i[qi[:, None], cols] = ids[part]
        key = -cand_s if cos else cand_s
        top = np.argpartition(key, k - 1, axis=1)[:, :k] if key.shape[1] > k else \
            np.broadcast_to(np.arange(key.shape[1]), (nq, key.shape[1]))
        top = np.take_along_axis(top, np.argsort(np.take_along_axis(key, top, 1), axis=1, kind="stable"), 1)
        return np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)

    def _search_raw(self, q: np.ndarray, k: int, probe: int | None) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "flat":
            raw, ids = faiss.knn(q, self._vectors, k, _faiss_metric(self.metric))
            return self._refine(q, raw, ids, self._vectors)
        if self.kind == "ivf":
            return self._ivf_batched(q, k, probe or self.probe or 1)
        if self.kind == "ivfpq" and self._vectors is not None:
            kk = min(self.ntotal, k * _PQ_REFINE)
            self._set_probe(probe)
            _, cand = self._index.search(q, kk)
            raw, ids = self._refine(q, np.empty(cand.shape, dtype=np.float32), cand, self._vectors)
            return raw[:, :k], ids[:, :k]
        self._set_probe(probe)
        return self._index.search(q, k)

    def search(self, x: np.ndarray, k: int, *, probe: int | None = None,
               batch_size: int = DEFAULT_BATCH, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of the ``k`` nearest rows, plain Euclidean, ascending.

        Queries go in batches of ``batch_size`` (bounded memory; a tqdm bar with ``progress``).
        Missing neighbours (an approximate index probing too few rows) are ``inf`` and ``-1``.
        Distances of returned rows are computed directly, not from the BLAS expansion
        |q|^2 + |x|^2 - 2 q.x, so an exact copy is at distance 0 whatever the vectors' norms.
        """
        q = prepare_rows(x, self.metric)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, index has {self.dim}")
        k = int(min(k, self.ntotal))
        dist = np.full((len(q), k), np.inf)
        idx = np.full((len(q), k), -1, dtype=np.int64)
        if k <= 0 or len(q) == 0:
            return dist, idx
        try:
            for s in tqdm(range(0, len(q), batch_size), desc=f"search ({self.kind})", unit="batch",
                          disable=not progress, leave=False):
                raw, ii = self._search_raw(np.ascontiguousarray(q[s:s + batch_size]), k, probe)
                ok = ii >= 0
                dist[s:s + len(ii)] = np.where(ok, _to_euclid(raw, self.metric), np.inf)
                idx[s:s + len(ii)] = np.where(ok, ii, -1)
        finally:
            self._set_probe(None)
        return dist, idx

    # -- persistence ----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Metadata recorded in the sidecar (and printed by tools)."""
        return {"format": FORMAT_VERSION, "kind": self.kind, "metric": self.metric, "dim": self.dim,
                "ntotal": self.ntotal, "embedding": self.embedding, "probe": self.probe,
                "nlist": self.nlist, "calibration": self.calibration, "extra": self.extra,
                "faiss": faiss.__version__}

    def save(self, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
        """Write the index (faiss.write_index) and ``<path>.json`` with metadata and sha256.

        A flat index is written as a FAISS IndexFlat, which takes one temporary copy of the rows.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        if self.kind == "flat":
            flat = faiss.IndexFlatIP(self.dim) if self.metric == "cosine" else faiss.IndexFlatL2(self.dim)
            for s in range(0, self.ntotal, 65536):
                flat.add(np.ascontiguousarray(self._vectors[s:s + 65536]))
            faiss.write_index(flat, str(tmp))
            del flat
        else:
            faiss.write_index(self._index, str(tmp))
        meta = self.describe()
        meta["extra"] = {**meta["extra"], **(extra or {})}
        meta.update(sha256=sha256_file(tmp), bytes=tmp.stat().st_size,
                    saved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        os.replace(tmp, path)
        side_tmp = path.with_name(path.name + ".json.tmp")
        side_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(side_tmp, sidecar_path(path))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, embedding: str | None = None,
             metric: str | None = None, mmap: bool = False, verify: bool = True) -> "VectorIndex":
        """Read an index saved by :meth:`save`, checking its sha256 before FAISS parses it.

        ``embedding`` / ``metric``, when given, must match what was recorded (queries embedded
        differently from the index give meaningless distances). ``mmap`` maps a flat index's rows
        from the file instead of reading them into memory.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"index file {path} does not exist")
        side = sidecar_path(path)
        if not side.is_file():
            raise IndexFileError(f"metadata sidecar {side} is missing; save indexes with VectorIndex.save")
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise IndexFileError(f"metadata sidecar {side} is not valid JSON: {exc}") from None
        if meta.get("format") != FORMAT_VERSION:
            raise IndexFileError(f"{side} has format {meta.get('format')!r}, expected {FORMAT_VERSION}")
        if verify:
            got = sha256_file(path)
            if got != meta.get("sha256"):
                raise IndexFileError(f"checksum mismatch for {path}: the file is corrupted or was "
                                     f"modified after it was saved (sha256 {got[:12]}..., "
                                     f"expected {str(meta.get('sha256'))[:12]}...)")
        for key, want in (("embedding", embedding), ("metric", metric)):
            if want is not None and meta.get(key) != want:
                raise IndexFileError(f"{path} was built with {key} {meta.get(key)!r}, not {want!r}")
        flags = 0
        if mmap:
            flags = faiss.IO_FLAG_MMAP_IFC if meta["kind"] == "flat" else faiss.IO_FLAG_MMAP
            flags |= faiss.IO_FLAG_READ_ONLY
        index = faiss.read_index(str(path), flags)
        if index.d != meta["dim"] or index.ntotal != meta["ntotal"]:
            raise IndexFileError(f"{path} holds {index.ntotal} x {index.d} vectors, its sidecar says "
                                 f"{meta['ntotal']} x {meta['dim']}")
        vectors = None
        if meta["kind"] == "flat":
            flat = faiss.downcast_index(index)
            vectors = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
            vectors.flags.writeable = False
        out = cls(meta["kind"], meta["metric"], meta["dim"], meta["ntotal"], meta["embedding"],
                  index=index, vectors=vectors, probe=meta.get("probe"), nlist=meta.get("nlist"),
                  calibration=meta.get("calibration"), extra=meta.get("extra"))
        out.extra["sha256"] = meta.get("sha256")
        return out
