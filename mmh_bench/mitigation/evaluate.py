"""Score a mitigator on a task instance: regenerate every sample under it, label, measure quality.

Every generation of the task (its condition and its stored x_T) is produced again by the
mitigator through the task's sampler and labelled by the task's own copy rule (the same base test
and chance test that labelled the task, against the same training set), so "memorized" means
exactly what it means on the detection board. One result document per (instance, mitigator
setting), written atomically; a mitigator that raises, returns the wrong shape or times out fails
alone.

Stable Diffusion tasks have no copy rule (their labels are per prompt): given a
:class:`~mmh_bench.mitigation.sd.MemBenchJudge` (``judge``), their memorized prompts' generations
are regenerated and scored as MemBench does, against the prompts' ground-truth training images.

Isolation is the detectors' (:mod:`mmh_bench.evaluation.sealed`): a mitigator that is not a
shipped baseline generates in a sandboxed worker whose view holds what its access grants (the
noises, conditions, sampler and model; never labels nor the task's own generations), through the
same loop as in-process (:func:`~mmh_bench.evaluation.sealed.run_job`); this process labels what
comes back.
"""
from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from mmh_bench.evaluation.metrics import BOOT_SEED, N_BOOT
from mmh_bench.common.provenance import provenance
from mmh_bench.evaluation.sealed.job import MitigationFailure, run_job
from mmh_bench.common.paths import canonical_relpath
from mmh_bench.task.instance import SUBTYPE_CODE, TaskInstance
from mmh_bench.task.spec import canonical_json
from mmh_bench.task.subtypes import CONSTRUCTED_SUBTYPES
from mmh_bench.threads import limited_threads
from mmh_bench.api.mitigator import Mitigator
from .quality import condition_accuracy, precision_recall
from .result import MitigationCost, MitigationResult, make_result, write_result

if TYPE_CHECKING:  # pragma: no cover
    from .sd import MemBenchJudge

log = logging.getLogger(__name__)
__all__ = ["MitigationFailure", "evaluate_mitigator", "failed_mitigation", "mitigate", "mitigate_specs",
           "mitigation_metrics", "plan_mitigation", "record_mitigation", "run_mitigator"]
MITIGATION_SCHEMA_VERSION = 1
DEFAULT_BATCH = 512
#: why a Stable Diffusion task is not applicable without a judge
NEEDS_GROUND_TRUTH = ("Stable Diffusion generations are scored against their prompts' ground-truth training "
                      "images: give --ground-truth DIR, --sscd FILE --sscd-sha256 HEX and --clip")


def _judged(inst: TaskInstance, judge: "MemBenchJudge | None") -> "MemBenchJudge | None":
    """The judge when it scores ``inst`` (a Stable Diffusion task), else None: the copy rule does."""
    return judge if judge is not None and judge.applies(inst) else None


