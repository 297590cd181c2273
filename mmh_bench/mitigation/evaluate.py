"""Score a mitigator on a task instance: regenerate every sample under it, label, measure quality.

Every generation of the task (its condition and its stored x_T) is produced again by the
mitigator through the task's sampler and labelled by the task's own copy rule (the same base test
and chance test that labelled the task, against the same training set), so "memorized" means
exactly what it means on the detection board. One result document per (instance, mitigator
setting), written atomically; a mitigator that raises or returns the wrong shape fails alone.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mmh_bench.api.context import Context
from mmh_bench.api.detector import Batch
from mmh_bench.evaluation.metrics import BOOT_SEED, N_BOOT
from mmh_bench.evaluation.provenance import provenance
from mmh_bench.evaluation.sealed.job import PeakMemory
from mmh_bench.leaderboard.store import canonical_relpath
from mmh_bench.task.instance import SUBTYPE_CODE, TaskInstance
from mmh_bench.task.spec import canonical_json
from mmh_bench.task.subtypes import CONSTRUCTED_SUBTYPES
from mmh_bench.threads import limited_threads
from .contract import Mitigator
from .quality import condition_accuracy, precision_recall
from .result import MitigationResult, make_result, write_result

log = logging.getLogger(__name__)
MITIGATION_SCHEMA_VERSION = 1
DEFAULT_BATCH = 512


class MitigationFailure(RuntimeError):
    """A mitigator's output cannot be scored (wrong shape, not finite)."""


def applicable(mit: Mitigator, inst: TaskInstance) -> tuple[bool, str]:
    """Whether the task offers what the mitigator needs; the reason when it does not."""
    if inst.spec.track != "memorization" or inst.labels is None:
        return False, "mitigation is scored on memorization tasks"
    if inst.noise is None or inst.sampler() is None:
        return False, "task keeps no replayable generation (initial noise and sampler)"
    if inst.cond is None:
        return False, "mitigation tasks are conditional"
    if inst.train_index.rule is None:
        return False, "task is labelled without the copy rule"
    missing = set(mit.requires) - set(getattr(inst.score_model(), "capabilities", ()))
    if missing:
        return False, f"model lacks {', '.join(sorted(missing))}"
    return True, ""


