"""Describing a detector (or mitigator) without importing its code in the evaluator.

A submitted detector's module runs its top-level code when imported; in the evaluator, where task
instances and labels live, that code could patch the evaluator or read its memory. So for a
detector that will run sealed and is not a shipped baseline, the evaluator never imports it:

- ``python -m mmh_bench.evaluation.sealed --describe REF [--params JSON] [--out DIR] [--check SEED]`` runs in
  the same sandbox as a scoring worker, with no task data bound at all (the detector's file is
  copied in, as :func:`~mmh_bench.evaluation.sealed.write_view` does). It imports the detector, constructs it
  with the parameters and writes its metadata (``describe.json``); with ``--check`` it also runs
  the conformance checks (:func:`mmh_bench.evaluation.conformance.check_detector`) on the public ``mmh-check``
  task, built inside the sandbox's own ``/tmp``.
- :func:`describe_detector` (the evaluator's side) runs that job and returns a
  :class:`SealedDetector`: a stand-in built only from the metadata, carrying the original
  reference so that the scoring worker loads the real code inside its sandbox. A stand-in has the
  detector's name, access, version, parameters, group, note and requirements, clones itself, and
  refuses to score in this process.

Mitigators are described the same way (``--kind mitigator``; :class:`SealedMitigator`, whose
``settings()`` are the sweep's parameters as the worker recorded them), and checked by
:func:`mmh_bench.evaluation.conformance.check_mitigator`. The worker's side is
:mod:`.describe_worker`; the stand-ins are :mod:`.standin`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable


from .bwrap import VIEW_MOUNT, Limits, python_argv
from .process import LimitExceeded, WorkerFailure, launch
from .sandbox import choose_sandbox, hidden_paths, read_document
from .standin import DESCRIBE_FILE, SealedDetector, SealedMitigator, StandIn, _checked, _registry_error, standin

#: seconds a describe job may take (importing torch and the detector's own imports)
DESCRIBE_TIMEOUT = 120.0
#: ... and with the conformance checks (they build the small mmh-check task and score it four times)
CHECK_TIMEOUT = 900.0


# -- the evaluator's side --------------------------------------------------------------------------
def _is_file_ref(target: str) -> bool:
    return target.endswith(".py") or os.sep in target


def describe_detector(ref: str, params: dict[str, Any] | None = None, *, hide: Iterable[str | Path | None] = (),
                      timeout: float | None = None, sandbox: bool | None = None,
                      check_seed: int | None = None, kind: str = "detector") -> Any:
    """A :class:`SealedDetector` (with ``kind="mitigator"`` a :class:`SealedMitigator`) for ``ref``
    (``path/file.py:Class``, ``module:Class`` or an entry-point name, without parameters)
    constructed with ``params``, described in a sealed worker; this process never imports its code.

    ``check_seed``: also run the conformance checks there; the report is ``stand_in.check_report``
    (a :class:`mmh_bench.evaluation.conformance.CheckReport`). Raises :class:`~mmh_bench.registry.RegistryError`
    with the worker's error (import failure, not a Detector, constructor raising, timeout)."""
    params = dict(params or {})
    limits = Limits.from_env(timeout if timeout is not None else
                             DESCRIBE_TIMEOUT if check_seed is None else CHECK_TIMEOUT)
    try:
        params_json = json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _registry_error(f"{kind} {ref!r}: parameters are not plain JSON ({exc})") from None
    target, colon, attr = ref.rpartition(":")
    file = Path(target) if colon and _is_file_ref(target) else None
    if file is not None and not file.is_file():
        raise _registry_error(f"{kind} file {target!r} does not exist")
    hidden = hidden_paths(hide)
    use_sandbox = choose_sandbox(sandbox, hidden)
    with tempfile.TemporaryDirectory(prefix="mmh-describe-") as tmp_name:
        tmp = Path(tmp_name)
        view, out = tmp / "view", tmp / "out"
        (view / "detector").mkdir(parents=True)
        out.mkdir()
        inner_ref, inside = ref, ""
        if file is not None:
            shutil.copyfile(file, view / "detector" / file.name)
            inside = f"{VIEW_MOUNT if use_sandbox else view}/detector/{file.name}"
            inner_ref = f"{inside}:{attr}"

        def argv(_: str, out_dir: str) -> list[str]:
            args = ["--describe", inner_ref, "--kind", kind, "--params", params_json, "--out", out_dir]
            return python_argv("mmh_bench.evaluation.sealed",
                               args + (["--check", str(int(check_seed))] if check_seed is not None else []))
        try:
            rc, tail = launch(tmp, argv, sandbox=use_sandbox, limits=limits, threads=1, hide=hidden)
            doc = read_document(out, DESCRIBE_FILE, rc, tail, limits)
        except LimitExceeded as exc:
            raise _registry_error(f"describing {kind} {ref!r} in a sealed worker: {exc} (does importing it, "
                                  "or its constructor, block?)") from None
        except WorkerFailure as exc:  # no description came back
            raise _registry_error(f"describing {kind} {ref!r}: {exc}") from None
    if doc.get("status") != "ok":
        err = str(doc.get("error")) or "the worker reported a failure"
        if inside:
            err = err.replace(inside, str(file))
        raise _registry_error(f"{kind} {ref!r} (described in a sealed worker): {err}")
    meta = _checked(doc.get(kind), ref, kind)
    if file is not None:  # the module name the evaluator itself would have given the file
        from mmh_bench.registry import file_module_name
        from .view import FILE_MODULE_PREFIX
        module, _, qual = meta["source"].partition(":")
        if module.startswith(FILE_MODULE_PREFIX):
            meta["source"] = f"{file_module_name(file)}:{qual}"
    det = standin(meta, ref, ref=f"detector/{file.name}:{attr}" if file is not None else ref, file=file, kind=kind)
    if check_seed is not None:
        det.check_report = _report(doc.get("check"), meta["name"])  # type: ignore[attr-defined]
    return det


def _report(doc: Any, name: str) -> Any:
    from mmh_bench.evaluation.check_report import Check, CheckReport
    if not isinstance(doc, dict) or not isinstance(doc.get("checks"), list):
        report = CheckReport(name, "-")
        report.add("contract", False, "the sealed worker returned no conformance report")
        return report
    report = CheckReport(name, str(doc.get("task", "-")), kind=str(doc.get("kind", "detector")))
    for c in doc["checks"]:
        if isinstance(c, dict):
            report.checks.append(Check(str(c.get("name")), bool(c.get("passed")), str(c.get("message")),
                                       str(c.get("level", "error"))))
    if not report.checks:
        report.add("contract", False, "the sealed worker returned an empty conformance report")
    return report


__all__ = ["DESCRIBE_TIMEOUT", "SealedDetector", "SealedMitigator", "StandIn", "describe_detector", "standin"]
