"""Mixtures of manifolds with known local intrinsic dimension (LID*) per point.

Each component of a spec's ``[[data.components]]`` list makes ``n`` training points and their
LID*. Deterministic from the seed. ``copies > 1`` duplicates every point of the component
(data-driven memorization: a duplicate group has LID* = 0 whatever manifold it sits on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass
class Mixture:
    x: np.ndarray  # [n, D] float32
    lid: np.ndarray  # [n] true LID* per row
    component: np.ndarray  # [n] component id per row


def _circle(rng: np.random.Generator, c: dict[str, Any], n: int) -> tuple[np.ndarray, int]:
    latent = c.get("latent", "vonmises")
    if latent == "vonmises":
        ang = rng.vonmises(float(c.get("mu", 0.0)), float(c.get("kappa", 1.0)), n)
    elif latent == "uniform":
        lo, hi = c.get("angle_range", [0.0, 2 * np.pi])
        ang = rng.uniform(float(lo), float(hi), n)
    else:
        raise ValueError(f"circle latent must be 'vonmises' or 'uniform', not {latent!r}")
    r = float(c.get("radius", 1.0))
    return r * np.stack([np.cos(ang), np.sin(ang)], axis=1), 1


def _point(rng: np.random.Generator, c: dict[str, Any], n: int) -> tuple[np.ndarray, int]:
    at = np.asarray(c.get("at", [0.0, 0.0]), dtype=float)
    return np.repeat(at[None, :], n, axis=0), 0


#: kind -> function(rng, component table, n) -> (points in the component's own coordinates, LID*)
COMPONENTS: dict[str, Callable[[np.random.Generator, dict[str, Any], int], tuple[np.ndarray, int]]] = {
    "circle": _circle,
    "point": _point,
}


def embed(points: np.ndarray, dim: int, rng: np.random.Generator, rotate: bool,
          offset: np.ndarray | None) -> np.ndarray:
    """Place points of intrinsic coordinates into R^dim by zero-padding, a random rotation and a shift."""
    k = points.shape[1]
    if k > dim:
        raise ValueError(f"component needs {k} ambient dimensions, task has {dim}")
    out = np.zeros((len(points), dim))
    out[:, :k] = points
    if rotate and dim > 1:
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        out = out @ (q * np.sign(np.diag(r))).T
    if offset is not None:
        out = out + offset
    return out


def make_mixture(data: dict[str, Any], seed: int) -> Mixture:
    """Build the training set described by a spec's ``[data]`` table."""
    dim = int(data["dim"])
    comps = data.get("components")
    if not comps:
        raise ValueError("[data] needs at least one [[data.components]] entry")
    xs, lids, ids = [], [], []
    for cid, c in enumerate(comps):
        kind = c.get("kind")
        if kind not in COMPONENTS:
            raise ValueError(f"component {cid}: unknown kind {kind!r}; known: {sorted(COMPONENTS)}")
        rng = np.random.default_rng([seed, cid])
        n = int(c.get("n", 1))
        copies = int(c.get("copies", 1))
        pts, lid = COMPONENTS[kind](rng, c, n)
        offset = np.asarray(c["offset"], dtype=float) if "offset" in c else None
        pts = embed(pts, dim, rng, bool(c.get("rotate", False)), offset)
        if copies > 1:
            pts = np.repeat(pts, copies, axis=0)
            lid = 0
        xs.append(pts)
        lids.append(np.full(len(pts), lid, dtype=np.float32))
        ids.append(np.full(len(pts), cid, dtype=np.int64))
    return Mixture(np.concatenate(xs).astype(np.float32), np.concatenate(lids), np.concatenate(ids))
