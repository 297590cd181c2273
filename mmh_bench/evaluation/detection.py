"""The detection tracks: a detector scores every sample of a memorization task (AUROC against the
copy labels), an LID estimator estimates every sample's LID on an LID task (error against LID*)."""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
from sklearn.metrics import roc_curve

from mmh_bench.api.context import Context
from mmh_bench.api.detector import Batch, Detector, LIDEstimator, detector_group
from mmh_bench.leaderboard.schema import SCHEMA_VERSION, validate_result
from mmh_bench.leaderboard.store import read_result
from mmh_bench.registry import BUILDER_CAPABILITIES, format_ref
from mmh_bench.task.instance import SUBTYPES
from mmh_bench.task.spec import TaskSpec
from mmh_bench.threads import limited_threads
from .metrics import lid_metrics, memorization_metrics
from .sealed import SealError, StandIn, granted, run_job, run_sealed
from .track import Track, resolve_isolation

DEFAULT_BATCH = 512
ROC_POINTS = 200
#: below this FPR a stored ROC curve keeps every vertex (the TPR@FPR targets are 0.1%, 1%, 5%)
ROC_LOW_FPR = 0.05
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
    """Why the task cannot serve the detector, else None."""
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


def make_context(entry: Any, inst: Any, *, seed: int, n: int | None = None,
                 generating: bool = False) -> tuple[Context, Any]:
    """The context ``entry`` gets on ``inst`` in this process, and the score model behind it (or
    None); a sealed worker builds the same from its view (both take :func:`~mmh_bench.evaluation.sealed.granted`).
    ``generating`` (a mitigator): its samples are the first ``n`` initial noises, not the generations."""
    access = entry.access
    model = inst.score_model() if access.grants_model() else None
    rows = granted(inst, access, n=n, generating=generating)
    ctx = Context(entry.name, access, inst.info(), seed=seed, model=model,
                  train_index=inst.train_index if access.grants_train() else None, extras=inst.extras,
                  samples=Batch(**rows), sampler=inst.sampler() if access.grants_generation() else None)
    return ctx, model


def compute_scores(det: Detector, inst: Any, *, seed: int, batch_size: int = DEFAULT_BATCH,
                   progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Run ``fit`` and ``score`` (or ``estimate`` on LID tasks) over the task in batches, in this
    process; a sealed worker runs the very same loop (:func:`mmh_bench.evaluation.sealed.run_job`)."""
    ctx, model = make_context(det, inst, seed=seed)
    return run_job(det, ctx, lid=inst.spec.track == "lid", model=model,
                   batch_size=batch_size, progress=progress, desc=f"{inst.spec.name} / {det.name}")


def roc_points(y: np.ndarray, s: np.ndarray) -> dict[str, list[float]] | None:
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


class DetectionTrack(Track):
    """Detectors on memorization tasks and LID estimators on LID tasks: one score per sample,
    judged against the instance's labels (or LID*) in this process."""

    kind: ClassVar[str] = "detector"

    def why_not(self, det: Any, inst: Any) -> str | None:
        """Whether the built task offers what the detector needs (an instance attached by hand can
        carry conditions or a model its spec lacks)."""
        return why_not(det, TaskOffer(
            track=inst.spec.track, family=inst.spec.family,
            has_model=inst.build_meta.model is not None or inst.attached_model is not None,
            conditional=inst.info().conditional, has_train="train" in inst.arrays,
            replayable=inst.noise is not None and inst.sampler() is not None,
            capabilities=lambda: getattr(inst.score_model(), "capabilities", ()),
            model=inst.score_model))

    def ruled_out(self, det: Any, spec: TaskSpec) -> str | None:
        return why_not(det, TaskOffer(track=spec.track, family=spec.family, has_model=bool(spec.model.written("model")),
                                      conditional=spec.conditional,
                                      capabilities=lambda: BUILDER_CAPABILITIES.get(spec.builder)))

    def result_name(self, det: Any) -> str:
        return result_name(det)

    def header(self, inst: Any, det: Any) -> dict[str, Any]:
        labels = inst.labels
        return {"schema_version": SCHEMA_VERSION, "track": inst.spec.track,
                "detector": result_name(det), "detector_version": det.version, "detector_params": det.params(),
                "detector_source": detector_source(det), "reference": bool(det.reference),
                "group": detector_group(det), "detector_note": det.note or None,
                "n_samples": inst.n_samples,
                "n_memorized": int(labels.sum()) if labels is not None else None,
                "roc": None, "task_stats": inst.task_stats()}

    def score(self, inst: Any, det: Any, doc: dict[str, Any], *, seed: int, batch_size: int, isolation: str,
              timeout: float | None, threads: int, hide: Iterable[str | Path | None], progress: bool) -> None:
        if resolve_isolation(isolation, det) == "in-process":
            with limited_threads(threads):  # as a sealed worker runs: the same threads either way
                scores, cost = self.run_here(det, inst, seed=seed, batch_size=batch_size, progress=progress)
        elif inst.model_attached and det.access.grants_model():
            raise SealError("this task's model was attached in memory (--model); a sealed worker cannot "
                            "load it: evaluate in-process to trust the detector")
        else:
            run = run_sealed(inst, det, seed=seed, batch_size=batch_size, timeout=timeout, threads=threads,
                             sandbox=doc["isolation"] == "sandbox", hide=hide)
            scores, cost = run.scores, run.cost
            doc["isolation"] = run.isolation
        doc["cost"] = cost
        if inst.spec.track == "lid":
            doc["metrics"] = lid_metrics(inst.lid_star, scores)
        else:
            y = inst.labels.astype(bool)
            doc["metrics"] = memorization_metrics(y, scores, inst.subtype, SUBTYPES,
                                                  negative_source=inst.negative_source)
            doc["roc"] = roc_points(y, scores)

    def run_here(self, det: Any, inst: Any, *, seed: int, batch_size: int,
                 progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        return compute_scores(det, inst, seed=seed, batch_size=batch_size, progress=progress)

    def validate(self, doc: dict[str, Any]) -> Any:
        return validate_result(doc)

    def read(self, path: Path) -> Any:
        return read_result(path)  # the board's reader: one way to read a result file

    def headline(self, res: Any) -> str:
        return f"MAE {res.metrics.mae:.3f}" if res.track == "lid" else f"AUROC {res.metrics.auroc:.3f}"


__all__ = ["DEFAULT_BATCH", "DetectionTrack", "TaskOffer", "compute_scores", "detector_source", "make_context",
           "result_name", "roc_points", "why_not"]
