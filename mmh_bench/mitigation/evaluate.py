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

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

import numpy as np

from mmh_bench.api.mitigator import Mitigator
from mmh_bench.evaluation.detection import make_context
from mmh_bench.evaluation.metrics import BOOT_SEED, N_BOOT
from mmh_bench.evaluation.runner import plan_grid
from mmh_bench.evaluation.sealed import run_job, run_sealed
from mmh_bench.evaluation.sealed.job import MitigationFailure
from mmh_bench.evaluation.track import GridReport, Track, resolve_isolation
from mmh_bench.task.instance import SUBTYPE_CODE, TaskInstance
from mmh_bench.task.spec import TaskSpec
from mmh_bench.task.subtypes import CONSTRUCTED_SUBTYPES
from mmh_bench.threads import limited_threads
from .quality import condition_accuracy, precision_recall
from .result import MitigationCost, make_result, read_mitigation_result

if TYPE_CHECKING:  # pragma: no cover
    from .sd import MemBenchJudge

log = logging.getLogger(__name__)
__all__ = ["MitigationFailure", "MitigationTrack", "evaluate_mitigator", "mitigate", "mitigate_specs",
           "mitigation_metrics", "run_mitigator"]
MITIGATION_SCHEMA_VERSION = 1
DEFAULT_BATCH = 512
#: the mitigation track's own store (the detection store's scanner never reads it)
DEFAULT_RESULTS = "leaderboard/mitigation-results"
#: why a Stable Diffusion task is not applicable without a judge
NEEDS_GROUND_TRUTH = ("Stable Diffusion generations are scored against their prompts' ground-truth training "
                      "images: give --ground-truth DIR, --sscd FILE --sscd-sha256 HEX and --clip")
#: why a task that is not a conditional memorization task is not applicable
NOT_CONDITIONAL = "mitigation tasks are conditional memorization tasks"


def _judged(inst: TaskInstance, judge: "MemBenchJudge | None") -> "MemBenchJudge | None":
    """The judge when it scores ``inst`` (a Stable Diffusion task), else None: the copy rule does."""
    return judge if judge is not None and judge.applies(inst) else None


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


def result_name(mit: Mitigator) -> str:
    """``<name>[<every parameter>]``, file-safe: one result per setting of a sweep."""
    params = ",".join(f"{k}={v}" for k, v in sorted(mit.params().items()))
    stem = mit.name + (f"[{params}]" if params else "")
    return "".join(c if c.isalnum() or c in "-_.,=[]" else "_" for c in stem)