def applicable(mit: Mitigator, inst: TaskInstance, judge: "MemBenchJudge | None" = None) -> tuple[bool, str]:
    """Whether the task offers what the mitigator needs; the reason when it does not."""
    if inst.spec.track != "memorization" or inst.labels is None:
        return False, "mitigation is scored on memorization tasks"
    if inst.noise is None or inst.sampler() is None:
        return False, "task keeps no replayable generation (initial noise and sampler)"
    if inst.cond is None:
        return False, "mitigation tasks are conditional"
    if not mit.access.grants_generation():
        return False, f"a mitigator generates: it needs Access.GENERATION, not {mit.access.label!r}"
    if inst.spec.family == "stable-diffusion":
        if _judged(inst, judge) is None:
            return False, NEEDS_GROUND_TRUTH
    elif "train" not in inst.arrays or inst.train_index.rule is None:
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
    in a seeded random order, so any prefix is a uniform subset) and their cost, in this process; a
    sealed worker runs the very same loop (:func:`mmh_bench.evaluation.sealed.run_job`)."""
    from mmh_bench.evaluation.runner import make_context
    ctx, model = make_context(mit, inst, seed=seed, n=n, generating=True)
    return run_job(mit, ctx, generate=True, model=model, batch_size=batch_size)


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


def generations(mit: Mitigator, inst: TaskInstance, *, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                threads: int = 1, n: int | None = None, isolation: str = "auto", timeout: float | None = None,
                hide: Iterable[str | Path | None] = ()) -> tuple[np.ndarray, dict[str, Any], str]:
    """``mit``'s generations of the first ``n`` samples, their cost, and where they ran
    (``in-process``, ``sandbox`` or ``process``): in this process, or in a sealed worker
    (:func:`mmh_bench.evaluation.sealed.run_sealed`) under ``isolation`` as for detectors."""
    from mmh_bench.evaluation.runner import resolve_isolation
    from mmh_bench.evaluation.sealed import run_sealed
    if resolve_isolation(isolation, mit) == "in-process":
        with limited_threads(threads):  # as a sealed worker runs: the same threads either way
            return (*run_mitigator(mit, inst, seed=seed, batch_size=batch_size, n=n), "in-process")
    run = run_sealed(inst, mit, seed=seed, batch_size=batch_size, timeout=timeout, threads=threads, hide=hide, n=n)
    return run.output, run.cost, run.isolation


def _document(mit: Mitigator, inst: TaskInstance, *, seed: int, n: int | None, isolation: str) -> dict[str, Any]:
    """A result document of ``mit`` on ``inst`` without its outcome (status ok, no metrics yet)."""
    from mmh_bench.evaluation.runner import resolve_isolation
    from mmh_bench.evaluation.sealed import isolation_mode
    spec = inst.spec
    key, _ = mit.sweep
    return {
        "schema_version": MITIGATION_SCHEMA_VERSION, "track": "mitigation", "task": spec.name,
        "task_version": spec.version, "task_hash": spec.hash, "task_family": spec.family,
        "instance": inst.instance_info(), "mitigator": mit.name, "mitigator_version": mit.version,
        "mitigator_params": mit.params(), "swept": key or None,
        "setting": mit.params().get(key) if key else None, "access": mit.access.label,
        "status": "ok", "error": None, "n_samples": int(len(inst.samples[:n])),
        "metrics": None, "cost": None, "unmitigated": None,
        "isolation": isolation_mode() if resolve_isolation(isolation, mit) == "sealed" else "in-process",
        "provenance": provenance(seed=seed, spec_hash=spec.hash, data_hash=inst.data_hash)}


def failed_mitigation(mit: Mitigator, inst: TaskInstance, error: str, *, seed: int = 0, n: int | None = None,
                      isolation: str = "auto") -> MitigationResult:
    """The result of a setting that never returned (e.g. its cluster worker died every time)."""
    return make_result({**_document(mit, inst, seed=seed, n=n, isolation=isolation),
                        "status": "failed", "error": error[:2000]})


def evaluate_mitigator(mit: Mitigator, inst: TaskInstance, *, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                       threads: int = 1, n: int | None = None, isolation: str = "auto",
                       timeout: float | None = None, hide: Iterable[str | Path | None] = (),
                       judge: "MemBenchJudge | None" = None) -> MitigationResult:
    """The result document of ``mit`` on the first ``n`` generations of ``inst`` (all by default;
    status ``failed`` with the error when it breaks), built as the schema's own model. The
    unmitigated rate is the copy rule on the same generations as the task made them.
    ``isolation``, ``timeout`` and ``hide``: as for detectors
    (:func:`mmh_bench.evaluation.runner.evaluate_pair`); "auto" seals all but the shipped baselines.
    ``judge`` scores Stable Diffusion tasks (the first ``n`` generations of memorized prompts)."""
    from mmh_bench.evaluation.sealed import WorkerFailure
    judge = _judged(inst, judge)
    if judge is not None:  # the generations scored, as an instance of their own
        inst, n = judge.scored(inst, n), None
    doc = _document(mit, inst, seed=seed, n=n, isolation=isolation)
    try:
        samples, cost, doc["isolation"] = generations(mit, inst, seed=seed, batch_size=batch_size, threads=threads,
                                                      n=n, isolation=isolation, timeout=timeout, hide=hide)
    except Exception as exc:  # a broken mitigator must not stop the grid
        log.debug("mitigator %s failed on %s:\n%s", mit.name, inst.spec.name, traceback.format_exc())
        name = "" if isinstance(exc, WorkerFailure) else f"{type(exc).__name__}: "
        doc.update(status="failed", error=f"{name}{exc}"[:2000])
        return make_result(doc)
    with limited_threads(threads):
        if judge is not None:
            doc["metrics"], doc["unmitigated"] = judge.metrics(inst, samples), judge.unmitigated(inst)
        else:
            doc["metrics"] = mitigation_metrics(inst, samples)
            doc["unmitigated"] = {"memorization": rate_with_ci(label_generations(inst, inst.samples[:n])["memorized"])}
    doc["cost"] = {k: v for k, v in cost.items() if k in MitigationCost.model_fields}
    return make_result(doc)


def is_current(path: Path, inst: TaskInstance, mit: Mitigator, n: int | None = None,
               judge: "MemBenchJudge | None" = None) -> bool:
    """An ok result of this very instance, number of generations, mitigator version and parameters
    (and, scored by ``judge``, the same SSCD and CLIP weights and ground truth)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    judge = _judged(inst, judge)
    rows = len(judge.scored(inst, n).samples) if judge is not None else len(inst.samples[:n])
    scored_by = (old.get("metrics") or {}).get("membench") or {}
    return (old.get("status") == "ok" and old.get("instance", {}).get("data_hash") == inst.data_hash
            and old.get("n_samples") == rows
            and old.get("mitigator_version") == mit.version
            and canonical_json(old.get("mitigator_params")) == canonical_json(mit.params())
            and (judge is None or all(scored_by.get(k) == v for k, v in judge.identity().items())))


