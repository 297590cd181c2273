"""The synthetic LID benchmarks of the FLIPD paper (Kamkari et al., NeurIPS 2024), as data definitions.

They follow the data definitions of the authors' code (layer6ai-labs/dgm_geometry,
``data/distributions``: ``Lollipop``, ``Torus`` with ``include_circle``, ``SwissRoll``,
``AffineManifoldMixture``, ``SquigglyManifoldMixture``) and the parameters of its configs
(``conf/dataset/manifolds``), written here from those facts in numpy. Why a second generator
beside :mod:`mmh_bench.task.data.synthetic`: a disagreement with the paper is only a finding if
the data are the paper's.

Every piece is a chart: a latent density and a smooth map ``latent [n, d] -> R^D`` whose
Jacobian has rank d = LID* (``tests/test_lid_paper.py`` checks the rank on noise-free draws).

==================  ======  =====================================================================
dataset             D       pieces (LID*)
==================  ======  =====================================================================
lollipop            2       candy: the disk of radius 1 at (3, 3) (2); stick: the segment from
                            the disk's edge to (1.5, 1.5) (1); dot at (0, 0) (0); weights 4:2:1
torus_circle        3       "a string within a doughnut": the ring torus R = 10, r = 1 (2) and
                            its core circle of radius R (1), half each; angles uniform
swiss_roll          3       scikit-learn's Swiss roll, t = 1.5 pi (1 + 2u), height 21 v (2)
affine_mixture      D       one piece per entry of ``manifold_dims``: a uniform box [-1, 1]^d
                            mapped by a random isometry (U V^T of a Gaussian D x d matrix), set
                            at a vertex of a scaled simplex (``distance_between_modes``)
squiggly_mixture    D       the same, then a sinusoidal diffeomorphism of R^D repeated
                            ``n_transforms`` times: on a random half of the coordinates
                            x + (1 - kappa) sin(f x) / f, a random half negated, a random rotation
==================  ======  =====================================================================

The mixtures standardise each piece by the mean and standard deviation (clamped at >= 1) of 128
calibration draws before moving it to its mode, as the authors' code does; with
``standardize`` (their configs: true) the whole data set is then standardised per coordinate by
a seeded draw of :data:`STANDARDIZE_DRAWS` points (a diagonal affine map: LID* is unchanged).
Pieces are drawn with probabilities given by their weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.spec_models import DGMData

__all__ = ["DATASETS", "Piece", "pieces", "draw", "draw_per_piece"]

#: points of the seeded draw whose per-coordinate mean and std standardise a data set
STANDARDIZE_DRAWS = 20_000
#: calibration draws per mixture piece (the authors' n_calibration)
N_CALIBRATION = 128


@dataclass
class Piece:
    """One manifold of a data set: ``chart(sample(rng, n))`` are n points on it, of LID* ``lid``."""

    lid: int
    weight: float
    sample: Callable[[np.random.Generator, int], np.ndarray]  # -> latent [n, lid]
    chart: Callable[[np.ndarray], np.ndarray]  # latent [n, lid] -> [n, D]


# -- the toys ---------------------------------------------------------------------------------------
def _lollipop(c: DGMData, geom: np.random.Generator) -> tuple[list[Piece], int]:
    centre = np.asarray(c.center_loc, dtype=float)
    radius = c.radius
    end = np.asarray(c.stick_end_loc, dtype=float)
    dot = np.asarray(c.dot_loc, dtype=float)
    if radius <= 0:
        raise ValueError("lollipop radius must be positive")
    dist = float(np.linalg.norm(end - centre))
    if dist <= radius:
        raise ValueError("lollipop stick_end_loc must lie outside the candy")
    start = radius / dist * end + (1 - radius / dist) * centre  # where the stick meets the candy

    def disk(rng: np.random.Generator, n: int) -> np.ndarray:
        r = radius * np.sqrt(rng.uniform(size=n))  # uniform on the disk
        a = rng.uniform(0, 2 * np.pi, n)
        return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)

    ratios = [c.candy_ratio, c.stick_ratio, c.dot_ratio]
    return [
        Piece(2, ratios[0], disk, lambda z: centre + z),
        Piece(1, ratios[1], lambda rng, n: rng.uniform(size=(n, 1)),
              lambda z: z * start + (1 - z) * end),
        Piece(0, ratios[2], lambda rng, n: np.zeros((n, 0)), lambda z: np.repeat(dot[None], len(z), 0)),
    ], 2


def _torus_circle(c: DGMData, geom: np.random.Generator) -> tuple[list[Piece], int]:
    big, small = c.major_r, c.minor_r
    if not 0 < small < big:
        raise ValueError("torus_circle needs 0 < minor_r < major_r")
    mix = c.mix_ratio  # fraction on the circle
    if not 0 <= mix <= 1:
        raise ValueError("torus_circle mix_ratio must be in [0, 1]")

    def circle(z: np.ndarray) -> np.ndarray:
        t = z[:, 0]
        return np.stack([big * np.cos(t), big * np.sin(t), np.zeros_like(t)], axis=1)

    def torus(z: np.ndarray) -> np.ndarray:
        t, p = z[:, 0], z[:, 1]
        ring = big + small * np.cos(p)
        return np.stack([ring * np.cos(t), ring * np.sin(t), small * np.sin(p)], axis=1)

    return [Piece(1, mix, lambda rng, n: rng.uniform(0, 2 * np.pi, (n, 1)), circle),
            Piece(2, 1 - mix, lambda rng, n: rng.uniform(0, 2 * np.pi, (n, 2)), torus)], 3


def _swiss_roll(c: DGMData, geom: np.random.Generator) -> tuple[list[Piece], int]:
    def roll(z: np.ndarray) -> np.ndarray:
        t = 1.5 * np.pi * (1 + 2 * z[:, 0])
        return np.stack([t * np.cos(t), 21.0 * z[:, 1], t * np.sin(t)], axis=1)

    return [Piece(2, 1.0, lambda rng, n: rng.uniform(size=(n, 2)), roll)], 3


# -- the manifold mixtures ----------------------------------------------------------------------------
def _latent(kind: str) -> Callable[[np.random.Generator, int, int], np.ndarray]:
    if kind == "uniform":
        return lambda rng, n, d: rng.uniform(-1.0, 1.0, (n, d))
    if kind == "normal":
        return lambda rng, n, d: rng.standard_normal((n, d))
    if kind == "laplace":
        return lambda rng, n, d: rng.laplace(0.0, 1.0, (n, d))
    raise ValueError(f"sample_distr must be 'uniform', 'normal' or 'laplace', not {kind!r}")


def _modes(k: int, dim: int, distance: float) -> np.ndarray:
    """Mode locations: vertices of a scaled simplex when k <= D (the authors' rule), else k points
    ``distance`` apart on a circle in the first plane (the authors search the radius numerically;
    no shipped task has more pieces than dimensions)."""
    if k <= dim:
        return (np.eye(dim)[:k] - 0.5) / np.sqrt(2.0) * distance
    theta = np.linspace(0, 2 * np.pi, k + 1)[:-1]
    radius = distance / (2 * np.sin(np.pi / k))  # neighbouring modes `distance` apart
    out = np.zeros((k, dim))
    out[:, 0], out[:, 1] = radius * np.cos(theta), radius * np.sin(theta)
    return out


def _sinusoidal(dim: int, repeat: int, freq: float, kappa: float,
                geom: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """x -> (masked sine warp, masked sign flip, rotation) x repeat: a diffeomorphism of R^D."""
    if not 0 < kappa <= 1:
        raise ValueError("kappa_control must be in (0, 1]: otherwise the map is not a diffeomorphism")
    if freq <= 0:
        raise ValueError("frequency must be positive")
    masks = geom.integers(0, 2, (2 * repeat, dim)).astype(bool)
    rots = [np.linalg.qr(geom.standard_normal((dim, dim)))[0] for _ in range(repeat)]

    def warp(x: np.ndarray) -> np.ndarray:
        for i in range(repeat):
            x = np.where(masks[2 * i], x, x + (1 - kappa) * np.sin(freq * x) / freq)
            x = np.where(masks[2 * i + 1], x, -x)
            x = x @ rots[i]
        return x

    return warp


def _mixture(c: DGMData, geom: np.random.Generator, squiggly: bool) -> tuple[list[Piece], int]:
    dims = list(c.manifold_dims or [])
    dim = c.ambient_dim or 0
    if not dims or dim < 1 or any(d < 1 or d > dim for d in dims):
        raise ValueError(f"manifold_dims must be non-empty, each in [1, ambient_dim = {dim}], got {dims}")
    probs = c.mixture_probs or [1.0] * len(dims)
    if len(probs) != len(dims) or min(probs) < 0 or sum(probs) <= 0:
        raise ValueError("mixture_probs must give one non-negative weight per manifold")
    latent = _latent(c.sample_distr)
    modes = _modes(len(dims), dim, c.distance_between_modes)
    out = []
    for i, d in enumerate(dims):
        u, _, vt = np.linalg.svd(geom.standard_normal((dim, d)), full_matrices=False)
        iso = u @ vt  # D x d, orthonormal columns: the 'random-rotation' projection
        warp = (_sinusoidal(dim, c.n_transforms, c.frequency, c.kappa_control, geom) if squiggly
                else (lambda x: x))
        calib = warp(latent(geom, N_CALIBRATION, d) @ iso.T)
        mean, std = calib.mean(0), np.maximum(calib.std(0, ddof=1), 1.0)

        def chart(z: np.ndarray, iso=iso, warp=warp, mean=mean, std=std, mode=modes[i]) -> np.ndarray:
            return (warp(z @ iso.T) - mean) / std + mode

        out.append(Piece(d, float(probs[i]), lambda rng, n, d=d: latent(rng, n, d), chart))
    return out, dim


DATASETS: dict[str, Callable[[DGMData, np.random.Generator], tuple[list[Piece], int]]] = {
    "lollipop": _lollipop,
    "torus_circle": _torus_circle,
    "swiss_roll": _swiss_roll,
    "affine_mixture": lambda c, g: _mixture(c, g, squiggly=False),
    "squiggly_mixture": lambda c, g: _mixture(c, g, squiggly=True),
}
#: the authors' configs standardise the mixtures, not the toys (``[data] standardize`` absent)
STANDARDIZE_BY_DEFAULT = frozenset({"affine_mixture", "squiggly_mixture"})


def pieces(data: DGMData, seed: int) -> tuple[list[Piece], int]:
    """The pieces of ``data.dataset`` (geometry from ``seed`` only) and the ambient dimension D,
    standardised when the data set asks for it."""
    name = data.dataset
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    geom = np.random.default_rng([int(seed), 7])
    ps, dim = DATASETS[name](data, geom)
    if data.standardize if data.standardize is not None else name in STANDARDIZE_BY_DEFAULT:
        x, _, _ = _draw(ps, STANDARDIZE_DRAWS, np.random.default_rng([int(seed), 8]))
        mean, std = x.mean(0), x.std(0)
        std = np.where(std > 0, std, 1.0)
        ps = [Piece(p.lid, p.weight, p.sample, lambda z, f=p.chart: (f(z) - mean) / std) for p in ps]
    return ps, dim


def _draw(ps: list[Piece], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = np.array([p.weight for p in ps], dtype=float)
    comp = rng.choice(len(ps), size=n, p=w / w.sum())
    xs, lids, comps = [], [], []
    for k, p in enumerate(ps):
        m = int((comp == k).sum())
        if m:
            xs.append(p.chart(p.sample(rng, m)))
            lids.append(np.full(m, p.lid, dtype=np.float32))
            comps.append(np.full(m, k, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(lids), np.concatenate(comps)


def draw(data: DGMData, seed: int, n: int, draw_seed: int | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` points of the data set, pieces chosen by weight: ``(x [n, D] float32, LID*, piece id)``."""
    if n < 1:
        raise ValueError(f"need at least one point, got n = {n}")
    ps, _ = pieces(data, seed)
    x, lid, comp = _draw(ps, int(n), np.random.default_rng([int(seed if draw_seed is None else draw_seed), 9]))
    return x.astype(np.float32), lid, comp


def draw_per_piece(data: DGMData, seed: int, n_per: int, draw_seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_per`` fresh points from every piece of positive dimension and the point of every
    0-dimensional piece once (the LID track's queries)."""
    ps, _ = pieces(data, seed)
    rng = np.random.default_rng([int(draw_seed), 10])
    xs, lids, comps = [], [], []
    for k, p in enumerate(ps):
        m = n_per if p.lid > 0 else 1
        xs.append(p.chart(p.sample(rng, m)))
        lids.append(np.full(m, p.lid, dtype=np.float32))
        comps.append(np.full(m, k, dtype=np.int64))
    return np.concatenate(xs).astype(np.float32), np.concatenate(lids), np.concatenate(comps)