def intended_class(inst: TaskInstance, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(class the condition of each of the first ``n`` samples asks for, class of each training
    row), or None."""
    a, cond = inst.arrays, np.asarray(inst.cond)[:n]
    if "caption_class" in a and "train_class" in a:  # text conditions: the digit a caption names
        return np.asarray(a["caption_class"])[cond], np.asarray(a["train_class"])
    if "train_cond" in a:  # class conditions
        return cond, np.asarray(a["train_cond"])
    return None


def label_generations(inst: TaskInstance, samples: np.ndarray) -> dict[str, np.ndarray]:
    """The task's copy rule on ``samples``: ``memorized`` and ``subtype`` codes per sample."""
    index = inst.train_index
    rule = index.rule
    out = rule.apply(index, samples)
    nn = np.where(out["nn"] >= 0, out["nn"], 0)
    subtype = np.where(out["memorized"], np.where(rule.duplicated[nn], SUBTYPE_CODE["DD"], SUBTYPE_CODE["OD"]),
                       SUBTYPE_CODE["none"]).astype(np.int8)
    return {"memorized": out["memorized"].astype(bool), "subtype": subtype}


def rate_with_ci(flags: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict[str, Any]:
    """Share of True with a 95% bootstrap interval over samples."""
    flags = np.asarray(flags, dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.binomial(len(flags), flags.mean(), size=n_boot) / max(len(flags), 1) if len(flags) else np.zeros(1)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return {"rate": round(float(flags.mean()), 6) if len(flags) else 0.0, "ci": [round(float(lo), 6), round(float(hi), 6)]}


def run_mitigator(mit: Mitigator, inst: TaskInstance, *, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                  n: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The mitigated generations of the first ``n`` samples of ``inst`` (all by default; rows are
    in a seeded random order, so any prefix is a uniform subset) and their cost."""
    model = inst.score_model()
    cond, noise = inst.cond[:n], inst.noise[:n]
    full = Batch(x=noise, cond=cond, noise=noise)
    ctx = Context(mit.name, mit.access, inst.info(), seed=seed, model=model, samples=full,
                  sampler=inst.sampler(), extras=inst.extras)
    model.reset_counters()
    parts = []
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        mit.fit(ctx)
        for start in range(0, len(noise), batch_size):
            sl = slice(start, min(start + batch_size, len(noise)))
            batch = Batch(x=noise[sl], cond=cond[sl], index=np.arange(len(noise))[sl], noise=noise[sl])
            out = np.asarray(mit.generate(batch, ctx), dtype=np.float32)
            if out.shape != noise[sl].shape:
                raise MitigationFailure(f"{mit.name} returned shape {list(out.shape)}, expected {list(noise[sl].shape)}")
            if not np.isfinite(out).all():
                raise MitigationFailure(f"{mit.name} returned {int((~np.isfinite(out)).sum())} NaN/inf values")
            parts.append(out)
    n = len(noise)
    cost = {"nfe_per_sample": round((model.nfe + model.njvp) / n, 3), "seconds": round(time.perf_counter() - t0, 3),
            "peak_mb": mem.peak_mb}
    return np.concatenate(parts), cost


def mitigation_metrics(inst: TaskInstance, samples: np.ndarray) -> dict[str, Any]:
    """Memorization rate (overall and per subtype, with intervals) and quality of ``samples``, the
    mitigated generations of the task's first ``len(samples)`` samples."""
    n = len(samples)
    lab = label_generations(inst, samples)
    out: dict[str, Any] = {"memorization": rate_with_ci(lab["memorized"]), "per_subtype": {}}
    for name in CONSTRUCTED_SUBTYPES:
        out["per_subtype"][name] = rate_with_ci(lab["subtype"] == SUBTYPE_CODE[name])
    out["unchanged_share"] = round(float(np.mean(np.all(np.isclose(
        samples.reshape(n, -1), inst.samples[:n].reshape(n, -1), atol=1e-6), axis=1))), 6)
    held = inst.arrays.get("heldout")
    if held is not None and len(held) > 3:
        p, r = precision_recall(held, samples)
        out["precision"], out["recall"] = round(p, 6), round(r, 6)
    classes = intended_class(inst, n)
    if classes is not None:
        acc = condition_accuracy(inst.arrays["train"], classes[1], samples, classes[0])
        out["condition_accuracy"] = None if acc is None else round(acc, 6)
    return out


#: the mitigation track's own store (the detection store's scanner never reads it)
DEFAULT_RESULTS = "leaderboard/mitigation-results"


def mitigation_path(results_dir: str | Path, inst: TaskInstance, mit: Mitigator) -> Path:
    """``<results>/<task>/v<version>/<instance id>/<name>[<params>].json``."""
    params = ",".join(f"{k}={v}" for k, v in sorted(mit.params().items()))
    stem = mit.name + (f"[{params}]" if params else "")
    safe = "".join(c if c.isalnum() or c in "-_.,=[]" else "_" for c in stem)
    return Path(results_dir) / canonical_relpath(inst.spec.name, inst.spec.version, safe, inst.instance_info()["id"])


def evaluate_mitigator(mit: Mitigator, inst: TaskInstance, *, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                       threads: int = 1, n: int | None = None) -> MitigationResult:
    """The result document of ``mit`` on the first ``n`` generations of ``inst`` (all by default;
    status ``failed`` with the error when it breaks), built as the schema's own model. The
    unmitigated rate is the copy rule on the same generations as the task made them."""
    spec = inst.spec
    key, _ = mit.sweep
    doc: dict[str, Any] = {
        "schema_version": MITIGATION_SCHEMA_VERSION, "track": "mitigation", "task": spec.name,
        "task_version": spec.version, "task_hash": spec.hash, "task_family": spec.family,
        "instance": inst.instance_info(), "mitigator": mit.name, "mitigator_version": mit.version,
        "mitigator_params": mit.params(), "swept": key or None,
        "setting": mit.params().get(key) if key else None, "access": mit.access.label,
        "status": "ok", "error": None, "n_samples": int(len(inst.samples[:n])),
        "metrics": None, "cost": None, "unmitigated": None,
        "provenance": provenance(seed=seed, spec_hash=spec.hash, data_hash=inst.data_hash)}
    try:
        with limited_threads(threads):
            samples, cost = run_mitigator(mit, inst, seed=seed, batch_size=batch_size, n=n)
            doc["metrics"] = mitigation_metrics(inst, samples)
            doc["unmitigated"] = {"memorization": rate_with_ci(label_generations(inst, inst.samples[:n])["memorized"])}
        doc["cost"] = cost
    except Exception as exc:  # a broken mitigator must not stop the grid
        log.debug("mitigator %s failed on %s:\n%s", mit.name, spec.name, traceback.format_exc())
        doc.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000], metrics=None, cost=None)
    return make_result(doc)


def is_current(path: Path, inst: TaskInstance, mit: Mitigator, n: int | None = None) -> bool:
    """An ok result of this very instance, number of generations, mitigator version and parameters."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (old.get("status") == "ok" and old.get("instance", {}).get("data_hash") == inst.data_hash
            and old.get("n_samples") == len(inst.samples[:n])
            and old.get("mitigator_version") == mit.version
            and canonical_json(old.get("mitigator_params")) == canonical_json(mit.params()))


def mitigate(instances: Iterable[TaskInstance], mitigators: Iterable[Mitigator], results_dir: str | Path, *,
             seed: int = 0, force: bool = False, sweep: bool = True, progress: bool = True,
             n: int | None = None) -> dict[str, list]:
    """Every applicable (instance, mitigator setting) pair on the first ``n`` generations of each
    instance (all by default); returns ``{"ran", "skipped", "failed", "not_applicable"}``. With
    ``sweep``, each mitigator runs at every setting of its sweep."""
    report: dict[str, list] = {"ran": [], "skipped": [], "failed": [], "not_applicable": []}
    mitigators = list(mitigators)
    for inst in instances:
        for proto in mitigators:
            ok, why = applicable(proto, inst)
            if not ok:
                report["not_applicable"].append((inst.spec.name, proto.name, why))
                continue
            for mit in proto.settings() if sweep else [proto.clone()]:
                path = mitigation_path(results_dir, inst, mit)
                if not force and is_current(path, inst, mit, n):
                    report["skipped"].append(path)
                    continue
                res = evaluate_mitigator(mit, inst, seed=seed, n=n)
                write_result(path, res)
                report["failed" if res.status == "failed" else "ran"].append(path)
                if progress:
                    head = f"memorized {res.metrics.memorization.rate:.3f}" if res.metrics else res.error
                    print(f"  {inst.spec.name:<20} {path.stem:<40} {res.status:<7} {head}", flush=True)
    return report
