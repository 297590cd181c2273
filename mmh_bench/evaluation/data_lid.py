"""Data-side local intrinsic dimension (LID) from nearest neighbours, on any point set.

Four classical estimators, each computed per query point from its ``k`` nearest neighbours (found
with an exact FAISS index, distances recomputed in float64):

- :func:`lpca`  local PCA, Fukunaga-Olsen rule: eigenvalues above ``alpha`` times the largest.
- :func:`mle`   Levina-Bickel maximum likelihood, ``(k - 1) / sum_j log(R_k / R_j)``.
- :func:`twonn` TwoNN (Facco et al. 2017) fitted inside the neighbourhood: the slope of
  ``-log(1 - F(mu))`` against ``log mu``, ``mu = r2 / r1``, largest ``discard_fraction`` dropped.
- :func:`ess`   expected simplex skewness (Johnsson et al. 2015), version 'a', d = 1.

They follow scikit-dimension's pointwise definitions (``lPCA().fit_pw``, ``MLE().fit``,
``TwoNN().fit_pw``, ``ESS().fit``: the neighbourhood of a point excludes the point itself) and
agree with them to floating-point precision where the neighbour sets agree
(``tests/test_detectors_lid.py``), but work on all neighbourhoods at once (batched linear
algebra instead of one scikit-learn fit per point), which is what makes them usable as
per-sample detectors. Degenerate neighbourhoods are defined rather than NaN: a neighbourhood of
identical points (a point mass) has LID 0.

``data`` may be an array ``[n, ...]`` or a prebuilt :class:`KNNIndex` (reuse it across calls).
With ``queries=None`` every row of ``data`` is a query and its own row is excluded; with
explicit ``queries`` pass ``exclude`` (the row of ``data`` each query is, or -1) when the queries
are themselves part of ``data``.
"""
from __future__ import annotations

from typing import Iterator

from mmh_bench.retrieval._faiss import faiss
import numpy as np
from scipy.special import gammaln

__all__ = ["KNNIndex", "knn", "lpca", "mle", "twonn", "ess", "estimate", "METHODS",
           "ess_reference"]

#: neighbourhood elements (queries x k x dim) materialised at once
_CHUNK_ELEMS = 4_000_000


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    return x.reshape(len(x), -1)


