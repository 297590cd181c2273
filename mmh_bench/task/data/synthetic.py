"""Mixtures of manifolds with known local intrinsic dimension (LID*) per point.

Each entry of a spec's ``[[data.components]]`` list (a validated component model) makes ``n`` training points and their LID*:

===========  ==========================================================  =================
kind         what                                                        LID*
===========  ==========================================================  =================
point        a single location ``at`` (repeated ``n`` times)             0
circle       the planar circle (von Mises, uniform or Gaussian angle)    1
sphere       S^d in R^(d+1), uniform or Gaussian around a pole           d
torus        flat torus T^d in R^(2d), or the ring 2-torus in R^3        d
plane        affine d-plane piece (uniform box or Gaussian latent)       d
squiggly     graph of u -> amp * sin(freq * W u + phase), u in R^d       d
===========  ==========================================================  =================

Every component is then placed in R^D by zero padding, an optional random rotation
(``rotate``; absent, ``[data] rotate``) and a shift (``offset`` vector or a random
direction of length ``offset_norm``). ``copies > 1`` duplicates each of the component's points:
each duplicate group is a data-driven memorization source with LID* = 0, whatever manifold it
sits on, and gets its own condition id (as a duplicated web image has its own caption).

Randomness is split in two streams per component so fresh draws can be taken from the *same*
distribution: the geometry (rotation, offsets, warp weights) depends on the task seed only, the
latent draws on ``draw_seed`` (default: the task seed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.spec_models import (CircleComponent, Component, MixtureData, PlaneComponent, PointComponent,
                                            SphereComponent, SquigglyComponent, TorusComponent)


@dataclass
class Mixture:
    x: np.ndarray  # [n, D] float32
    lid: np.ndarray  # [n] true LID* per row
    component: np.ndarray  # [n] component id per row
    #: [n] condition id per row: the component id, or one id per duplicated point (None if unused)
    cond: np.ndarray | None = None
    n_classes: int = 0

    def __len__(self) -> int:
        return len(self.x)


# -- latent densities --------------------------------------------------------------------------
def _box_or_gauss(rng: np.random.Generator, c: Any, n: int, d: int) -> np.ndarray:
    """Latent coordinates in R^d: uniform in [-scale, scale]^d or N(0, scale^2 I)."""
    if c.latent == "uniform":
        return rng.uniform(-c.scale, c.scale, (n, d))
    if c.latent == "gaussian":
        return c.scale * rng.standard_normal((n, d))
    raise ValueError(f"{c.kind} latent must be 'uniform' or 'gaussian', not {c.latent!r}")


def _angles(rng: np.random.Generator, c: TorusComponent, n: int, d: int) -> np.ndarray:
    if c.latent == "uniform":
        return rng.uniform(0.0, 2 * np.pi, (n, d))
    if c.latent == "gaussian":  # wrapped normal around angle mu
        return c.mu + c.scale * rng.standard_normal((n, d))
    raise ValueError(f"torus latent must be 'uniform' or 'gaussian', not {c.latent!r}")


# -- component kinds ---------------------------------------------------------------------------
# Each returns (points in the component's own coordinates [n, k], LID*). ``geom`` is the
# seed-only stream for fixed shape parameters; ``rng`` draws the points.
def _circle(rng: np.random.Generator, c: CircleComponent, n: int,
            geom: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    if c.latent == "vonmises":
        ang = rng.vonmises(c.mu, c.kappa, n)
    elif c.latent == "uniform":
        lo, hi = c.angle_range
        ang = rng.uniform(lo, hi, n)
    elif c.latent == "gaussian":
        ang = c.mu + c.scale * rng.standard_normal(n)
    else:
        raise ValueError(f"circle latent must be 'vonmises', 'uniform' or 'gaussian', not {c.latent!r}")
    return c.radius * np.stack([np.cos(ang), np.sin(ang)], axis=1), 1


def _point(rng: np.random.Generator, c: PointComponent, n: int,
           geom: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    at = np.asarray(c.at, dtype=float)
    return np.repeat(at[None, :], n, axis=0), 0


def _sphere(rng: np.random.Generator, c: SphereComponent, n: int,
            geom: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    d, r, latent = c.d, c.radius, c.latent
    if latent == "uniform":
        g = rng.standard_normal((n, d + 1))
        return r * g / np.linalg.norm(g, axis=1, keepdims=True), d
    if latent == "gaussian":  # exponential map of a Gaussian tangent vector at the north pole
        v = c.scale * rng.standard_normal((n, d))
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        direction = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
        return r * np.concatenate([np.cos(norm), np.sin(norm) * direction], axis=1), d
    raise ValueError(f"sphere latent must be 'uniform' or 'gaussian', not {latent!r}")


def _torus(rng: np.random.Generator, c: TorusComponent, n: int,
           geom: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    embedding = c.embedding
    if embedding == "ring":  # the doughnut in R^3: major radius R, minor radius r
        ang = _angles(rng, c, n, 2)
        big, small = c.R, c.r
        if not 0 < small < big:
            raise ValueError("ring torus needs 0 < r < R")
        ring = big + small * np.cos(ang[:, 1])
        return np.stack([ring * np.cos(ang[:, 0]), ring * np.sin(ang[:, 0]),
                         small * np.sin(ang[:, 1])], axis=1), 2
    if embedding != "flat":
        raise ValueError(f"torus embedding must be 'flat' or 'ring', not {embedding!r}")
    d = c.d
    radii = np.broadcast_to(np.asarray(c.radius, dtype=float), (d,))
    ang = _angles(rng, c, n, d)
    return np.concatenate([radii * np.cos(ang), radii * np.sin(ang)], axis=1), d


def _plane(rng: np.random.Generator, c: PlaneComponent, n: int,
           geom: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    return _box_or_gauss(rng, c, n, c.d), c.d


def _squiggly(rng: np.random.Generator, c: SquigglyComponent, n: int,
              geom: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Graph of a sine warp: (u, amp * sin(freq * u W + phase)); its Jacobian [I; ...] has rank d."""
    d = c.d
    extra = c.extra if c.extra is not None else d
    geom = geom if geom is not None else np.random.default_rng(0)
    w = geom.standard_normal((d, extra)) / np.sqrt(d)
    phase = geom.uniform(0.0, 2 * np.pi, extra)
    u = _box_or_gauss(rng, c, n, d)
    warp = c.amp * np.sin(c.freq * u @ w + phase)
    return np.concatenate([u, warp], axis=1), d