def plan_mitigation(instances: Iterable[TaskInstance], mitigators: Iterable[Mitigator], results_dir: str | Path,
                    report: dict[str, list], *, force: bool = False, sweep: bool = True, n: int | None = None,
                    judge: "MemBenchJudge | None" = None) -> list[tuple[TaskInstance, Mitigator, Path]]:
    """The (instance, mitigator setting, result path) jobs to run; current results are added to
    ``report["skipped"]``, refused pairs to ``report["not_applicable"]``. A Stable Diffusion
    instance's ground truth is checked here, before anything runs."""
    jobs = []
    mitigators = list(mitigators)
    for inst in instances:
        sd = _judged(inst, judge)
        if sd is not None:
            sd.scored(inst, n)  # a bad ground-truth folder stops the run here
        for proto in mitigators:
            ok, why = applicable(proto, inst, judge)
            if not ok:
                report["not_applicable"].append((inst.spec.name, proto.name, why))
                continue
            for mit in proto.settings() if sweep else [proto.clone()]:
                path = mitigation_path(results_dir, inst, mit)
                if not force and is_current(path, inst, mit, n, judge):
                    report["skipped"].append(path)
                else:
                    jobs.append((inst, mit, path))
    return jobs


def record_mitigation(report: dict[str, list], path: Path, res: MitigationResult, progress: bool = True) -> None:
    """Write one result (atomically) and count it."""
    write_result(path, res)
    report["failed" if res.status == "failed" else "ran"].append(path)
    if progress:
        head = f"memorized {res.metrics.memorization.rate:.3f}" if res.metrics else res.error
        print(f"  {res.task:<20} {path.stem:<40} {res.status:<7} {head}", flush=True)


