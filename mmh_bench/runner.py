"""The evaluator: tasks x detectors -> one result JSON per pair, isolated failures, resumable."""
from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import psutil
import torch
from sklearn.metrics import roc_curve
from tqdm.auto import tqdm

from .build import BUILDER_CAPABILITIES, build_task
from .context import Context
from .detector import Batch, Detector, LIDEstimator
from .instance import SUBTYPES, TaskInstance
from .io import write_json
from .metrics import lid_metrics, memorization_metrics
from .provenance import provenance
from .registry import get_task, make_detector, resolve_detectors, resolve_tasks
from .spec import TaskSpec, canonical_json

log = logging.getLogger(__name__)

RESULT_SCHEMA_VERSION = 1
DEFAULT_BATCH = 512
ROC_POINTS = 200


class DetectorFailure(RuntimeError):
    """A detector broke the contract (wrong shape, NaN, non-numeric output)."""


def result_path(results_dir: Path, spec: TaskSpec, detector: str) -> Path:
    return Path(results_dir) / spec.name / f"v{spec.version}" / f"{detector}.json"


def detector_source(det: Detector) -> str:
    cls = type(det)
    return f"{cls.__module__}:{cls.__qualname__}"


def ruled_out(det: Detector, spec: TaskSpec) -> str | None:
    """Why the spec alone rules the detector out (no build needed to know), else None.

    A prediction that saves builds; :func:`applicable` judges the built instance and stays the
    authority (an instance attached by hand can carry conditions or a model its spec lacks)."""
    import importlib
    importlib.import_module("mmh_bench.builders")  # fills BUILDER_CAPABILITIES
    if spec.track == "lid" and not isinstance(det, LIDEstimator):
        return "LID-track tasks need an LID estimator"
    if det.access.grants_model() and not spec.section("model"):
        return "task has no score model"
    if det.access.grants_cond() and not spec.conditional:
        return "detector needs conditions; task is unconditional"
    caps = BUILDER_CAPABILITIES.get(spec.builder)
    if det.requires and caps is not None and not set(det.requires) <= caps:
        return f"model lacks {', '.join(sorted(set(det.requires) - caps))}"
    return None


def applicable(det: Detector, inst: TaskInstance) -> tuple[bool, str]:
    """Whether the task offers what the detector needs; the reason when it does not."""
    info = inst.info()
    if inst.spec.track == "lid" and not isinstance(det, LIDEstimator):
        return False, "LID-track tasks need an LID estimator"
    if det.access.grants_model() and not inst.meta.get("model") and inst._model is None:
        return False, "task has no score model"
    if det.access.grants_cond() and not info.conditional:
        return False, "detector needs conditions; task is unconditional"
    if det.access.grants_train() and "train" not in inst.arrays:
        return False, "task has no training set"
    if det.requires:
        model = inst.score_model()
        missing = set(det.requires) - set(getattr(model, "capabilities", ()))
        if missing:
            return False, f"model lacks {', '.join(sorted(missing))}"
    return True, ""


def _is_current(path: Path, spec: TaskSpec, det: Detector) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (old.get("status") == "ok" and old.get("task_hash") == spec.hash
            and old.get("detector_version") == det.version
            and canonical_json(old.get("detector_params")) == canonical_json(det.params()))


class PeakMemory:
    """Peak resident memory above the starting level, sampled by a background thread (MB).

    On CUDA the peak allocated device memory is reported separately.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.peak_mb = 0.0
        self.device_peak_mb: float | None = None

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._base = self._peak = self._proc.memory_info().rss
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb = round((self._peak - self._base) / 2**20, 2)
        if torch.cuda.is_available():
            self.device_peak_mb = round(torch.cuda.max_memory_allocated() / 2**20, 2)


def _validate(out: Any, n: int, who: str) -> np.ndarray:
    try:
        arr = np.asarray(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DetectorFailure(f"{who} returned non-numeric scores ({exc})") from None
    if arr.shape != (n,):
        raise DetectorFailure(f"{who} returned shape {list(arr.shape)}, expected [{n}]")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DetectorFailure(f"{who} returned {int(bad.sum())} NaN/inf value(s) of {n}")
    return arr


def compute_scores(det: Detector, inst: TaskInstance, *, seed: int, batch_size: int = DEFAULT_BATCH,
                   progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Run ``fit`` and ``score`` (or ``estimate`` on LID tasks) over the task in batches."""
    access = det.access
    model = inst.score_model() if access.grants_model() else None
    x, cond = inst.samples, inst.cond if access.grants_cond() else None
    ctx = Context(det.name, access, inst.info(), seed=seed, model=model,
                  train_index=inst.train_index if access.grants_train() else None,
                  extras=inst.extras, samples=Batch(x=x, cond=cond))
    if model is not None:
        model.reset_counters()
    torch.manual_seed(seed)
    n = len(x)
    method = det.estimate if inst.spec.track == "lid" else det.score  # type: ignore[attr-defined]
    parts = []
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        det.fit(ctx)
        bar = tqdm(range(0, n, batch_size), desc=f"{inst.spec.name} / {det.name}", disable=not progress,
                   leave=False, unit="batch")
        for start in bar:
            sl = slice(start, min(start + batch_size, n))
            batch = Batch(x=x[sl], cond=None if cond is None else cond[sl], index=np.arange(n)[sl])
            parts.append(_validate(method(batch, ctx), sl.stop - sl.start, det.name))
    seconds = time.perf_counter() - t0
    nfe = (model.nfe + model.njvp) / n if model is not None else 0.0
    cost = {"nfe_per_sample": round(nfe, 3),
            "jvp_per_sample": round(model.njvp / n, 3) if model is not None else 0.0,
            "seconds": round(seconds, 4), "peak_mb": mem.peak_mb}
    if mem.device_peak_mb is not None:
        cost["device_peak_mb"] = mem.device_peak_mb
    return np.concatenate(parts), cost


