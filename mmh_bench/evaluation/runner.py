"""The runner: tasks x entries -> one result JSON per pair, for any track, isolated failures, resumable.

A run is planned once (:func:`plan_grid`: each task spec with the entries it may serve, judged
before any build), then its pairs run one after another here (:func:`run_plan`) or as tasks of a
Dask cluster (:mod:`.engine`), through the track's protocol (:class:`~.track.Track`). Detection
(``evaluate``) and mitigation (:func:`mmh_bench.mitigation.evaluate.mitigate`) are this runner with
their track.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from mmh_bench.api.detector import Detector
from mmh_bench.registry import get_task, make_detector, parse_ref, registered_entry_points, resolve_tasks, split_refs
from mmh_bench.task.fresh import FreshPool, fill_pool
from mmh_bench.task.instance import TaskInstance
from mmh_bench.task.publish import DEFAULT_INSTANCES, resolve_instances
from mmh_bench.task.spec import TaskSpec
from .detection import DEFAULT_BATCH, DetectionTrack, compute_scores, make_context, result_name
from .sealed import WORKER_ENV, DetectorFailure, PeakMemory, describe_detector
from .sealed.selftest import warn_unsealed
from .track import ISOLATION_CHOICES, SHIPPED_PACKAGE, GridReport, Track, is_shipped, resolve_isolation

log = logging.getLogger(__name__)
__all__ = ["DetectorFailure", "PeakMemory", "GridPlan", "GridReport", "compute_scores", "evaluate", "evaluate_pair",
           "is_shipped_ref", "make_context", "plan_grid", "resolve_detector", "resolve_many", "resolve_isolation",
           "result_name", "run_instances", "run_plan", "ISOLATION_CHOICES", "SHIPPED_PACKAGE", "is_shipped"]


def is_shipped_ref(ref: str, kind: str = "detector") -> bool:
    """Whether a reference (without parameters) names a shipped baseline, judged without importing
    it: ``mmh_bench_baselines.*:Class``, or an entry point (of ``kind``) of the mmh-bench
    distribution itself."""
    if ":" in ref:
        target = ref.rpartition(":")[0]
        return not (target.endswith(".py") or os.sep in target) and target.split(".")[0] == SHIPPED_PACKAGE
    ep = registered_entry_points(kind).get(ref)
    if ep is None:
        return True  # unknown: make_detector reports it, importing nothing
    dist = getattr(ep, "dist", None)
    return ep.value.split(".")[0].split(":")[0] == SHIPPED_PACKAGE and (
        dist is None or dist.name.replace("_", "-").lower() == "mmh-bench")


def resolve_detector(ref: Any, isolation: str = "auto", *, hide: Iterable[str | Path | None] = (),
                     check_seed: int | None = None, kind: str = "detector") -> Any:
    """The detector (with ``kind="mitigator"`` the mitigator) a reference names, for evaluation
    under ``isolation``.

    A reference to code that is not a shipped baseline and will run sealed is never imported here:
    a sandboxed worker describes it (:func:`mmh_bench.evaluation.sealed.describe_detector`) and this returns a
    :class:`~mmh_bench.evaluation.sealed.SealedDetector` stand-in. ``isolation="in-process"`` (trusted code, the
    caller's choice) and shipped baselines import as :func:`~mmh_bench.registry.make_detector` does.
    ``check_seed``: also run the conformance checks in that worker (the stand-in's ``check_report``)."""
    if isolation not in ISOLATION_CHOICES:
        raise ValueError(f"isolation {isolation!r} is not one of {', '.join(ISOLATION_CHOICES)}")
    if not isinstance(ref, str) or isolation == "in-process":
        return make_detector(ref, kind)
    name, params = parse_ref(ref)
    if is_shipped_ref(name, kind):
        return make_detector(ref, kind)
    return describe_detector(name, params, hide=hide, check_seed=check_seed, kind=kind)


def resolve_many(refs: str | Iterable[Any], isolation: str = "auto", *, hide: Iterable[str | Path | None] = (),
                 kind: str = "detector") -> list[Any]:
    """Comma-separated references (or objects; ``"all"``: every registered one of ``kind``), each
    resolved by :func:`resolve_detector`; their names must be unique."""
    refs = split_refs(refs) if isinstance(refs, str) else list(refs)
    if refs == ["all"]:
        refs = sorted(registered_entry_points(kind))
    hide = list(hide)
    # submitted code is described in a sandbox, never imported here (see resolve_detector)
    dets = [resolve_detector(d, isolation, hide=hide, kind=kind) for d in refs]
    names = [result_name(d) if kind == "detector" else d.name for d in dets]
    if len(set(names)) != len(names):
        raise ValueError(f"{kind} names (with their non-default parameters) must be unique in one run: {names}")
    modes = [resolve_isolation(isolation, d) for d in dets]  # a bad mode fails before anything is built
    warn_unsealed(d.name for d, mode in zip(dets, modes) if mode == "sealed" and not is_shipped(d))
    return dets


@dataclass
class GridPlan:
    """What a run evaluates, judged before any build: each spec with the entries it may serve."""
    track: Track
    tasks: list[tuple[TaskSpec, list[Any]]]
    report: GridReport

    @property
    def n_pairs(self) -> int:
        return sum(len(c) for _, c in self.tasks)


def plan_grid(tasks: str | Iterable[str | TaskSpec], entries: str | Iterable[Any], *, track: Track | None = None,
              isolation: str = "auto", hide: Iterable[str | Path | None] = ()) -> GridPlan:
    """Resolve tasks and entries (detectors unless ``track`` says otherwise) and rule out the pairs
    the specs alone exclude; each entry stands for its :meth:`~.track.Track.settings`."""
    if os.environ.get(WORKER_ENV):
        raise RuntimeError("mmh_bench.evaluate was called inside a sealed worker: the detector's file runs "
                           "an evaluation when imported; guard it with `if __name__ == \"__main__\":`")
    if isolation not in ISOLATION_CHOICES:  # a bad mode fails before anything is described or built
        raise ValueError(f"isolation {isolation!r} is not one of {', '.join(ISOLATION_CHOICES)}")
    track = track or DetectionTrack()
    specs = resolve_tasks(tasks) if isinstance(tasks, str) else [
        t if isinstance(t, TaskSpec) else get_task(t) for t in tasks]
    protos = resolve_many(entries, isolation, hide=hide, kind=track.kind)  # unique names, a valid isolation each
    plan = GridPlan(track, [], GridReport())
    for spec in specs:
        candidates = []
        for proto in protos:
            why = track.ruled_out(proto, spec)
            if why:
                plan.report.not_applicable.append((spec.name, track.result_name(proto) if track.kind == "detector"
                                                   else proto.name, why))
            else:
                candidates += track.settings(proto)
        if candidates:  # else nothing can run here: the task is not even built
            plan.tasks.append((spec, candidates))
    return plan


def fill_fresh(plan: GridPlan, instances: Any, *, progress: bool) -> None:
    """With ``instances`` a :class:`~mmh_bench.task.fresh.FreshPool`: build the held-out instances
    the planned tasks lack, here, before any pair runs (their secret never leaves this process)."""
    if isinstance(instances, FreshPool):
        fill_pool([spec for spec, _ in plan.tasks], instances, progress=progress)


def pool_roots(instances: Any) -> list[str]:
    """The fresh pool's folder, for the sandbox to hide (nothing for published instances)."""
    return [instances.root] if isinstance(instances, FreshPool) else []


def task_instances(track: Track, spec: TaskSpec, cache_dir: str | Path | None, published: Any, *,
                   model_override: Any = None, progress: bool = False, build: bool = True) -> list[TaskInstance]:
    """The instances of ``spec`` a run of ``track`` evaluates (published ones verified, else built
    here), with ``model_override``'s model attached (a callable: per instance)."""
    insts = resolve_instances(spec, cache_dir, published=published, progress=progress, build=build)
    for inst in insts:
        attached = model_override(inst) if callable(model_override) else model_override
        if attached is not None:
            inst.set_model(attached)
    return track.select(insts)


def run_instances(track: Track, work: Iterable[tuple[TaskInstance, list[Any]]], results_dir: str | Path,
                  report: GridReport, *, force: bool, progress: bool, opts: dict[str, Any]) -> GridReport:
    """Every (instance, candidate) pair of ``work`` in this process: current results skipped,
    entries the instance cannot serve reported, each result written once."""
    for inst, candidates in work:
        for entry, path in track.pairs(inst, candidates, results_dir, report, force=force):
            track.record(report, path, track.evaluate(inst, entry.clone(), progress=progress, **opts),
                         progress=progress)
    return report.sort()


def run_plan(plan: GridPlan, results_dir: str | Path, *, cache_dir: str | Path | None = None, seed: int = 0,
             batch_size: int = DEFAULT_BATCH, force: bool = False, progress: bool = True, model_override: Any = None,
             isolation: str = "auto", timeout: float | None = None, threads: int = 1,
             instances: str | Path | FreshPool | None = DEFAULT_INSTANCES,
             hide: Iterable[str | Path | None] = ()) -> GridReport:
    """The planned grid, one pair after another in this process (``hide``: more folders sealed
    workers must not see; the cache, results and fresh pool are always hidden)."""
    results_dir = Path(results_dir)
    fill_fresh(plan, instances, progress=progress)
    opts = dict(seed=seed, batch_size=batch_size, isolation=isolation, timeout=timeout, threads=threads,
                hide=[cache_dir, results_dir, *pool_roots(instances), *hide])
    work = ((inst, candidates) for spec, candidates in plan.tasks
            for inst in task_instances(plan.track, spec, cache_dir, instances, model_override=model_override,
                                       progress=progress))
    return run_instances(plan.track, work, results_dir, plan.report, force=force, progress=progress, opts=opts)


def evaluate(tasks: str | Iterable[str | TaskSpec], detectors: str | Iterable[str | Detector],
             results_dir: str | Path, *, cache_dir: str | Path | None = None, seed: int = 0,
             batch_size: int = DEFAULT_BATCH, force: bool = False, progress: bool = True,
             model_override: Any = None, isolation: str = "auto", timeout: float | None = None,
             threads: int = 1, instances: str | Path | FreshPool | None = DEFAULT_INSTANCES) -> GridReport:
    """Evaluate every applicable (task, detector) pair, writing one JSON file per pair atomically.

    Each pair gets a fresh detector cloned from the given one's constructor parameters, so nothing
    fitted on one task reaches the next. Pairs whose current result (same instance data hash,
    detector version and parameters, status ok) already exists are skipped, so an interrupted grid
    resumes where it stopped. ``isolation``: "sealed" scores in a worker that holds only what the
    detector's access grants (sandboxed when bubblewrap works), "in-process" calls it here, "auto"
    seals all but the shipped baselines; ``timeout`` (seconds) and ``threads`` (torch threads) apply
    to sealed workers. A detector reference to code other than a shipped baseline that will run
    sealed is never imported here: a sandboxed worker describes it (:func:`resolve_detector`); an
    import or constructor error raises :class:`~mmh_bench.registry.RegistryError` before anything is built.
    ``instances``: the folder of published instances (the board's); a task whose spec has one there
    is evaluated on it, verified byte for byte, else on this machine's own build (None: always build).
    A :class:`~mmh_bench.task.fresh.FreshPool`: held-out instances, built here from a secret drawn for
    this run where the pool lacks them (:func:`~mmh_bench.task.fresh.fill_pool`); results record kind ``fresh``.
    In parallel on a Dask cluster: :func:`mmh_bench.evaluation.engine.evaluate_parallel`.
    """
    plan = plan_grid(tasks, detectors, isolation=isolation, hide=[cache_dir, results_dir])
    return run_plan(plan, results_dir, cache_dir=cache_dir, seed=seed, batch_size=batch_size, force=force,
                    progress=progress, model_override=model_override, isolation=isolation, timeout=timeout,
                    threads=threads, instances=instances)


def evaluate_pair(inst: TaskInstance, det: Detector, *, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                  progress: bool = False, isolation: str = "auto", timeout: float | None = None,
                  threads: int = 1, hide: Iterable[str | Path | None] = ()) -> Any:
    """One (task, detector) result, typed (:class:`~mmh_bench.leaderboard.schema.MemorizationResult`
    or :class:`~mmh_bench.leaderboard.schema.LIDResult`); any failure of the detector becomes
    ``status: failed``. Options as for :func:`evaluate`."""
    return DetectionTrack().evaluate(inst, det, seed=seed, batch_size=batch_size, progress=progress,
                                     isolation=isolation, timeout=timeout, threads=threads, hide=hide)
