"""Conformance checks for every track's entries, in the spirit of scikit-learn's ``check_estimator``.

Run before submitting::

    from mmh_bench.evaluation.conformance import check_detector
    report = check_detector(MyDetector())
    print(report)          # one line per check
    assert report.ok

By default the checks run on ``mmh-check``, a tiny conditional synthetic task shipped inside
the package (it builds in a few seconds on a CPU and is cached like any task). They test the
contract, not detection quality:

- ``contract``: a :class:`~mmh_bench.Detector` with a usable name, an :class:`~mmh_bench.Access`
  level, a string version and plain JSON hyper-parameters (they are recorded with each result);
- ``applicable``: the task offers what the detector needs;
- ``access``: ``fit`` and ``score`` run with a context granting exactly the declared access,
  without an :class:`~mmh_bench.AccessError`;
- ``output``: one number per sample, shape ``[n]``; ``finite``: no NaN or infinity;
  (``fit``/``score`` run through the evaluator's own loop, :func:`mmh_bench.evaluation.runner.compute_scores`)
- ``fitted_state``: ``fit`` changes no constructor parameter and adds no public attribute (fitted
  state goes in ``_private`` or ``trailing_underscore_`` attributes, as in scikit-learn), so the
  parameters recorded with a result are the ones the detector was built with;
- ``deterministic``: two fresh runs under the same seed give the same scores;
- ``result``: the evaluator's result for the detector passes the leaderboard schema;
- warnings (do not fail the report): ``batch_independent`` (scores do not depend on how the
  samples are split into batches) and ``informative`` (scores are not all equal).

:func:`check_mitigator` holds a mitigator to the same checks on the same task, through the same
function (:func:`check_entry` with the mitigation track): ``contract`` (plus ``sweep``: every
setting of its trade-off curve constructs, with plain JSON parameters), ``applicable``,
``access``, ``output`` (one finished sample per row of the noise, shape ``[n, *sample shape]``),
``finite``, ``fitted_state``, ``deterministic`` and ``result``; its warnings are
``batch_independent`` and ``uses_model`` (it generated through the task's network, so it is a
sampling-time mitigation rather than a replacement of the samples).
"""
from __future__ import annotations

import copy
import json
import traceback
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mmh_bench.api.access import Access
from mmh_bench.api.context import AccessError
from mmh_bench.api.detector import Detector
from mmh_bench.api.mitigator import Mitigator
from mmh_bench.task.spec import TaskSpec, load_spec
from .check_report import Check, CheckReport
from .detection import DetectionTrack
from .sealed import DetectorFailure
from .sealed.standin import StandIn
from .track import Track

CHECK_TASK_FILE = "mmh-check.toml"
#: Outputs of two runs under one seed must agree to this relative tolerance...
DETERMINISM_RTOL = 1e-6
#: ... and absolute one, by what the output is (scores; samples in float32 pixel units)
DETERMINISM_ATOL = {"detector": 1e-12, "mitigator": 1e-6}
#: Tolerance of the batch-split comparison (float32 kernels may differ by batch size).
BATCH_RTOL, BATCH_ATOL = 1e-4, 1e-5
ODD_BATCH = 7


def check_task_spec() -> TaskSpec:
    """The shipped conformance-check task (conditional, 2-D, ~120 samples)."""
    return load_spec(Path(str(resources.files("mmh_bench.task.data") / CHECK_TASK_FILE)))


def _instance(task: Any, cache_dir: str | Path | None) -> Any:
    from mmh_bench.task.build import build_task
    from mmh_bench.task.instance import TaskInstance
    from mmh_bench.registry import get_task
    if isinstance(task, TaskInstance):
        return task
    spec = check_task_spec() if task is None else task if isinstance(task, TaskSpec) else get_task(str(task))
    return build_task(spec, cache_dir, progress=False)


def _resolve(entry: Any, kind: str) -> Any:
    from mmh_bench.registry import make_detector
    if isinstance(entry, type):
        return entry()
    return make_detector(entry, kind)  # instances are returned as they are


def _contract(entry: Any, report: CheckReport, base: type) -> bool:
    from mmh_bench.leaderboard.schema import check_name
    if not isinstance(entry, base):
        return report.add("contract", False, f"{type(entry).__name__} is not a subclass of mmh_bench.{base.__name__}")
    problems = []
    try:
        if not isinstance(entry.name, str) or not entry.name or len(entry.name) > 64:
            raise ValueError("must be a non-empty string of at most 64 characters")
        check_name(entry.name)
    except ValueError as exc:
        problems.append(f"name {entry.name!r} {exc}")
    if not isinstance(entry.access, Access) or not entry.access:
        problems.append(f"access {entry.access!r} is not an mmh_bench.Access level")
    if not isinstance(entry.version, str) or not entry.version:
        problems.append(f"version {entry.version!r} must be a non-empty string")
    try:
        params = entry.params()
        json.dumps(params, allow_nan=False)
        if not isinstance(params, dict) or not all(
                isinstance(k, str) and isinstance(v, (bool, int, float, str, type(None))) for k, v in params.items()):
            raise TypeError("params() must map strings to plain values")
    except (TypeError, ValueError) as exc:
        problems.append(f"params() is not plain JSON: {exc}")
    except AttributeError as exc:
        problems.append(str(exc))
    else:
        try:
            entry.clone()
        except Exception as exc:  # sklearn.base.clone: the constructor must store its arguments as given
            problems.append(f"cannot clone from the constructor's parameters: {exc}")
    if problems:
        return report.add("contract", False, "; ".join(problems))
    return report.add("contract", True, f"name {entry.name!r}, access {entry.access.label!r}, "
                      f"version {entry.version!r}")