def mitigate(instances: Iterable[TaskInstance], mitigators: Iterable[Mitigator], results_dir: str | Path, *,
             seed: int = 0, force: bool = False, sweep: bool = True, progress: bool = True,
             n: int | None = None, isolation: str = "auto", timeout: float | None = None,
             hide: Iterable[str | Path | None] = (), batch_size: int = DEFAULT_BATCH,
             judge: "MemBenchJudge | None" = None, workers: int | None = 1, cluster: str | None = None
             ) -> dict[str, list]:
    """Every applicable (instance, mitigator setting) pair on the first ``n`` generations of each
    instance (all by default); returns ``{"ran", "skipped", "failed", "not_applicable"}``. With
    ``sweep``, each mitigator runs at every setting of its sweep. ``isolation``, ``timeout``,
    ``hide``, ``judge``: see :func:`evaluate_mitigator` (the results folder is hidden from sealed
    workers). ``workers`` / ``cluster``: the settings run as tasks of a Dask cluster
    (:func:`mmh_bench.evaluation.engine.mitigate_on_cluster`; ``workers=None``: sized to the
    machine); this process alone writes the results. Stable Diffusion tasks scored by a ``judge``
    run here, where its models are loaded."""
    report: dict[str, list] = {"ran": [], "skipped": [], "failed": [], "not_applicable": []}
    jobs = plan_mitigation(instances, mitigators, results_dir, report, force=force, sweep=sweep, n=n, judge=judge)
    opts = dict(seed=seed, n=n, isolation=isolation, timeout=timeout, hide=[*hide, results_dir], batch_size=batch_size)
    from mmh_bench.evaluation.engine import default_workers, mitigate_on_cluster
    # a worker loads an instance from its folder; one scored by a judge needs the judge's models
    movable = [_judged(inst, judge) is None and inst.root is not None for inst, _, _ in jobs]
    spread = [j for j, m in zip(jobs, movable) if m]
    n_workers = default_workers(len(spread)) if workers is None else workers
    if spread and (cluster is not None or n_workers > 1):
        mitigate_on_cluster(spread, opts, lambda path, res: record_mitigation(report, path, res, progress),
                            cluster=cluster, workers=n_workers)
        jobs = [j for j, m in zip(jobs, movable) if not m]
    for inst, mit, path in jobs:
        record_mitigation(report, path, evaluate_mitigator(mit, inst, judge=judge, **opts), progress)  # type: ignore[arg-type]
    for key in ("ran", "failed"):
        report[key].sort()
    return report


def mitigate_specs(specs: Iterable[Any], mitigators: Iterable[Mitigator], results_dir: str | Path, *,
                   cache_dir: str | Path | None = None, instances: str | Path | None = None,
                   all_replicates: bool = False, progress: bool = True, **kwargs: Any) -> dict[str, list]:
    """:func:`mitigate` over task specs: each conditional memorization task's instances (the
    published ones in ``instances`` where the spec has them, else this machine's build), replicate
    0 alone unless ``all_replicates``; other tasks are reported not applicable. ``kwargs`` go to
    :func:`mitigate`; the cache folder is hidden from sealed workers."""
    from mmh_bench.task.publish import resolve_instances
    mitigators = list(mitigators)
    kwargs["hide"] = [*kwargs.get("hide", ()), cache_dir]
    total: dict[str, list[Any]] = {"ran": [], "skipped": [], "failed": [], "not_applicable": []}
    chosen: list[TaskInstance] = []
    for spec in specs:
        if spec.track != "memorization" or not spec.conditional:
            total["not_applicable"].append((spec.name, "*", "mitigation tasks are conditional memorization tasks"))
            continue
        if spec.family == "stable-diffusion" and kwargs.get("judge") is None:  # not built for nothing
            total["not_applicable"].append((spec.name, "*", NEEDS_GROUND_TRUTH))
            continue
        insts = resolve_instances(spec, cache_dir, published=instances, progress=progress)
        if not all_replicates:  # replicate 0 (the first published instance) stands for the task
            insts = sorted(insts, key=lambda i: i.instance_info().get("replicate", 0))[:1]
        chosen += insts
    rep = mitigate(chosen, mitigators, results_dir, progress=progress, **kwargs)  # one cluster for all tasks
    for k in total:
        total[k] += rep[k]
    return total
