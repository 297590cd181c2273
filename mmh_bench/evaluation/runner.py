"""The evaluator: tasks x detectors -> one result JSON per pair, isolated failures, resumable.

Longer than ~400 lines: the grid's planning, pair evaluation and result writing are one
protocol that the serial loop and the parallel engine share; split, each half would import the other.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from sklearn.metrics import roc_curve
from tqdm.auto import tqdm

from mmh_bench.api.context import Context
from mmh_bench.api.detector import Batch, Detector, LIDEstimator, detector_group
from mmh_bench.files import write_json
from mmh_bench.leaderboard.schema import SCHEMA_VERSION, validate_result
from mmh_bench.common.paths import canonical_relpath
from mmh_bench.registry import (BUILDER_CAPABILITIES, format_ref, get_task, make_detector, parse_ref,
                                registered_entry_points, resolve_tasks, split_refs)
from mmh_bench.task.instance import SUBTYPES, TaskInstance
from mmh_bench.task.fresh import FreshPool, fill_pool
from mmh_bench.task.publish import DEFAULT_INSTANCES, resolve_instances
from mmh_bench.task.spec import TaskSpec, canonical_json
from mmh_bench.threads import limited_threads
from .metrics import lid_metrics, memorization_metrics
from mmh_bench.common.provenance import provenance
from .sealed.selftest import warn_unsealed
from .sealed import (WORKER_ENV, DetectorFailure, PeakMemory, SealError, StandIn, WorkerFailure, describe_detector,
                     granted, isolation_mode, run_job, run_sealed)

log = logging.getLogger(__name__)

DEFAULT_BATCH = 512
ROC_POINTS = 200
#: below this FPR a stored ROC curve keeps every vertex (the TPR@FPR targets are 0.1%, 1%, 5%)
ROC_LOW_FPR = 0.05
#: ``evaluate(isolation=...)``: "auto" seals every detector but the shipped baselines
ISOLATION_CHOICES = ("auto", "sealed", "in-process")
SHIPPED_PACKAGE = "mmh_bench_baselines"
__all__ = ["DetectorFailure", "PeakMemory", "GridPlan", "GridReport", "applicable", "compute_scores", "evaluate",
           "evaluate_pair", "failed_result", "is_shipped_ref", "make_context", "plan_grid", "resolve_detector",
           "resolve_isolation", "resolve_many", "result_name", "result_path", "ruled_out", "run_plan"]


def result_path(results_dir: Path, inst: TaskInstance, detector: str) -> Path:
    """``<results>/<task>/v<version>/<instance id>/<detector>.json``: one folder per instance, so
    results of different instances never overwrite or pass for one another."""
    return Path(results_dir) / canonical_relpath(inst.spec.name, inst.spec.version, detector,
                                                 inst.instance_info()["id"])


#: longest result name (the schema's limit on names, which become file names)
MAX_RESULT_NAME = 64


def result_name(det: Any) -> str:
    """The name a detector's results go by: its own, followed in ``--detectors`` syntax by every
    parameter its constructor sets away from the default (``cfg-norm(n_steps=5)``), so two
    configurations of one detector are two results of an instance, never one overwriting the other,
    and the name runs again as written. A sealed stand-in (a submission: one configuration) keeps
    its name."""
    if isinstance(det, StandIn):
        return det.name
    sig = inspect.signature(type(det).__init__).parameters
    changed = {k: v for k, v in det.params().items()
               if k not in sig or sig[k].default is inspect.Parameter.empty or sig[k].default != v}
    name = format_ref(det.name, changed)
    if len(name) <= MAX_RESULT_NAME and "/" not in name and "\\" not in name:
        return name
    # too long for a file name, or a path among the values: the parameters' digest stands in
    digest = hashlib.sha256(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{det.name}~{digest}"


def detector_source(det: Any) -> str:
    if isinstance(det, StandIn):
        return det.sealed_source
    cls = type(det)
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass(frozen=True)
class TaskOffer:
    """What a task offers a detector. Read off the spec before a build (``None``: not known yet)
    or off the built instance; :func:`why_not` judges both with the same rules."""
    track: str
    family: str
    has_model: bool
    conditional: bool
    has_train: bool | None = None
    replayable: bool | None = None
    #: the score model's capabilities, asked only when a detector requires some (it may load the model)
    capabilities: Callable[[], Iterable[str] | None] = lambda: None
    #: the built score model, asked only when a detector checks it (``Detector.unsuited_model``)
    model: Callable[[], Any] = lambda: None


def why_not(det: Detector, offer: TaskOffer) -> str | None:
    """Why the task cannot serve the detector (or mitigator), else None."""
    if offer.track == "lid" and not isinstance(det, LIDEstimator):
        return "LID-track tasks need an LID estimator"
    unsuited = getattr(det, "unsuited_families", {})
    if offer.family in unsuited:
        return unsuited[offer.family]
    if det.access.grants_model() and not offer.has_model:
        return "task has no score model"
    if det.access.grants_cond() and not offer.conditional:
        return "detector needs conditions; task is unconditional"
    if det.access.grants_train() and offer.has_train is False:
        return "task has no training set"
    if det.access.grants_generation() and offer.replayable is False:
        return "task keeps no replayable generation (initial noise and sampler)"
    caps = offer.capabilities() if det.requires else None
    if caps is not None and not set(det.requires) <= set(caps):
        return f"model lacks {', '.join(sorted(set(det.requires) - set(caps)))}"
    check = getattr(type(det), "unsuited_model", Detector.unsuited_model)
    if check is not Detector.unsuited_model:
        model = offer.model()
        if model is not None:
            return det.unsuited_model(model)
    return None


def ruled_out(det: Detector, spec: TaskSpec) -> str | None:
    """Why the spec alone rules the detector out (no build needed to know), else None: a
    prediction that saves builds; :func:`applicable` judges the built instance."""
    return why_not(det, TaskOffer(track=spec.track, family=spec.family, has_model=bool(spec.section("model")),
                                  conditional=spec.conditional,
                                  capabilities=lambda: BUILDER_CAPABILITIES.get(spec.builder)))


def applicable(det: Detector, inst: TaskInstance) -> tuple[bool, str]:
    """Whether the built task offers what the detector needs; the reason when it does not (an
    instance attached by hand can carry conditions or a model its spec lacks)."""
    why = why_not(det, TaskOffer(
        track=inst.spec.track, family=inst.spec.family,
        has_model=bool(inst.meta.get("model")) or inst.attached_model is not None,
        conditional=inst.info().conditional, has_train="train" in inst.arrays,
        replayable=inst.noise is not None and inst.sampler() is not None,
        capabilities=lambda: getattr(inst.score_model(), "capabilities", ()),
        model=inst.score_model))
    return why is None, why or ""


def _is_current(path: Path, inst: TaskInstance, det: Detector) -> bool:
    """An ok result for this very instance (data hash), detector version and parameters."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (old.get("status") == "ok" and old.get("task_hash") == inst.spec.hash
            and (old.get("instance") or {}).get("data_hash") == inst.data_hash
            and old.get("detector_version") == det.version
            and canonical_json(old.get("detector_params")) == canonical_json(det.params()))