def _roc_points(y: np.ndarray, s: np.ndarray) -> dict[str, list[float]] | None:
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, s)
    if len(fpr) > ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def evaluate_pair(inst: TaskInstance, det: Detector, *, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                  progress: bool = False) -> dict[str, Any]:
    """One (task, detector) result; any exception from the detector becomes ``status: failed``."""
    spec = inst.spec
    labels = inst.labels
    result: dict[str, Any] = {
        "schema_version": RESULT_SCHEMA_VERSION, "task": spec.name, "task_version": spec.version,
        "task_hash": spec.hash, "task_family": spec.family, "track": spec.track,
        "detector": det.name, "detector_version": det.version, "detector_params": det.params(),
        "detector_source": detector_source(det), "access": det.access.label,
        "reference": bool(det.reference), "status": "ok", "error": None,
        "n_samples": int(len(inst.samples)),
        "n_memorized": int(labels.sum()) if labels is not None else None,
        "metrics": None, "cost": None, "roc": None,
        "provenance": provenance(seed=seed, spec_hash=spec.hash, data_hash=inst.data_hash),
        "task_stats": inst.task_stats(),
    }
    try:
        scores, cost = compute_scores(det, inst, seed=seed, batch_size=batch_size, progress=progress)
    except Exception as exc:  # a broken detector must not stop the grid
        log.debug("detector %s failed on %s:\n%s", det.name, spec.name, traceback.format_exc())
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        return result
    result["cost"] = cost
    if spec.track == "lid":
        result["metrics"] = lid_metrics(inst.lid_star, scores)
    else:
        y = labels.astype(bool)
        result["metrics"] = memorization_metrics(y, scores, inst.subtype, SUBTYPES)
        result["roc"] = _roc_points(y, scores)
    return result


@dataclass
class GridReport:
    ran: list[Path]
    skipped_current: list[Path]
    failed: list[Path]
    not_applicable: list[tuple[str, str, str]]


def evaluate(tasks: str | Iterable[str | TaskSpec], detectors: str | Iterable[str | Detector],
             results_dir: str | Path, *, cache_dir: str | Path | None = None, seed: int = 0,
             batch_size: int = DEFAULT_BATCH, force: bool = False, progress: bool = True,
             model_override: Any = None) -> GridReport:
    """Evaluate every applicable (task, detector) pair, writing one JSON file per pair atomically.

    Pairs whose current result (same task hash, detector version and parameters, status ok)
    already exists are skipped, so an interrupted grid resumes where it stopped.
    """
    specs = resolve_tasks(tasks) if isinstance(tasks, str) else [
        t if isinstance(t, TaskSpec) else get_task(t) for t in tasks]
    dets = resolve_detectors(detectors) if isinstance(detectors, str) else [
        make_detector(d) for d in detectors]
    names = [d.name for d in dets]
    if len(set(names)) != len(names):
        raise ValueError(f"detector names must be unique in one run: {names}")
    report = GridReport([], [], [], [])
    results_dir = Path(results_dir)
    for spec in specs:
        todo = []
        for d in dets:
            why = ruled_out(d, spec)
            if why:
                report.not_applicable.append((spec.name, d.name, why))
            elif force or not _is_current(result_path(results_dir, spec, d.name), spec, d):
                todo.append(d)
            else:
                report.skipped_current.append(result_path(results_dir, spec, d.name))
        if not todo:  # nothing to evaluate: the task is not even built
            continue
        inst = build_task(spec, cache_dir, progress=progress)
        if model_override is not None:
            inst.set_model(model_override(inst) if callable(model_override) else model_override)
        for det in todo:
            ok, why = applicable(det, inst)
            if not ok:
                report.not_applicable.append((spec.name, det.name, why))
                continue
            res = evaluate_pair(inst, det, seed=seed, batch_size=batch_size, progress=progress)
            path = result_path(results_dir, spec, det.name)
            write_json(path, res)
            (report.failed if res["status"] == "failed" else report.ran).append(path)
            if progress:
                m = res["metrics"] or {}
                headline = (f"AUROC {m['auroc']:.3f}" if "auroc" in m else
                            f"MAE {m['mae']:.3f}" if "mae" in m else res["error"])
                tqdm.write(f"  {spec.name:<28} {det.name:<18} {res['status']:<7} {headline}")
    return report
