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

from pathlib import Path
from typing import Any

import numpy as np

from ..build import BuildError, BuildOutput, label_samples, register_builder, training_options
from ..data.synthetic import Mixture, component_points, continuous_components, make_mixture
from ..models.mlp import MLPDenoiser, MLPScoreModel, sample_ddpm, train_denoiser
from ..spec import TaskSpec

#: offset added to the task seed for the fresh draws behind the null copy rate
NULL_SEED_OFFSET = 1_000_003
NULL_DRAWS = 2000
HELDOUT_SEED_OFFSET = 2_000_003


def heldout_draws(data: dict[str, Any], seed: int, mix: Mixture) -> np.ndarray | None:
    """Fresh draws from the continuous components, as many per component as it has training rows:
    the data distribution without its duplicated atoms, the held-out set of C_T (so copies of a
    duplicated point count as copying, as a duplicated image's copies would against a test set)."""
    cids = continuous_components(data)
    if not cids:
        return None
    return np.concatenate([component_points(data, cid, int((mix.component == cid).sum()), seed,
                                            seed + HELDOUT_SEED_OFFSET)[0] for cid in cids]).astype(np.float32)


def null_copy_rate(data: dict[str, Any], seed: int, mix: Mixture, labels_cfg: dict[str, Any],
                   n_per_component: int = NULL_DRAWS) -> dict[str, Any]:
    """Fraction of fresh data draws labelled copies, per continuous component and overall.

    The overall rate weights components by their share of training rows, i.e. it is the copy
    rate of samples from the data distribution restricted to its continuous part.
    """
    cids = continuous_components(data)
    if not cids:
        return {"null_copy_rate": 0.0, "null_copy_rate_per_component": {}}
    draws = [component_points(data, cid, n_per_component, seed, seed + NULL_SEED_OFFSET)[0]
             for cid in cids]
    lab, _ = label_samples(np.concatenate(draws).astype(np.float32), mix.x, mix.lid, labels_cfg)
    per = lab["labels"].reshape(len(cids), n_per_component).mean(axis=1)
    weights = np.array([(mix.component == cid).sum() for cid in cids], dtype=float)
    return {"null_copy_rate": round(float(per @ weights / weights.sum()), 5),
            "null_copy_rate_per_component": {str(cid): round(float(r), 5) for cid, r in zip(cids, per)},
            "null_draws_per_component": n_per_component}


#: a sample farther from the origin than this many times the training set's radius has diverged
DIVERGED_FACTOR = 100.0


def diverged(samples: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Rows that are not finite or lie absurdly far out (a sampler that ran away, e.g. under CFG)."""
    radius = float(np.linalg.norm(train.astype(np.float64), axis=1).max()) + 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        norm = np.linalg.norm(samples.astype(np.float64), axis=1)
    return ~np.isfinite(norm) | (norm > DIVERGED_FACTOR * radius)


def train_mixture_model(spec: TaskSpec, mix: Mixture, progress: bool) -> MLPDenoiser:
    """The task's MLP denoiser, conditional on the mixture's class ids when the spec asks for it."""
    cond = {"cond": mix.cond, "n_classes": mix.n_classes} if spec.conditional else {}
    return train_denoiser(mix.x, **cond, **training_options(spec, progress, hidden=256, depth=4, steps=20000,
                                                            batch_size=256, lr=1e-3, p_uncond=0.1))


def sample_conditions(mix: Mixture, n: int, seed: int) -> np.ndarray:
    """Conditions for ``n`` samples, drawn with the training conditions' frequencies."""
    rng = np.random.default_rng([seed, 2])
    return mix.cond[rng.integers(0, len(mix.cond), n)].astype(np.int64)


@register_builder("synthetic", capabilities=())
def build_synthetic(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    data = spec.section("data")
    mix = make_mixture(data, spec.seed)
    net = train_mixture_model(spec, mix, progress)
    net.save(work / "model")
    s = spec.section("sampling")
    n, steps = int(s.get("n", 2000)), int(s.get("steps", 1000))
    cond = train_cond = None
    if spec.conditional:
        cond, train_cond = sample_conditions(mix, n, spec.seed), mix.cond
        samples = sample_ddpm(MLPScoreModel(net), n, steps=steps, seed=spec.seed + 1,
                              cond=cond.tolist(), guidance=float(s.get("guidance", 1.0)),
                              progress=progress)
    else:
        samples = sample_ddpm(MLPScoreModel(net), n, steps=steps, seed=spec.seed + 1, progress=progress)
    bad = diverged(samples, mix.x)
    if bad.any():  # a diverged sampler must not become rows that break every detector
        raise BuildError(f"task {spec.name!r}: {int(bad.sum())} of {n} generated samples diverged (not "
                         f"finite or over {DIVERGED_FACTOR:g} times the data's radius); lower [model] lr "
                         "or [sampling] guidance")
    meta = null_copy_rate(data, spec.seed, mix, spec.section("labels"))
    if spec.conditional:
        meta.update(n_classes=mix.n_classes, guidance=float(s.get("guidance", 1.0)))
    return BuildOutput(samples=samples, train=mix.x, train_lid=mix.lid, cond=cond, train_cond=train_cond,
                       heldout=heldout_draws(data, spec.seed, mix), model={"kind": "mlp", "path": "model"},
                       extra_arrays={"train_component": mix.component}, extra_meta=meta)
