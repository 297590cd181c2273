"""LID-estimation track: query points with known LID*, optionally with a model to estimate from.

Two sources, chosen by ``[data] source``:

``"mixture"`` (default)
    The synthetic mixtures of :mod:`mmh_bench.task.data.synthetic`. The training set is the mixture;
    an MLP diffusion model is trained on it (``[model]``; omit ``steps`` or set ``train = false``
    for no model) so model-based estimators such as FLIPD can be scored. Queries
    (``[queries] n_per_component``) are fresh draws from every continuous component, plus each
    distinct duplicated point (LID* = 0) once.
``"skdim"``
    scikit-dimension's ``BenchmarkManifolds`` (Hein & Audibert; Campadelli et al.), listed in
    ``[[data.manifolds]]`` (``name``, optional ``d``, ``dim``, ``n``). Each manifold is centred,
    zero-padded to the largest ambient dimension and shifted along the first axis so the pieces do
    not touch. The reference cloud is stored as the training set (for estimators that declare
    training-data access); the queries are an independent draw. No model.
``"dgm"``
    The FLIPD paper's synthetic data sets (:mod:`mmh_bench.task.data.lid_paper`: lollipop, string
    within a doughnut, Swiss roll, affine and sinusoidal manifold mixtures), ``[data] dataset``
    and its parameters, ``n`` training points. A model is trained as for ``"mixture"``; the queries
    are ``n_per_component`` fresh draws per piece plus the point of every 0-dimensional piece.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmh_bench.task.build import BuildError, BuildOutput
from mmh_bench.task.data import lid_paper
from mmh_bench.task.data.synthetic import Mixture, component_points, continuous_components, make_mixture
from mmh_bench.task.spec import TaskSpec
from .synthetic import train_mixture_model

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.spec_models import Manifold, MixtureData

#: offset added to the task seed for the query draws (distinct from the training draws)
QUERY_SEED_OFFSET = 2_000_003


def _mixture_queries(data: MixtureData, seed: int, n_per: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fresh draws from each continuous component, plus every distinct duplicated point."""
    xs, lids, comps = [], [], []
    cont = set(continuous_components(data))
    for cid, c in enumerate(data.components):
        if cid in cont:
            pts, lid = component_points(data, cid, n_per, seed, seed + QUERY_SEED_OFFSET)
        else:  # the duplicated / point-mass locations themselves (same draw as training)
            pts, _ = component_points(data, cid, c.n, seed)
            pts, lid = np.unique(pts, axis=0), 0
        xs.append(pts)
        lids.append(np.full(len(pts), lid, dtype=np.float32))
        comps.append(np.full(len(pts), cid, dtype=np.int64))
    return np.concatenate(xs).astype(np.float32), np.concatenate(lids), np.concatenate(comps)