Generator = Callable[..., tuple[np.ndarray, int]]
#: kind -> function(rng, component model, n, geom_rng) -> (points in own coordinates, LID*)
COMPONENTS: dict[str, Generator] = {
    "circle": _circle,
    "point": _point,
    "sphere": _sphere,
    "torus": _torus,
    "plane": _plane,
    "squiggly": _squiggly,
}


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def embed(points: np.ndarray, dim: int, rng: np.random.Generator, rotate: bool,
          offset: np.ndarray | None) -> np.ndarray:
    """Place points of intrinsic coordinates into R^dim by zero-padding, a random rotation and a shift."""
    k = points.shape[1]
    if k > dim:
        raise ValueError(f"component needs {k} ambient dimensions, task has {dim}")
    out = np.zeros((len(points), dim))
    out[:, :k] = points
    if rotate and dim > 1:
        out = out @ random_rotation(dim, rng).T
    if offset is not None:
        out = out + offset
    return out


def _offset(c: Component, dim: int, geom: np.random.Generator) -> np.ndarray | None:
    if c.offset is not None and c.offset_norm is not None:
        raise ValueError("give either offset or offset_norm, not both")
    if c.offset is not None:
        off = np.asarray(c.offset, dtype=float)
        if off.ndim != 1 or len(off) > dim:
            raise ValueError(f"offset must be a vector of length <= {dim}")
        return np.pad(off, (0, dim - len(off)))
    if c.offset_norm is not None:
        v = geom.standard_normal(dim)
        return c.offset_norm * v / np.linalg.norm(v)
    return None


def component_points(data: MixtureData, cid: int, n: int, seed: int,
                     draw_seed: int | None = None) -> tuple[np.ndarray, int]:
    """``n`` draws from component ``cid`` placed in R^D, before duplication, and its LID*."""
    dim = data.dim
    c = data.components[cid]
    if c.kind not in COMPONENTS:
        raise ValueError(f"component {cid}: unknown kind {c.kind!r}; known: {sorted(COMPONENTS)}")
    rng = np.random.default_rng([seed if draw_seed is None else draw_seed, cid])
    geom = np.random.default_rng([seed, cid, 1])
    pts, lid = COMPONENTS[c.kind](rng, c, n, geom)
    # rotation and offset come from the seed-only stream, so fresh draws share the geometry
    offset = _offset(c, dim, geom)
    rotate = c.rotate if c.rotate is not None else data.rotate
    return embed(pts, dim, geom, rotate, offset), lid


def make_mixture(data: MixtureData, seed: int, draw_seed: int | None = None) -> Mixture:
    """Build the training set described by a spec's ``[data]`` table.

    ``draw_seed`` redraws the points from the same distribution (same rotations and offsets).
    Condition ids: one per component, except components with ``copies > 1``, where each
    duplicated point gets its own id; ids are numbered in order of appearance.
    """
    comps = data.components
    if not comps:
        raise ValueError("[data] needs at least one [[data.components]] entry")
    xs, lids, ids, conds = [], [], [], []
    next_class = 0
    for cid, c in enumerate(comps):
        n, copies = c.n, c.copies
        pts, lid = component_points(data, cid, n, seed, draw_seed)
        if copies > 1:
            pts = np.repeat(pts, copies, axis=0)
            lid = 0
            cond = next_class + np.repeat(np.arange(n), copies)
            # a point component is one location whatever its n: one condition
            if c.kind == "point":
                cond = np.full(len(pts), next_class)
            next_class = int(cond.max()) + 1
        else:
            cond = np.full(len(pts), next_class)
            next_class += 1
        xs.append(pts)
        lids.append(np.full(len(pts), lid, dtype=np.float32))
        ids.append(np.full(len(pts), cid, dtype=np.int64))
        conds.append(cond.astype(np.int64))
    return Mixture(np.concatenate(xs).astype(np.float32), np.concatenate(lids), np.concatenate(ids),
                   cond=np.concatenate(conds), n_classes=next_class)


def continuous_components(data: MixtureData) -> list[int]:
    """Ids of components with LID* > 0 that are not duplicated: where chance copies can arise."""
    return [cid for cid, c in enumerate(data.components) if c.kind != "point" and c.copies <= 1]


#: a continuous component with at most this many training points is a designed isolated (OD) source
ISOLATED_MAX_POINTS = 20


def designed_sources(data: MixtureData, component: np.ndarray) -> np.ndarray:
    """Per training row, whether its component is a designed memorization source: a point mass,
    a duplicated set, or an isolated handful of points (at most :data:`ISOLATED_MAX_POINTS`)."""
    flag = np.array([c.kind == "point" or c.copies > 1 or c.n <= ISOLATED_MAX_POINTS for c in data.components])
    return flag[np.asarray(component)]