def is_shipped(det: Any) -> bool:
    """A baseline (detector or mitigator) shipped with mmh-bench: trusted code, so it may run in
    the evaluator's process."""
    return not isinstance(det, StandIn) and type(det).__module__.split(".")[0] == SHIPPED_PACKAGE


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
    names = [result_name(d) for d in dets]
    if len(set(names)) != len(names):
        raise ValueError(f"{kind} names (with their non-default parameters) must be unique in one run: {names}")
    modes = [resolve_isolation(isolation, d) for d in dets]  # a bad mode fails before anything is built
    warn_unsealed(d.name for d, mode in zip(dets, modes) if mode == "sealed" and not is_shipped(d))
    return dets


def resolve_isolation(isolation: str, det: Any) -> str:
    """``"sealed"`` or ``"in-process"`` for ``det`` under the requested mode."""
    if isolation not in ISOLATION_CHOICES:
        raise ValueError(f"isolation {isolation!r} is not one of {', '.join(ISOLATION_CHOICES)}")
    if isinstance(det, StandIn):  # a stand-in holds no code to run here
        return "sealed"
    if isolation == "auto":  # in-process is faster for trusted code (benchmarks/sealed_cost.py)
        return "in-process" if is_shipped(det) else "sealed"
    return isolation


def make_context(det: Any, inst: TaskInstance, *, seed: int, n: int | None = None,
                 generating: bool = False) -> tuple[Context, Any]:
    """The context ``det`` gets on ``inst`` in this process, and the score model behind it (or None);
    a sealed worker builds the same from its view (both take :func:`~mmh_bench.evaluation.sealed.granted`).
    ``generating`` (a mitigator): its samples are the first ``n`` initial noises, not the generations."""
    access = det.access
    model = inst.score_model() if access.grants_model() else None
    rows = granted(inst, access, n=n, generating=generating)
    ctx = Context(det.name, access, inst.info(), seed=seed, model=model,
                  train_index=inst.train_index if access.grants_train() else None, extras=inst.extras,
                  samples=Batch(**rows), sampler=inst.sampler() if access.grants_generation() else None)
    return ctx, model


