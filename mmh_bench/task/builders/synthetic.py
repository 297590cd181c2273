"""Synthetic manifold mixtures: data with known LID*, an MLP diffusion model, its samples.

``[model] conditional = true`` trains with condition dropout (``p_uncond``) on the mixture's
condition ids (component id; one id per duplicated point) and samples with classifier-free
guidance (``[sampling] guidance``), conditions drawn with the training conditions' frequencies.

Every build also measures the task's *null copy rate*: fresh draws from the continuous part of
the data distribution, labelled by the same rule against the same training set. It is the rate
at which a model that generalizes perfectly would still be called a copier, so a task is only
informative when it is small next to the memorized fraction.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmh_bench.task.build import BuildError, BuildOutput, training_options
from mmh_bench.task.data.synthetic import (Mixture, component_points, continuous_components, designed_sources,
                                           make_mixture, random_rotation)
from mmh_bench.task.instances import placement_rng
from mmh_bench.task.models.mlp import MLPDenoiser, MLPScoreModel, train_denoiser
from mmh_bench.task.sampler import Sampler, sample_task
from mmh_bench.task.spec import TaskSpec

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.spec_models import MixtureData

#: offsets added to the task seed for the fresh draws behind the labels' chance test, the
#: independent draws that measure the null copy rate, the held-out set of C_T, and the class ids
NULL_SEED_OFFSET = 1_000_003
CHECK_SEED_OFFSET = 3_000_017
HELDOUT_SEED_OFFSET = 2_000_003
COND_STREAM = 4_001
#: random stream of a test instance's public class ids, and the space they are drawn from: far
#: larger than any number of classes and above every dev id (dev ids are 0 .. K-1), so no id of a
#: test instance is a dev instance's id, whatever the secret (a permutation of K ids keeps a
#: class's dev id one time in K)
COND_ID_STREAM = 4_003
COND_ID_LOW, COND_ID_HIGH = 2 ** 16, 2 ** 31
#: fresh draws per generated sample for the chance test (at least ``[labels] null_draws``)
NULL_PER_SAMPLE = 20


def fresh_draws(data: MixtureData, seed: int, mix: Mixture, n: int, draw_seed: int) -> np.ndarray | None:
    """``n`` fresh draws from the continuous components in their training proportions: the data
    distribution without its duplicated atoms (a model that generalizes perfectly samples these)."""
    cids = continuous_components(data)
    if not cids:
        return None
    weights = np.array([(mix.component == cid).sum() for cid in cids], dtype=float)
    counts = np.random.default_rng([draw_seed, 5]).multinomial(n, weights / weights.sum())
    return np.concatenate([component_points(data, cid, int(k), seed, draw_seed)[0]
                           for cid, k in zip(cids, counts)]).astype(np.float32)


def heldout_draws(data: MixtureData, seed: int, mix: Mixture) -> np.ndarray | None:
    """Fresh draws from the continuous components, as many per component as it has training rows:
    the held-out set of C_T (so copies of a duplicated point count as copying, as a duplicated
    image's copies would against a test set)."""
    cids = continuous_components(data)
    if not cids:
        return None
    return np.concatenate([component_points(data, cid, int((mix.component == cid).sum()), seed,
                                            seed + HELDOUT_SEED_OFFSET)[0] for cid in cids]).astype(np.float32)


def source_names(data: MixtureData) -> list[str]:
    """Each component's designed role (its ``role`` key, else kind and index) for the composition audit."""
    return [c.role or f"{c.kind} #{cid}" for cid, c in enumerate(data.components)]


def remap_conditions(mix: Mixture, seed: int) -> np.ndarray:
    """Permute the class ids with a seeded permutation (returned), so an id's value says nothing
    about which component or duplicated point it names."""
    perm = np.random.default_rng([seed, COND_STREAM]).permutation(max(mix.n_classes, 1))
    if mix.cond is not None:
        mix.cond = perm[mix.cond]
    return perm


def condition_ids(spec: TaskSpec, n_classes: int) -> np.ndarray | None:
    """A test instance's public class ids (None for a dev instance): ``n_classes`` distinct ids
    drawn from ``[COND_ID_LOW, COND_ID_HIGH)``, sorted, so embedding row r (class r after
    :func:`remap_conditions`) is named by the r-th smallest id. The order of the ids is then the
    only trace of the classes, and it is the remapping's random permutation, drawn afresh per
    instance; their values are disjoint from every dev id."""
    if spec.instance != "test":
        return None
    rng = np.random.default_rng([spec.seed, COND_ID_STREAM])
    return np.sort(rng.choice(COND_ID_HIGH - COND_ID_LOW, size=max(n_classes, 1), replace=False) + COND_ID_LOW)


@dataclass(frozen=True)
class Placement:
    """A test instance's similarity transform x -> scale * R x + shift of the whole data set."""

    scale: float
    rotation: np.ndarray
    shift: np.ndarray

    def __call__(self, x: np.ndarray | None) -> np.ndarray | None:
        if x is None:
            return None
        return (self.scale * (x.astype(np.float64) @ self.rotation.T) + self.shift).astype(np.float32)


#: candidate shift lengths (times the data's RMS radius) searched for the one that hides the origin;
#: at most 3 radii, because farther out the small models stop memorizing the isolated points
SHIFT_GRID = np.linspace(0.0, 3.0, 61)


def draw_placement(spec: TaskSpec, data: MixtureData, train: np.ndarray, source: np.ndarray) -> Placement | None:
    """The random placement of a test instance (None for dev instances): a Haar rotation, a
    log-uniform scale in ``[placement] scale`` and a shift. ``point_jitter`` moves
    each point component's location first (see :func:`jitter_points`).

    The shift keeps every fixed point of space (the origin, the spec's literal coordinates) from
    telling copies apart. Its direction is drawn from the data's own covariance, so it runs along
    the structure (an isotropic direction in high dimension is orthogonal to every structure and
    would change no distance to first order). Its length is the one on :data:`SHIFT_GRID` (either
    sign, times the data's RMS radius) at which the distance to the origin ranks the designed
    memorization sources (``source``, :func:`designed_sources`) against the other training rows
    at chance (AUROC within 0.005 of 0.5, else nearest to it), the nearest such to ``[placement] shift``: after it, "copies lie nearer to (or
    farther from) the origin" is no rule, and a far reference point ranks by nearly that distance.
    The dev instance keeps the spec's coordinates."""
    rng = placement_rng(spec)
    if rng is None:
        return None
    from sklearn.metrics import roc_auc_score
    p = spec.model.placement
    lo, hi = p.scale
    dim = data.dim
    x = train.astype(np.float64)
    radius = float(np.sqrt((x ** 2).sum(axis=1).mean()))
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    rotation = random_rotation(dim, rng)
    direction = rng.standard_normal(len(x)) @ (x - x.mean(axis=0)) + 1e-9 * rng.standard_normal(dim)
    direction *= radius / np.linalg.norm(direction)
    src = np.asarray(source, dtype=bool)
    target = p.shift
    lengths = np.concatenate([SHIFT_GRID, -SHIFT_GRID])
    near = np.abs(np.abs(lengths) - target)
    if src.any() and not src.all():  # the length whose origin distance ranks sources at chance
        gap = [abs(roc_auc_score(src, -np.linalg.norm(x + t * direction, axis=1)) - 0.5) for t in lengths]
        lengths = lengths[np.lexsort((near, np.round(gap, 2)))]
    else:
        lengths = lengths[np.argsort(near, kind="stable")]
    return Placement(scale=scale, rotation=rotation, shift=scale * (rotation @ (lengths[0] * direction)))


def jitter_points(spec: TaskSpec, data: MixtureData) -> MixtureData:
    """For a test instance, move every ``point`` component by up to ``[placement] point_jitter``."""
    rng = placement_rng(spec)
    jitter = spec.model.placement.point_jitter
    if rng is None or jitter <= 0:
        return data
    comps = []
    for c in data.components:
        if c.kind == "point":
            at = np.asarray(c.at, dtype=float)
            step = rng.standard_normal(len(at))
            step *= jitter * rng.uniform() ** (1 / len(at)) / np.linalg.norm(step)
            c = c.model_copy(update={"at": (at + step).tolist()})
        comps.append(c)
    return data.model_copy(update={"components": comps})


#: a sample farther from the origin than this many times the training set's radius has diverged
DIVERGED_FACTOR = 100.0


def diverged(samples: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Rows that are not finite or lie absurdly far out (a sampler that ran away, e.g. under CFG)."""
    radius = float(np.linalg.norm(train.astype(np.float64), axis=1).max()) + 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        norm = np.linalg.norm(samples.astype(np.float64), axis=1)
    return ~np.isfinite(norm) | (norm > DIVERGED_FACTOR * radius)


def train_mixture_model(spec: TaskSpec, mix: Mixture, progress: bool,
                        class_ids: np.ndarray | None = None) -> MLPDenoiser:
    """The task's MLP denoiser, conditional on the mixture's class ids when the spec asks for it
    (``class_ids``: the public id of each class, mapped inside the model)."""
    cond = {"cond": mix.cond, "n_classes": mix.n_classes} if spec.conditional else {}
    if spec.conditional and class_ids is not None:
        cond["class_ids"] = class_ids.tolist()
    return train_denoiser(mix.x, **cond, **training_options(spec, progress))


def sample_conditions(mix: Mixture, n: int, seed: int) -> np.ndarray:
    """Conditions for ``n`` samples, drawn with the training conditions' frequencies."""
    rng = np.random.default_rng([seed, 2])
    return mix.cond[rng.integers(0, len(mix.cond), n)].astype(np.int64)


def build_synthetic(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    data = jitter_points(spec, spec.model.data)
    mix = make_mixture(data, spec.seed)
    s = spec.model.sampling
    n = s.n
    n_null = max(NULL_PER_SAMPLE * n, spec.model.labels.null_draws)
    null = fresh_draws(data, spec.seed, mix, n_null, spec.seed + NULL_SEED_OFFSET)
    check = fresh_draws(data, spec.seed, mix, n_null, spec.seed + CHECK_SEED_OFFSET)
    heldout = heldout_draws(data, spec.seed, mix)
    place = draw_placement(spec, data, mix.x, designed_sources(data, mix.component))
    if place is not None:  # a test instance: the whole data set moves, distances scale with it
        mix.x, null, check, heldout = place(mix.x), place(null), place(check), place(heldout)
    ids = None
    if spec.conditional:
        remap_conditions(mix, spec.seed)
        ids = condition_ids(spec, mix.n_classes)
    net = train_mixture_model(spec, mix, progress, ids)
    net.save(work / "model")
    cond = train_cond = None
    if spec.conditional:
        cond, train_cond = sample_conditions(mix, n, spec.seed), mix.cond
        if ids is not None:  # the public ids; the model maps them back to its rows
            cond, train_cond = ids[cond], ids[train_cond]
    # [sampling] clip_factor: x0 predictions clamped to that many times the data's largest
    # coordinate (DDIM can run one sample away where a small model extrapolates badly)
    clip = s.clip_factor * float(np.abs(mix.x).max()) if s.clip_factor is not None else None
    sampler = Sampler.from_spec(s, clip=clip)
    samples, noise = sample_task(MLPScoreModel(net), n, spec.seed, sampler,
                                 None if cond is None else cond.tolist(), progress=progress)
    bad = diverged(samples, mix.x)
    if bad.any():  # a diverged sampler must not become rows that break every detector
        raise BuildError(f"task {spec.name!r}: {int(bad.sum())} of {n} generated samples diverged (not "
                         f"finite or over {DIVERGED_FACTOR:g} times the data's radius); lower [model] lr "
                         "or [sampling] guidance")
    meta: dict[str, Any] = {"sampler": sampler.to_meta()}
    if spec.conditional:
        meta.update(n_classes=mix.n_classes)
    return BuildOutput(samples=samples, train=mix.x, train_lid=mix.lid, cond=cond, train_cond=train_cond,
                       heldout=heldout, null_draws=null, null_check=check, train_source=mix.component,
                       source_names=source_names(data), label_scale=1.0 if place is None else place.scale,
                       model={"kind": "mlp", "path": "model"}, sample_arrays={"noise": noise},
                       extra_arrays={"train_component": mix.component}, extra_meta=meta)