def _sweep(mit: Any, report: CheckReport) -> bool:
    """Every setting of the mitigator's sweep constructs, with plain JSON parameters."""
    key, values = mit.sweep
    try:
        if key and (key not in mit.params() or not values):
            raise ValueError(f"sweep names {key!r}, which is not a constructor parameter, or lists no settings")
        settings = mit.settings()
        for s in settings:
            json.dumps(s.params(), allow_nan=False)
    except Exception as exc:
        return report.add("sweep", False, f"{type(exc).__name__}: {exc}")
    return report.add("sweep", True, f"{len(settings)} setting(s) of {key}" if key else "a single setting")


def _fitted_state(base: Any, inst: Any, seed: int, report: CheckReport) -> None:
    from .detection import make_context
    entry = base.clone()
    before, public = copy.deepcopy(entry.params()), {k for k in vars(entry) if not k.startswith("_")}
    try:
        entry.fit(make_context(entry, inst, seed=seed, generating=isinstance(entry, Mitigator))[0])
    except Exception as exc:  # the scoring runs report it; here only fit's side effects matter
        report.add("fitted_state", False, f"fit failed: {type(exc).__name__}: {exc}")
        return
    after = entry.params()
    changed = sorted(k for k in before if after.get(k) != before[k])
    added = sorted(k for k in vars(entry) if not k.startswith("_") and not k.endswith("_") and k not in public)
    problems = ([f"fit changed constructor parameter(s) {changed}"] if changed else []) + (
        [f"fit added public attribute(s) {added}; name fitted state with a trailing underscore "
         "(e.g. self.t0_) or a leading one"] if added else [])
    report.add("fitted_state", not problems, "; ".join(problems) or
               "fit keeps the constructor's parameters; fitted state is _private or trailing_")


def _attempt(run: Any) -> tuple[np.ndarray | None, str, str, dict[str, Any]]:
    """One run of ``run()`` (the evaluator's own loop, returning output and cost): ``(output, "",
    "", cost)``, or ``(None, check, why, {})`` with the check that failed: ``access``, ``output``
    (wrong shape), ``finite`` (NaN or infinity) or ``runs`` (anything else it raised)."""
    try:
        out, cost = run()
        return out, "", "", cost
    except AccessError as exc:
        return None, "access", str(exc), {}
    except DetectorFailure as exc:  # a mitigator's MitigationFailure is one too
        return None, "finite" if "NaN" in str(exc) or "finite" in str(exc) else "output", str(exc), {}
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return None, "runs", f"{type(exc).__name__}: {exc} (at {Path(tb.filename).name}:{tb.lineno})", {}


def _batch_check(report: CheckReport, whole: np.ndarray, split: np.ndarray | None, error: str, what: str) -> None:
    """The ``batch_independent`` warning: outputs in batches of :data:`ODD_BATCH` against one batch."""
    if split is None:
        report.add("batch_independent", False, f"batches of {ODD_BATCH} failed: {error}", "warning")
        return
    same = np.allclose(whole, split, rtol=BATCH_RTOL, atol=BATCH_ATOL)
    report.add("batch_independent", same, f"{what} do not depend on the batch split" if same else
               f"batches of {ODD_BATCH} change {what} by up to {float(np.max(np.abs(whole - split))):.3g}; "
               "seed per sample (e.g. ctx.rng(int(i)) for i in batch.index)", "warning")