def compute_scores(det: Detector, inst: TaskInstance, *, seed: int, batch_size: int = DEFAULT_BATCH,
                   progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Run ``fit`` and ``score`` (or ``estimate`` on LID tasks) over the task in batches, in this
    process; a sealed worker runs the very same loop (:func:`mmh_bench.evaluation.sealed.run_job`)."""
    ctx, model = make_context(det, inst, seed=seed)
    return run_job(det, ctx, lid=inst.spec.track == "lid", model=model,
                   batch_size=batch_size, progress=progress, desc=f"{inst.spec.name} / {det.name}")


def _roc_points(y: np.ndarray, s: np.ndarray) -> dict[str, list[float]] | None:
    """The ROC curve as stored: every vertex up to :data:`ROC_LOW_FPR` (where the TPR@FPR metrics
    are read, so the curve gives back exactly what they say), above it about :data:`ROC_POINTS`
    thinned by index, and both ends."""
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, s)
    if len(fpr) > ROC_POINTS:
        spread = np.linspace(0, len(fpr) - 1, ROC_POINTS).round().astype(int)
        keep = np.union1d(np.flatnonzero(fpr <= ROC_LOW_FPR), spread)
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 7) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def _result_head(inst: TaskInstance, det: Detector, mode: str, seed: int) -> dict[str, Any]:
    """A result document before scoring: what was evaluated, on what, where (status ok so far)."""
    spec = inst.spec
    labels = inst.labels
    return {
        "schema_version": SCHEMA_VERSION, "task": spec.name, "task_version": spec.version,
        "task_hash": spec.hash, "task_family": spec.family, "track": spec.track,
        "detector": result_name(det), "detector_version": det.version, "detector_params": det.params(),
        "detector_source": detector_source(det), "access": det.access.label,
        "reference": bool(det.reference), "group": detector_group(det), "detector_note": det.note or None,
        "instance": inst.instance_info(),
        "isolation": isolation_mode() if mode == "sealed" else "in-process",
        "status": "ok", "error": None,
        "n_samples": int(len(inst.samples)),
        "n_memorized": int(labels.sum()) if labels is not None else None,
        "metrics": None, "cost": None, "roc": None,
        "provenance": provenance(seed=seed, spec_hash=spec.hash, data_hash=inst.data_hash),
        "task_stats": inst.task_stats(),
    }


def evaluate_pair(inst: TaskInstance, det: Detector, *, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                  progress: bool = False, isolation: str = "auto", timeout: float | None = None,
                  threads: int = 1, hide: Iterable[str | Path | None] = (),
                  model_override: bool = False) -> dict[str, Any]:
    """One (task, detector) result; any failure of the detector becomes ``status: failed``.

    ``isolation``: "sealed" scores in a worker that holds only what the detector's access grants
    (sandboxed when bubblewrap works), "in-process" calls ``det`` here, "auto" seals all but the
    shipped baselines. Sealed runs construct a fresh detector from ``det``'s parameters; ``timeout``
    (seconds) and ``threads`` (torch threads in the worker) apply to them. ``model_override``: the
    instance's model was attached in memory, which a sealed worker cannot load.
    """
    mode = resolve_isolation(isolation, det)
    result = _result_head(inst, det, mode, seed)
    spec, labels = inst.spec, inst.labels
    try:
        if mode == "in-process":
            with limited_threads(threads):  # as a sealed worker runs: the same threads either way
                scores, cost = compute_scores(det, inst, seed=seed, batch_size=batch_size, progress=progress)
        elif model_override and det.access.grants_model():
            raise SealError("this task's model was attached in memory (--model); a sealed worker cannot "
                            "load it: evaluate in-process to trust the detector")
        else:
            run = run_sealed(inst, det, seed=seed, batch_size=batch_size, timeout=timeout, threads=threads,
                             sandbox=result["isolation"] == "sandbox", hide=hide)
            scores, cost = run.scores, run.cost
            result["isolation"] = run.isolation
    except Exception as exc:  # a broken detector must not stop the grid
        log.debug("detector %s failed on %s:\n%s", det.name, spec.name, traceback.format_exc())
        name = "" if isinstance(exc, WorkerFailure) else f"{type(exc).__name__}: "
        result.update(status="failed", error=f"{name}{exc}"[:2000])
        return _checked(result)
    result["cost"] = cost
    if spec.track == "lid":
        result["metrics"] = lid_metrics(inst.lid_star, scores)
    else:
        y = labels.astype(bool)
        result["metrics"] = memorization_metrics(y, scores, inst.subtype, SUBTYPES,
                                                 negative_source=inst.negative_source)
        result["roc"] = _roc_points(y, scores)
    return _checked(result)


def failed_result(inst: TaskInstance, det: Detector, error: str, *, seed: int = 0,
                  isolation: str = "auto") -> dict[str, Any]:
    """A ``status: failed`` result for a pair that ended outside the detector (its worker died)."""
    result = _result_head(inst, det, resolve_isolation(isolation, det), seed)
    result.update(status="failed", error=error[:2000])
    return _checked(result)


def _checked(result: dict[str, Any]) -> dict[str, Any]:
    """The document as the board will read it back, checked against the result schema: the
    evaluator cannot write a file the board would reject (a mismatch is a bug here, raised)."""
    validate_result(json.loads(json.dumps(result, allow_nan=False)))
    return result


@dataclass
class GridReport:
    ran: list[Path]
    skipped_current: list[Path]
    failed: list[Path]
    not_applicable: list[tuple[str, str, str]]


@dataclass
class GridPlan:
    """What a run evaluates, judged before any build: each spec with the detectors it may serve."""
    tasks: list[tuple[TaskSpec, list[Detector]]]
    report: GridReport

    @property
    def n_pairs(self) -> int:
        return sum(len(c) for _, c in self.tasks)


def plan_grid(tasks: str | Iterable[str | TaskSpec], detectors: str | Iterable[str | Detector], *,
              isolation: str = "auto", hide: Iterable[str | Path | None] = ()) -> GridPlan:
    """Resolve tasks and detectors and rule out the pairs the specs alone exclude (see :func:`evaluate`)."""
    if os.environ.get(WORKER_ENV):
        raise RuntimeError("mmh_bench.evaluate was called inside a sealed worker: the detector's file runs "
                           "an evaluation when imported; guard it with `if __name__ == \"__main__\":`")
    if isolation not in ISOLATION_CHOICES:  # a bad mode fails before anything is described or built
        raise ValueError(f"isolation {isolation!r} is not one of {', '.join(ISOLATION_CHOICES)}")
    specs = resolve_tasks(tasks) if isinstance(tasks, str) else [
        t if isinstance(t, TaskSpec) else get_task(t) for t in tasks]
    dets = resolve_many(detectors, isolation, hide=hide)  # unique names, a valid isolation for each
    plan = GridPlan([], GridReport([], [], [], []))
    for spec in specs:
        candidates = []
        for d in dets:
            why = ruled_out(d, spec)
            if why:
                plan.report.not_applicable.append((spec.name, result_name(d), why))
            else:
                candidates.append(d)
        if candidates:  # else nothing can run here: the task is not even built
            plan.tasks.append((spec, candidates))
    return plan


def pairs_to_run(inst: Any, candidates: list[Detector], results_dir: Path, report: GridReport, *, force: bool,
                 applicable_to: Callable[[Detector], tuple[bool, str]]) -> list[tuple[Detector, Path]]:
    """The candidates to evaluate on ``inst`` and their result paths; current results and detectors
    the instance cannot serve (``applicable_to``) go to ``report`` instead."""
    out = []
    for proto in candidates:
        name = result_name(proto)
        path = result_path(results_dir, inst, name)
        if not force and _is_current(path, inst, proto):
            report.skipped_current.append(path)
            continue
        ok, why = applicable_to(proto)
        if not ok:
            if (inst.spec.name, name, why) not in report.not_applicable:  # once per task
                report.not_applicable.append((inst.spec.name, name, why))
            continue
        out.append((proto, path))
    return out


def record(report: GridReport, path: Path, res: dict[str, Any], *, progress: bool) -> None:
    """Write one pair's result (atomically; the only write of that file) and count it."""
    write_json(path, res)
    (report.failed if res["status"] == "failed" else report.ran).append(path)
    if progress:
        m = res["metrics"] or {}
        headline = (f"AUROC {m['auroc']:.3f}" if "auroc" in m else
                    f"MAE {m['mae']:.3f}" if "mae" in m else res["error"])
        tqdm.write(f"  {res['task']:<28} {res['detector']:<18} {res['status']:<7} {headline}")


def evaluate(tasks: str | Iterable[str | TaskSpec], detectors: str | Iterable[str | Detector],
             results_dir: str | Path, *, cache_dir: str | Path | None = None, seed: int = 0,
             batch_size: int = DEFAULT_BATCH, force: bool = False, progress: bool = True,
             model_override: Any = None, isolation: str = "auto", timeout: float | None = None,
             threads: int = 1, instances: str | Path | FreshPool | None = DEFAULT_INSTANCES) -> GridReport:
    """Evaluate every applicable (task, detector) pair, writing one JSON file per pair atomically.

    Each pair gets a fresh detector cloned from the given one's constructor parameters, so nothing
    fitted on one task reaches the next. Pairs whose current result (same instance data hash,
    detector version and parameters, status ok) already exists are skipped, so an interrupted grid
    resumes where it stopped. ``isolation``, ``timeout`` and ``threads``: see :func:`evaluate_pair`.
    A detector reference to code other than a shipped baseline that will run sealed is never imported
    here: a sandboxed worker describes it (:func:`resolve_detector`); an import or constructor error
    raises :class:`~mmh_bench.registry.RegistryError` before anything is built.
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


def fill_fresh(plan: GridPlan, instances: Any, *, progress: bool) -> None:
    """With ``instances`` a :class:`~mmh_bench.task.fresh.FreshPool`: build the held-out instances
    the planned tasks lack, here, before any pair runs (their secret never leaves this process)."""
    if isinstance(instances, FreshPool):
        fill_pool([spec for spec, _ in plan.tasks], instances, progress=progress)


def pool_roots(instances: Any) -> list[str]:
    """The fresh pool's folder, for the sandbox to hide (nothing for published instances)."""
    return [instances.root] if isinstance(instances, FreshPool) else []


def run_plan(plan: GridPlan, results_dir: str | Path, *, cache_dir: str | Path | None, seed: int, batch_size: int,
             force: bool, progress: bool, model_override: Any, isolation: str, timeout: float | None,
             threads: int, instances: str | Path | FreshPool | None) -> GridReport:
    """:func:`evaluate`'s grid, one pair after another in this process."""
    report = plan.report
    results_dir = Path(results_dir)
    fill_fresh(plan, instances, progress=progress)
    hide = [cache_dir, results_dir, *pool_roots(instances)]
    for spec, candidates in plan.tasks:
        for inst in resolve_instances(spec, cache_dir, published=instances, progress=progress):
            attached = model_override(inst) if callable(model_override) else model_override
            if attached is not None:
                inst.set_model(attached)
            todo = pairs_to_run(inst, candidates, results_dir, report, force=force,
                                applicable_to=lambda proto, inst=inst: applicable(proto, inst))
            for proto, path in todo:
                res = evaluate_pair(inst, proto.clone(), seed=seed, batch_size=batch_size, progress=progress,
                                    isolation=isolation, timeout=timeout, threads=threads,
                                    hide=hide, model_override=attached is not None)
                record(report, path, res, progress=progress)
    return report