class KNNIndex:
    """Exact Euclidean k-nearest-neighbour search over a fixed point set (FAISS flat index).

    FAISS ranks in float32; the returned distances are recomputed in float64 from the
    coordinates, so estimators built on them match float64 references.
    """

    def __init__(self, data: np.ndarray) -> None:
        self.data = np.ascontiguousarray(_rows(data), dtype=np.float64)
        self._f32 = np.ascontiguousarray(self.data, dtype=np.float32)
        self._index = faiss.IndexFlatL2(self.data.shape[1])
        self._index.add(self._f32)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def search(self, queries: np.ndarray | None = None, k: int = 20,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of the ``k`` nearest rows, ascending, float64 / int64.

        ``queries=None`` searches the data's own rows, each excluding itself. ``exclude[i]`` is
        a row never returned for query ``i`` (-1 for none). ``k`` is clipped to what exists.
        """
        if queries is None:
            q = self.data
            exclude = np.arange(len(self.data))
        else:
            q = np.asarray(_rows(queries), dtype=np.float64)
            if q.shape[1] != self.dim:
                raise ValueError(f"queries have dimension {q.shape[1]}, index has {self.dim}")
        n_avail = len(self) - (1 if exclude is not None else 0)
        k = int(max(0, min(k, n_avail)))
        if k == 0 or len(q) == 0:
            return np.zeros((len(q), k)), np.zeros((len(q), k), dtype=np.int64)
        extra = 1 if exclude is not None else 0
        _, idx = self._index.search(np.ascontiguousarray(q, dtype=np.float32), k + extra)
        idx = idx.astype(np.int64)
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=np.int64).reshape(-1)
            drop = idx == exclude[:, None]
            # a query whose own row is not among the k + 1 (many exact duplicates) drops the last
            first = drop.argmax(axis=1)
            first[~drop.any(axis=1)] = k
            keep = np.ones_like(idx, dtype=bool)
            keep[np.arange(len(idx)), first] = False
            idx = idx[keep].reshape(len(idx), k)
        dist = np.sqrt(((self.data[idx] - q[:, None, :]) ** 2).sum(-1)) if q.shape[1] * k * len(q) <= \
            _CHUNK_ELEMS else _chunked_dist(self.data, q, idx)
        order = np.argsort(dist, axis=1, kind="stable")
        return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def _chunked_dist(data: np.ndarray, q: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.empty(idx.shape)
    step = max(1, _CHUNK_ELEMS // (idx.shape[1] * data.shape[1]))
    for s in range(0, len(q), step):
        out[s:s + step] = np.sqrt(((data[idx[s:s + step]] - q[s:s + step, None, :]) ** 2).sum(-1))
    return out


def knn(data: np.ndarray | KNNIndex, k: int, queries: np.ndarray | None = None,
        exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Functional form of :meth:`KNNIndex.search`."""
    index = data if isinstance(data, KNNIndex) else KNNIndex(data)
    return index.search(queries, k, exclude)


def _neighbourhoods(index: KNNIndex, idx: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Chunks of neighbour coordinates ``[c, k, dim]`` (float64)."""
    k, dim = idx.shape[1], index.dim
    step = max(1, _CHUNK_ELEMS // max(1, k * dim))
    for s in range(0, len(idx), step):
        sl = slice(s, min(s + step, len(idx)))
        yield sl, index.data[idx[sl]]


#: spread (squared, relative to the neighbourhood's squared norm) below which a neighbourhood
#: is a point mass: centring identical float64 rows leaves rounding residue of order 1e-32
_POINT_MASS_REL = 1e-24


def _point_mass(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Which neighbourhoods ``v`` (centred: ``c``) are identical points up to rounding."""
    spread = (c ** 2).sum(axis=(1, 2))
    scale = (v ** 2).sum(axis=(1, 2))
    return spread <= _POINT_MASS_REL * scale


def _centred_gram(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram matrices of the mean-centred neighbourhoods, and which neighbourhoods are point masses."""
    c = v - v.mean(axis=1, keepdims=True)
    return np.einsum("nid,njd->nij", c, c), _point_mass(v, c)


def _spectrum(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Covariance eigenvalues of each neighbourhood, descending (via the smaller Gram side)."""
    c = v - v.mean(axis=1, keepdims=True)
    k, dim = v.shape[1], v.shape[2]
    g = np.einsum("nid,njd->nij", c, c) if dim > k else np.einsum("nid,nie->nde", c, c)
    ev = np.linalg.eigvalsh(g)[:, ::-1] / max(k - 1, 1)
    return ev, _point_mass(v, c)


def _setup(data: np.ndarray | KNNIndex, queries: np.ndarray | None, k: int,
           exclude: np.ndarray | None) -> tuple[KNNIndex, np.ndarray, np.ndarray]:
    index = data if isinstance(data, KNNIndex) else KNNIndex(data)
    dist, idx = index.search(queries, k, exclude)
    return index, dist, idx


def lpca(data: np.ndarray | KNNIndex, queries: np.ndarray | None = None, *, k: int = 20,
         alpha: float = 0.05, exclude: np.ndarray | None = None) -> np.ndarray:
    """Local PCA (Fukunaga-Olsen): covariance eigenvalues above ``alpha`` x the largest.

    Matches ``skdim.id.lPCA(ver="FO", alphaFO=alpha).fit_pw(X, n_neighbors=k)``.
    A neighbourhood of identical points has no positive eigenvalue: LID 0.
    """
    index, _, idx = _setup(data, queries, k, exclude)
    out = np.zeros(len(idx))
    if idx.shape[1] < 2:
        return out
    for sl, v in _neighbourhoods(index, idx):
        ev, degenerate = _spectrum(v)
        est = (ev > alpha * ev[:, :1]).sum(axis=1)
        out[sl] = np.where(degenerate, 0, est)
    return out


def mle(data: np.ndarray | KNNIndex, queries: np.ndarray | None = None, *, k: int = 20,
        exclude: np.ndarray | None = None) -> np.ndarray:
    """Levina-Bickel MLE ``(k - 1) / sum_j log(R_k / R_j)`` over the k neighbour distances.

    Matches ``skdim.id.MLE().fit(X, n_neighbors=k).dimension_pw_``. A neighbour at distance 0
    (a duplicate) gives 0; all neighbours equidistant gives the ambient dimension.
    """
    index, dist, _ = _setup(data, queries, k, exclude)
    if dist.shape[1] < 2:
        return np.zeros(len(dist))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.log(dist[:, -1:] / dist).sum(axis=1)
        d = (dist.shape[1] - 1) / s
    d[dist[:, -1] == 0] = 0.0  # every neighbour at distance 0: a point mass
    d[~np.isfinite(d)] = index.dim
    return d


def twonn(data: np.ndarray | KNNIndex, queries: np.ndarray | None = None, *, k: int = 20,
          discard_fraction: float = 0.1, exclude: np.ndarray | None = None) -> np.ndarray:
    """TwoNN fitted on each query's neighbourhood (linear fit through the origin).

    Matches ``skdim.id.TwoNN(discard_fraction).fit_pw(X, n_neighbors=k)``: inside the
    neighbourhood every point's ``mu = r2 / r1`` is computed among the neighbourhood's points,
    ratios with ``r1 = 0`` are dropped, the largest ``discard_fraction`` of the rest discarded.
    Fewer than two usable ratios (e.g. a point mass) gives 0.
    """
    index, _, idx = _setup(data, queries, k, exclude)
    out = np.zeros(len(idx))
    kk = idx.shape[1]
    if kk < 3:
        return out
    for sl, v in _neighbourhoods(index, idx):
        g, degenerate = _centred_gram(v)
        sq = np.einsum("nii->ni", g)
        d2 = np.maximum(sq[:, :, None] + sq[:, None, :] - 2 * g, 0.0)
        d2[d2 <= _POINT_MASS_REL * sq.sum(1)[:, None, None]] = 0.0  # rounding residue of duplicates
        d2[:, np.arange(kk), np.arange(kk)] = np.inf
        part = np.sqrt(np.sort(d2, axis=2)[:, :, :2])
        r1, r2 = part[..., 0], part[..., 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            logmu = np.log(r2 / r1)
        valid = np.isfinite(logmu)
        logmu = np.where(valid, logmu, np.inf)
        logmu.sort(axis=1)
        n_valid = valid.sum(axis=1)
        n_keep = (n_valid * (1 - discard_fraction)).astype(np.int64)
        j = np.arange(kk)[None, :]
        use = j < n_keep[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            femp = (j + 1) / n_valid[:, None]
            y = np.where(use, -np.log(1 - np.where(use, femp, 0.0)), 0.0)
            x = np.where(use, logmu, 0.0)
            slope = (x * y).sum(axis=1) / (x * x).sum(axis=1)
        slope[(n_keep < 2) | ~np.isfinite(slope) | degenerate] = 0.0
        out[sl] = slope
    return out


def ess_reference(n_max: int) -> np.ndarray:
    """Expected simplex skewness (version 'a', d = 1) of isotropic data in dimension 1..n_max.

    ``E|sin angle|`` between two isotropic vectors in R^n:
    ``Gamma(n/2)^2 / (Gamma((n+1)/2) Gamma((n-1)/2))``, 0 for n = 1.
    """
    n = np.arange(1, n_max + 1, dtype=float)
    out = np.zeros(n_max)
    m = n >= 2
    out[m] = np.exp(2 * gammaln(n[m] / 2) - gammaln((n[m] + 1) / 2) - gammaln((n[m] - 1) / 2))
    return out


def _ess_invert(essval: np.ndarray, ref: np.ndarray) -> np.ndarray:
    i = np.searchsorted(ref, essval, side="right")  # bisect_right, as scikit-dimension does
    i = np.clip(i, 1, len(ref) - 1)
    frac = (essval - ref[i - 1]) / (ref[i] - ref[i - 1])
    return i + frac


def ess(data: np.ndarray | KNNIndex, queries: np.ndarray | None = None, *, k: int = 20,
        exclude: np.ndarray | None = None, max_pairs: int = 5000, seed: int = 0) -> np.ndarray:
    """Expected simplex skewness, version 'a' with d = 1 (Johnsson et al. 2015).

    For the mean-centred neighbour vectors, ``sum |a||b| sin(a, b) / sum |a||b|`` over pairs,
    inverted through :func:`ess_reference` with linear interpolation between integer
    dimensions. With ``k (k - 1) / 2 <= max_pairs`` every pair is used and the result matches
    ``skdim.id.ESS().fit(X, n_neighbors=k).dimension_pw_``; otherwise ``max_pairs`` pairs are
    drawn once with ``seed``. Identical neighbours (a point mass) give 0.
    """
    index, _, idx = _setup(data, queries, k, exclude)
    out = np.zeros(len(idx))
    kk = idx.shape[1]
    if kk < 2:
        return out
    ii, jj = np.triu_indices(kk, 1)
    if len(ii) > max_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(len(ii), max_pairs, replace=False))
        ii, jj = ii[pick], jj[pick]
    ref = ess_reference(max(64, 4 * index.dim))
    for sl, v in _neighbourhoods(index, idx):
        g, degenerate = _centred_gram(v)
        gii, gjj, gij = g[:, ii, ii], g[:, jj, jj], g[:, ii, jj]
        vol = np.sqrt(np.abs(gii * gjj - gij ** 2)).sum(axis=1)
        weight = np.sqrt(gii * gjj).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            val = vol / weight
        est = _ess_invert(np.nan_to_num(val, nan=0.0), ref)
        est[~(weight > 0) | degenerate] = 0.0
        out[sl] = est
    return out


METHODS = {"lpca": lpca, "mle": mle, "twonn": twonn, "ess": ess}


def estimate(method: str, data: np.ndarray | KNNIndex, queries: np.ndarray | None = None,
             **kwargs) -> np.ndarray:
    """Dispatch by name: ``estimate("mle", X, k=20)``."""
    if method not in METHODS:
        raise ValueError(f"unknown LID method {method!r}; expected one of {sorted(METHODS)}")
    return METHODS[method](data, queries, **kwargs)