def check_entry(entry: Any, track: Track, task: Any = None, *, seed: int = 0, batch_size: int = 512,
                cache_dir: str | Path | None = None) -> CheckReport:
    """The conformance checks of any track's entry (an instance, a class, or a registry reference)
    on ``task`` (a name, spec or built instance; default the shipped ``mmh-check`` task), through
    the track's own loop and result model. The entry you pass is not modified: every run uses a
    fresh clone, as the evaluator does."""
    kind, mitigator = track.kind, track.kind == "mitigator"
    try:
        base = _resolve(entry, kind)
    except Exception as exc:  # a broken class or reference is a failed check, not a crash
        report = CheckReport(str(entry), "-", kind=kind)
        report.add("contract", False, f"cannot construct the {kind}: {type(exc).__name__}: {exc}")
        return report
    if isinstance(base, StandIn):  # metadata only: its code runs in sandboxed workers alone
        report = CheckReport(base.name, "-", kind=kind)
        report.add("contract", False, f"{base!r} is a sealed stand-in with no code to check here; check the "
                   "reference in its sandbox: mmh_bench.evaluation.sealed.describe_detector(ref, check_seed=0).check_report")
        return report
    inst = _instance(task, cache_dir)
    report = CheckReport(getattr(base, "name", type(base).__name__), inst.spec.name, kind=kind)
    if not _contract(base, report, Mitigator if mitigator else Detector) or (mitigator and not _sweep(base, report)):
        return report
    why = track.why_not(base, inst)
    if not report.add("applicable", why is None, f"the task offers what the {kind} needs" if why is None else why):
        return report
    verb, what = ("generate", "samples") if mitigator else ("fit and score", "scores")

    def attempt(bs: int) -> tuple[np.ndarray | None, str, str, dict[str, Any]]:
        # the evaluator's own loop: the context it builds is exactly what a real run grants
        return _attempt(lambda: track.run_here(base.clone(), inst, seed=seed, batch_size=bs))

    first, where, msg, cost = attempt(batch_size)
    if first is None:
        if where == "access":
            report.add("access", False, f"{msg} (declared {base.access.label!r}; declare what the {kind} uses)")
        elif where == "runs":
            report.add("runs", False, msg)
        else:
            report.add("access", True, f"{verb} ran with exactly {base.access.label!r}")
            if where == "finite":
                report.add("output", True, "one output per sample")
            report.add(where, False, msg)
        return report
    report.add("access", True, f"{verb} ran with exactly {base.access.label!r}, no AccessError")
    report.add("output", True, f"shape {list(first.shape)}: " + (
        "one finished sample per initial noise" if mitigator else f"one score per sample of {len(first)}"))
    report.add("finite", True, "no NaN or infinity")
    _fitted_state(base, inst, seed, report)

    second, _, msg2, _ = attempt(batch_size)
    if second is None:
        report.add("deterministic", False, f"second run failed: {msg2}")
    elif np.array_equal(first, second):
        report.add("deterministic", True, f"two runs under one seed gave identical {what}")
    else:
        close = np.allclose(first, second, rtol=DETERMINISM_RTOL, atol=DETERMINISM_ATOL[kind], equal_nan=False)
        diff = float(np.max(np.abs(first - second)))
        report.add("deterministic", close, f"two runs under one seed differ by at most {diff:.3g}" +
                   ("" if close else "; draw randomness from ctx.rng() / ctx.seed"))

    split, _, msg3, _ = attempt(ODD_BATCH)
    _batch_check(report, first, split, msg3, what)
    if mitigator:
        nfe = float(cost.get("nfe_per_sample", 0.0))
        report.add("uses_model", nfe > 0, f"{nfe:g} network evaluations per sample (counted by the evaluator)"
                   if nfe > 0 else "no network evaluation: the samples were not generated by the task's model",
                   "warning")
    else:
        spread = float(np.ptp(first)) if len(first) else 0.0
        report.add("informative", spread > 0, "scores vary" if spread > 0 else
                   "all scores are equal: every AUROC will be 0.5", "warning")

    if not report.ok:  # the evaluator's result is only worth checking for a conforming entry
        return report
    report.add("cost", True, f"{cost.get('nfe_per_sample', 0)} network evaluations per sample, "
               f"{cost.get('seconds', 0):.2f} s (counted by the evaluator)", "info")
    res = track.evaluate(inst, base.clone(), seed=seed, batch_size=batch_size, isolation="in-process")
    report.add("result", res.status == "ok", "the evaluator's result passes the result schema"
               if res.status == "ok" else f"the evaluator recorded a failure: {res.error}")
    return report


def check_detector(det: Detector | type[Detector] | str, task: Any = None, *, seed: int = 0,
                   batch_size: int = 512, cache_dir: str | Path | None = None) -> CheckReport:
    """The conformance checks of a detector (:func:`check_entry` on the detection track).
    They run in this process, importing the detector: they are the developer's own check.
    ``mmh-bench submit`` runs them inside its sandboxed describe worker instead
    (:func:`mmh_bench.evaluation.sealed.describe_detector` with ``check_seed``), never in the evaluator."""
    return check_entry(det, DetectionTrack(), task, seed=seed, batch_size=batch_size, cache_dir=cache_dir)


def check_mitigator(mit: Any, task: Any = None, *, seed: int = 0, batch_size: int = 512,
                    cache_dir: str | Path | None = None, n: int | None = None) -> CheckReport:
    """The conformance checks of a mitigator (:func:`check_entry` on the mitigation track): every
    run regenerates the task's samples (its first ``n`` generations; all by default) through the
    evaluator's own loop. ``mmh-bench submit --kind mitigator`` runs it inside the sandboxed
    describe worker."""
    from mmh_bench.mitigation.evaluate import MitigationTrack
    return check_entry(mit, MitigationTrack(n=n), task, seed=seed, batch_size=batch_size, cache_dir=cache_dir)


__all__ = ["Check", "CheckReport", "check_detector", "check_entry", "check_mitigator", "check_task_spec"]