def _build_mixture(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    data = spec.model.data
    mix = make_mixture(data, spec.seed)
    model = None
    if spec.model.model.trained:
        if spec.conditional:
            raise BuildError(f"LID task {spec.name!r}: the model must be unconditional")
        train_mixture_model(spec, mix, progress).save(work / "model")
        model = {"kind": "mlp", "path": "model"}
    x, lid, comp = _mixture_queries(data, spec.seed, spec.model.queries.n_per_component)
    return BuildOutput(samples=x, lid_star=lid, train=mix.x, train_lid=mix.lid, model=model,
                       sample_arrays={"component": comp}, extra_arrays={"train_component": mix.component},
                       extra_meta={"source": "mixture"})


def _skdim_cloud(entries: list[Manifold], seed: int) -> list[tuple[np.ndarray, int]]:
    from skdim.datasets import BenchmarkManifolds  # imported lazily: only this source needs it
    out = []
    for k, e in enumerate(entries):
        gen = BenchmarkManifolds(random_state=int(seed) * 1000 + k)
        truth = gen._dict_truth  # (intrinsic d, ambient dim, description) by name
        name = e.name
        if name not in truth:
            raise BuildError(f"unknown BenchmarkManifolds name {name!r}; known: {sorted(truth)}")
        d = int(e.d if e.d is not None else truth[name][0])
        dim = int(e.dim if e.dim is not None else truth[name][1])
        pts = gen.generate(name, n=e.n, dim=dim, d=d)
        out.append((np.asarray(pts, dtype=np.float64), d))
    return out


def _build_skdim(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    entries = spec.model.data.manifolds
    if not entries:
        raise BuildError(f"LID task {spec.name!r}: [data] source = 'skdim' needs [[data.manifolds]]")
    ref = _skdim_cloud(entries, spec.seed)
    n_query = spec.model.queries.n_per_component
    qry = _skdim_cloud([e.model_copy(update={"n": e.n if n_query is None else n_query}) for e in entries],
                       spec.seed + QUERY_SEED_OFFSET)
    dim = max(p.shape[1] for p, _ in ref)
    # place manifold k at a shift along axis 0 computed from the reference clouds only
    # (half again the reference radius: independent query draws of heavy-tailed pieces reach further)
    gap = spec.model.data.gap
    shift, pos = [], 0.0
    for k, (p, _) in enumerate(ref):
        center = p.mean(axis=0)
        radius = 1.5 * float(np.linalg.norm(p - center, axis=1).max())
        pos += radius if k else 0.0
        shift.append((center, pos))
        pos += radius + gap
    xs: dict[str, list[np.ndarray]] = {"ref": [], "qry": []}
    lids: dict[str, list[np.ndarray]] = {"ref": [], "qry": []}
    comp = []
    for k, ((pr, d), (pq, _)) in enumerate(zip(ref, qry)):
        center, at = shift[k]
        for key, p in (("ref", pr), ("qry", pq)):
            placed = np.zeros((len(p), dim))
            placed[:, :p.shape[1]] = p - center
            placed[:, 0] += at
            xs[key].append(placed)
            lids[key].append(np.full(len(p), d, dtype=np.float32))
        comp.append(np.full(len(pq), k, dtype=np.int64))
    names = [e.name for e in entries]
    return BuildOutput(samples=np.concatenate(xs["qry"]), lid_star=np.concatenate(lids["qry"]),
                       train=np.concatenate(xs["ref"]), train_lid=np.concatenate(lids["ref"]),
                       sample_arrays={"component": np.concatenate(comp)},
                       extra_meta={"source": "skdim", "manifolds": names})


def _build_dgm(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    data = spec.model.data
    try:
        x, lid, comp = lid_paper.draw(data, spec.seed, data.n)
        qx, qlid, qcomp = lid_paper.draw_per_piece(data, spec.seed, spec.model.queries.n_per_component,
                                                   spec.seed + QUERY_SEED_OFFSET)
    except ValueError as exc:
        raise BuildError(f"LID task {spec.name!r}: {exc}") from None
    mix = Mixture(x=x, lid=lid, component=comp)
    model = None
    if spec.model.model.trained:
        train_mixture_model(spec, mix, progress).save(work / "model")
        model = {"kind": "mlp", "path": "model"}
    return BuildOutput(samples=qx, lid_star=qlid, train=x, train_lid=lid, model=model,
                       sample_arrays={"component": qcomp}, extra_arrays={"train_component": comp},
                       extra_meta={"source": "dgm", "dataset": data.dataset})


def build_lid(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    if spec.track != "lid":
        raise BuildError(f"task {spec.name!r}: builder 'lid' needs track = 'lid'")
    source = spec.model.data.source
    if source == "mixture":
        return _build_mixture(spec, work, progress)
    if source == "skdim":
        return _build_skdim(spec, work, progress)
    if source == "dgm":
        return _build_dgm(spec, work, progress)
    raise BuildError(f"task {spec.name!r}: [data] source must be 'mixture', 'skdim' or 'dgm', not {source!r}")