class MitigationTrack(Track):
    """Mitigators on conditional memorization tasks: every generation made again under the
    mitigator and labelled by the task's copy rule (or, on Stable Diffusion tasks, scored by
    ``judge`` as MemBench does). Options of a run: ``n`` (the first ``n`` generations of each
    instance; all by default), ``sweep`` (each mitigator at every setting of its sweep, else at its
    own), ``all_replicates`` (else replicate 0 alone stands for the task)."""

    kind: ClassVar[str] = "mitigator"

    def __init__(self, *, n: int | None = None, judge: "MemBenchJudge | None" = None, sweep: bool = True,
                 all_replicates: bool = False) -> None:
        self.n, self.judge, self.sweep, self.all_replicates = n, judge, sweep, all_replicates

    def ruled_out(self, mit: Any, spec: TaskSpec) -> str | None:
        if spec.track != "memorization" or not spec.conditional:
            return NOT_CONDITIONAL
        if spec.family == "stable-diffusion" and self.judge is None:  # not built for nothing
            return NEEDS_GROUND_TRUTH
        return None

    def why_not(self, mit: Any, inst: TaskInstance) -> str | None:
        if inst.spec.track != "memorization" or inst.labels is None:
            return "mitigation is scored on memorization tasks"
        if inst.noise is None or inst.sampler() is None:
            return "task keeps no replayable generation (initial noise and sampler)"
        if inst.cond is None:
            return "mitigation tasks are conditional"
        if not mit.access.grants_generation():
            return f"a mitigator generates: it needs Access.GENERATION, not {mit.access.label!r}"
        if inst.spec.family == "stable-diffusion":
            if _judged(inst, self.judge) is None:
                return NEEDS_GROUND_TRUTH
        elif "train" not in inst.arrays or inst.train_index.rule is None:
            return "task is labelled without the copy rule"
        missing = set(mit.requires) - set(getattr(inst.score_model(), "capabilities", ()))
        if missing:
            return f"model lacks {', '.join(sorted(missing))}"
        return None

    def settings(self, mit: Any) -> list[Any]:
        return mit.settings() if self.sweep else [mit.clone()]

    def select(self, insts: list[TaskInstance]) -> list[TaskInstance]:
        if not self.all_replicates:  # replicate 0 (the first published instance) stands for the task
            insts = sorted(insts, key=lambda i: i.instance_info().get("replicate", 0))[:1]
        for inst in insts:
            judge = _judged(inst, self.judge)
            if judge is not None:
                judge.scored(inst, self.n)  # a bad ground-truth folder stops the run here
        return insts

    def runs_here(self, inst: TaskInstance) -> bool:
        """A Stable Diffusion instance is scored by the judge's models, loaded in this process."""
        return _judged(inst, self.judge) is not None or inst.root is None

    def result_name(self, mit: Any) -> str:
        return result_name(mit)

    def _rows(self, n_samples: int) -> int:
        """How many of an instance's ``n_samples`` generations a run regenerates: the first ``n``."""
        return n_samples if self.n is None else min(self.n, n_samples)

    def _scored(self, inst: TaskInstance) -> tuple[TaskInstance, int | None]:
        """The instance whose generations are regenerated, and how many: a judged Stable Diffusion
        task's memorized prompts' generations, as an instance of their own."""
        judge = _judged(inst, self.judge)
        return (judge.scored(inst, self.n), None) if judge is not None else (inst, self.n)

    def header(self, inst: TaskInstance, mit: Any) -> dict[str, Any]:
        key, _ = mit.sweep
        return {"schema_version": MITIGATION_SCHEMA_VERSION, "track": "mitigation", "mitigator": mit.name,
                "mitigator_version": mit.version, "mitigator_params": mit.params(), "swept": key or None,
                "setting": mit.params().get(key) if key else None,
                "n_samples": self._rows(inst.n_samples), "unmitigated": None}

    def document(self, inst: TaskInstance, mit: Any, *, seed: int, isolation: str) -> dict[str, Any]:
        return super().document(self._scored(inst)[0], mit, seed=seed, isolation=isolation)

    def score(self, inst: TaskInstance, mit: Any, doc: dict[str, Any], *, seed: int, batch_size: int,
              isolation: str, timeout: float | None, threads: int, hide: Iterable[str | Path | None],
              progress: bool) -> None:
        judge = _judged(inst, self.judge)
        inst, n = self._scored(inst)
        if resolve_isolation(isolation, mit) == "in-process":
            with limited_threads(threads):  # as a sealed worker runs: the same threads either way
                samples, cost = run_mitigator(mit, inst, seed=seed, batch_size=batch_size, n=n)
        else:
            run = run_sealed(inst, mit, seed=seed, batch_size=batch_size, timeout=timeout, threads=threads,
                             hide=hide, n=n)
            samples, cost, doc["isolation"] = run.output, run.cost, run.isolation
        with limited_threads(threads):
            if judge is not None:
                doc["metrics"], doc["unmitigated"] = judge.metrics(inst, samples), judge.unmitigated(inst)
            else:
                doc["metrics"] = mitigation_metrics(inst, samples)
                doc["unmitigated"] = {"memorization": rate_with_ci(
                    label_generations(inst, inst.samples[:n])["memorized"])}
        doc["cost"] = {k: v for k, v in cost.items() if k in MitigationCost.model_fields}

    def run_here(self, mit: Any, inst: TaskInstance, *, seed: int, batch_size: int,
                 progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        inst, n = self._scored(inst)
        return run_mitigator(mit, inst, seed=seed, batch_size=batch_size, n=n)

    def validate(self, doc: dict[str, Any]) -> Any:
        return make_result(doc)

    def read(self, path: Path) -> Any:
        return read_mitigation_result(path)

    def still_current(self, old: Any, inst: Any, mit: Any) -> bool:
        """The same number of generations (and, scored by a judge, the same SSCD and CLIP weights
        and ground truth). ``inst``: the instance, or the engine's reference to one held by a
        worker (judged instances never are: they run here)."""
        judge = _judged(inst, self.judge)
        if judge is None:  # the copy rule scores the first n generations
            return old.n_samples == self._rows(inst.n_samples)
        scored_by = old.metrics.membench if old.metrics is not None else None
        return (old.n_samples == judge.scored(inst, self.n).n_samples and scored_by is not None
                and all(getattr(scored_by, k) == v for k, v in judge.identity().items()))

    def headline(self, res: Any) -> str:
        return f"memorized {res.metrics.memorization.rate:.3f}"


def evaluate_mitigator(mit: Mitigator, inst: TaskInstance, *, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                       threads: int = 1, n: int | None = None, isolation: str = "auto",
                       timeout: float | None = None, hide: Iterable[str | Path | None] = (),
                       judge: "MemBenchJudge | None" = None) -> Any:
    """The typed result of ``mit`` on the first ``n`` generations of ``inst`` (all by default;
    status ``failed`` with the error when it breaks). The unmitigated rate is the copy rule on the
    same generations as the task made them. ``judge`` scores Stable Diffusion tasks."""
    return MitigationTrack(n=n, judge=judge).evaluate(inst, mit, seed=seed, batch_size=batch_size, threads=threads,
                                                      isolation=isolation, timeout=timeout, hide=hide)


def mitigate(instances: Iterable[TaskInstance], mitigators: Iterable[Mitigator], results_dir: str | Path, *,
             seed: int = 0, force: bool = False, sweep: bool = True, progress: bool = True,
             n: int | None = None, isolation: str = "auto", timeout: float | None = None,
             hide: Iterable[str | Path | None] = (), batch_size: int = DEFAULT_BATCH,
             judge: "MemBenchJudge | None" = None, workers: int | None = 1, cluster: str | None = None
             ) -> GridReport:
    """Every applicable (instance, mitigator setting) pair on the first ``n`` generations of each
    given instance (all by default), through the runner's protocol. With ``sweep``, each mitigator
    runs at every setting of its sweep. ``isolation``, ``timeout``, ``hide``: as for detectors (the
    results folder is hidden from sealed workers). ``workers`` / ``cluster``: the pairs run as tasks
    of a Dask cluster (:func:`mmh_bench.evaluation.engine.run_instances_parallel`; ``workers=None``: sized
    to the machine); this process alone writes the results."""
    from mmh_bench.evaluation.engine import run_instances_parallel
    track = MitigationTrack(n=n, judge=judge, sweep=sweep, all_replicates=True)  # every instance given
    candidates = [s for mit in mitigators for s in track.settings(mit)]
    opts = dict(seed=seed, batch_size=batch_size, isolation=isolation, timeout=timeout,
                hide=[*hide, results_dir])
    work = [(inst, candidates) for inst in track.select(list(instances))]  # select checks the ground truth
    return run_instances_parallel(track, work, results_dir, GridReport(), force=force, progress=progress,
                                  opts=opts, workers=workers, cluster=cluster)


def mitigate_specs(specs: Iterable[TaskSpec], mitigators: Iterable[Mitigator], results_dir: str | Path, *,
                   cache_dir: str | Path | None = None, instances: str | Path | None = None,
                   all_replicates: bool = False, progress: bool = True, seed: int = 0, force: bool = False,
                   sweep: bool = True, n: int | None = None, isolation: str = "auto",
                   timeout: float | None = None, hide: Iterable[str | Path | None] = (),
                   batch_size: int = DEFAULT_BATCH, judge: "MemBenchJudge | None" = None,
                   workers: int | None = 1, cluster: str | None = None) -> GridReport:
    """:func:`mitigate` over task specs: each conditional memorization task's instances (the
    published ones in ``instances`` where the spec has them, else this machine's build), replicate
    0 alone unless ``all_replicates``; other tasks are reported not applicable. The cache and
    results folders are hidden from sealed workers."""
    from mmh_bench.evaluation.engine import run_grid
    track = MitigationTrack(n=n, judge=judge, sweep=sweep, all_replicates=all_replicates)
    plan = plan_grid(list(specs), list(mitigators), track=track, isolation=isolation,
                     hide=[*hide, cache_dir, results_dir])
    return run_grid(plan, results_dir, cluster=cluster, workers=workers, cache_dir=cache_dir, seed=seed,
                    batch_size=batch_size, force=force, progress=progress, isolation=isolation, timeout=timeout,
                    instances=instances, hide=list(hide))
