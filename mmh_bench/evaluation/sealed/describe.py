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
``settings()`` are the sweep's parameters as the worker recorded them); they have no conformance
checks.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

from mmh_bench.api.access import Access
from mmh_bench.api.detector import GROUPS, Detector, LIDEstimator
from mmh_bench.files import write_json
from mmh_bench.mitigation.contract import Mitigator

#: seconds a describe job may take (importing torch and the detector's own imports)
DESCRIBE_TIMEOUT = 120.0
#: ... and with the conformance checks (they build the small mmh-check task and score it four times)
CHECK_TIMEOUT = 900.0
DESCRIBE_FILE = "describe.json"
#: what a description holds, by kind
COMMON_KEYS = ("name", "access", "version", "params", "cost_note", "requires", "source")
META_KEYS = {"detector": COMMON_KEYS + ("group", "note", "reference", "is_lid_estimator"),
             "mitigator": COMMON_KEYS + ("sweep", "settings")}


def _registry_error(msg: str) -> Exception:
    from mmh_bench.registry import RegistryError
    return RegistryError(msg)


# -- the stand-in -------------------------------------------------------------------------------
class StandIn:
    """Base of the stand-ins :func:`standin` builds: metadata only, no code of the detector's
    (or mitigator's).

    ``sealed_ref``: how the scoring worker finds the class (``detector/FILE.py:Class`` for a file,
    which ``sealed_file`` ships into the view; ``module:Class`` or an entry-point name otherwise).
    ``sealed_source``: the class's ``module:qualname``, as recorded in the result."""

    sealed_ref: ClassVar[str] = ""
    sealed_file: ClassVar[Path | None] = None
    sealed_source: ClassVar[str] = ""
    sealed_origin: ClassVar[str] = ""  # the reference as the user gave it
    sealed_meta: ClassVar[dict[str, Any]] = {}
    sealed_kind: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        self._params = copy.deepcopy(params)

    def params(self) -> dict[str, Any]:
        return copy.deepcopy(self._params)

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return self.params()

    def set_params(self, **params: Any) -> "StandIn":
        raise TypeError(f"{self.sealed_origin}: a sealed stand-in's parameters are fixed; describe it again")

    def clone(self) -> "StandIn":
        return type(self)(**self._params)

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise RuntimeError(f"{self.sealed_kind} {self.name!r} ({self.sealed_origin}) runs only sealed: its code "
                           "is never imported in the evaluator (evaluate with isolation='sealed' or 'auto')")

    fit = _refuse

    def __repr__(self) -> str:
        return (f"Sealed{self.sealed_kind.title()}({self.sealed_origin!r}, name={self.name!r}, "
                f"access={self.access.label})")


class SealedDetector(StandIn, Detector):
    """A detector's stand-in."""

    sealed_kind: ClassVar[str] = "detector"
    score = estimate = StandIn._refuse  # type: ignore[assignment]


class SealedMitigator(StandIn, Mitigator):
    """A mitigator's stand-in; its settings are those the worker recorded."""

    sealed_kind: ClassVar[str] = "mitigator"
    generate = StandIn._refuse  # type: ignore[assignment]

    def settings(self) -> list["Mitigator"]:
        return [type(self)(**p) for p in self.sealed_meta["settings"]]


STANDIN_BASE: dict[str, type] = {"detector": SealedDetector, "mitigator": SealedMitigator}


def _is_names(obj: Any) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) for k in obj)


def _checked(meta: Any, origin: str, kind: str = "detector") -> dict[str, Any]:
    """The worker's metadata, type-checked: it comes from untrusted code."""
    bad = lambda what: _registry_error(f"{kind} {origin!r}: its description has {what}")  # noqa: E731
    keys = META_KEYS[kind]
    if not isinstance(meta, dict) or set(keys) - set(meta):
        raise bad(f"missing fields {sorted(set(keys) - set(meta or {}))}")
    strings = ("name", "access", "version", "cost_note", "source") + (("group", "note") if kind == "detector" else ())
    for key in strings:
        if not isinstance(meta[key], str):
            raise bad(f"a non-string {key}")
    if not meta["name"]:
        raise bad("no name")
    if not _is_names(meta["params"]):
        raise bad("parameters that are not a mapping of names")
    if not isinstance(meta["requires"], list) or not all(isinstance(r, str) for r in meta["requires"]):
        raise bad("requirements that are not a list of strings")
    if kind == "detector":
        if meta["group"] not in ("", *GROUPS):
            raise bad(f"group {meta['group']!r}, not one of {GROUPS}")
        for key in ("reference", "is_lid_estimator"):
            if not isinstance(meta[key], bool):
                raise bad(f"a non-boolean {key}")
    else:
        sweep = meta["sweep"]
        if not (isinstance(sweep, list) and len(sweep) == 2 and isinstance(sweep[0], str)
                and isinstance(sweep[1], list)):
            raise bad("a sweep that is not [parameter, [settings]]")
        if not isinstance(meta["settings"], list) or not meta["settings"] or not all(map(_is_names, meta["settings"])):
            raise bad("settings that are not a list of parameter mappings")
    try:
        Access.parse(meta["access"])
    except ValueError as exc:
        raise bad(f"access {meta['access']!r} ({exc})") from None
    _schema_checked(meta, bad, kind)
    return meta


def _schema_checked(meta: dict[str, Any], bad: Any, kind: str) -> None:
    """The description against the rules its result will be written under (a name that is a
    path, a control character in a note, ...), and the group rules: untrusted code ranks where
    its access puts it, or lower (``shortcut``, ``chance``), and never restates the labelling rule."""
    from pydantic import TypeAdapter, ValidationError
    from mmh_bench.api.detector import DOWNGRADES
    from mmh_bench.leaderboard.schema import Label, Name, Note, Plain
    fields: list[tuple[str, Any]] = [("name", Name), ("version", Label), ("source", Label),
                                     ("params", dict[Label, Plain])]
    if kind == "detector" and meta["note"]:
        fields.append(("note", Note))
    for key, typ in fields:
        try:
            TypeAdapter(typ).validate_python(meta[key])
        except ValidationError as exc:
            raise bad(f"a {key} the result schema refuses: {exc.errors()[0]['msg']}") from None
    if kind == "detector":
        if meta["reference"]:
            raise bad("reference = True: only the shipped copy-rule restates the labelling rule")
        if meta["group"] and meta["group"] not in DOWNGRADES:
            raise bad(f"group {meta['group']!r}: a detector's group follows its access; it may only place "
                      f"itself lower ({' or '.join(DOWNGRADES)})")


def standin(meta: dict[str, Any], origin: str, *, ref: str | None = None, file: Path | None = None,
            kind: str = "detector") -> StandIn:
    """A stand-in for the described detector (or mitigator), constructed with its recorded parameters.

    ``origin``: the reference as given (without parameters); ``ref``/``file``: what the scoring
    worker loads (default ``origin``; a file reference ships ``file`` as ``detector/NAME``)."""
    meta = _checked(meta, origin, kind)
    base = STANDIN_BASE[kind]
    qualname = meta["source"].rpartition(":")[2] or kind.title()
    bases = (base, LIDEstimator) if meta.get("is_lid_estimator") else (base,)
    ns = {"name": meta["name"], "access": Access.parse(meta["access"]), "version": meta["version"],
          "cost_note": meta["cost_note"], "requires": tuple(meta["requires"]),
          "sealed_ref": ref or origin, "sealed_file": file, "sealed_source": meta["source"],
          "sealed_origin": origin, "sealed_meta": copy.deepcopy(meta), "__module__": __name__,
          "__qualname__": f"{base.__name__}[{qualname}]"}
    if kind == "detector":
        ns.update(reference=meta["reference"], group=meta["group"], note=meta["note"])
    else:
        ns["sweep"] = (meta["sweep"][0], tuple(meta["sweep"][1]))
    cls = type(f"{base.__name__}[{qualname}]", bases, ns)
    return cls(**meta["params"])


# -- the worker's side ---------------------------------------------------------------------------
def _plain_params(obj: Any, kind: str) -> dict[str, Any]:
    recorded = obj.params()
    try:
        json.dumps(recorded, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _registry_error(f"{kind} {obj.name!r}: parameters are not plain JSON ({exc})") from None
    return recorded


def describe_here(ref: str, params: dict[str, Any], kind: str = "detector") -> tuple[Any, dict[str, Any]]:
    """Import and construct the detector (or mitigator) in this process (a sandboxed worker); its metadata."""
    from mmh_bench.api.detector import claimed_group
    from mmh_bench.registry import check_params, load_detector_class
    cls = load_detector_class(ref, kind)
    check_params(cls, params, ref)
    try:
        det = cls(**params)
    except Exception as exc:
        raise _registry_error(f"constructing {kind} {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    meta = {"name": det.name, "access": det.access.label, "version": det.version,
            "params": _plain_params(det, kind), "cost_note": det.cost_note or "", "requires": list(det.requires),
            "source": f"{type(det).__module__}:{type(det).__qualname__}"}
    if kind == "detector":
        meta.update(group=claimed_group(det), note=det.note or "", reference=bool(det.reference),
                    is_lid_estimator=isinstance(det, LIDEstimator))
    else:
        meta.update(sweep=[det.sweep[0], list(det.sweep[1])],
                    settings=[_plain_params(s, kind) for s in det.settings()])
    return det, meta


def _check(det: Detector, seed: int, kind: str = "detector") -> dict[str, Any]:
    from mmh_bench.evaluation.conformance import check_detector, check_mitigator
    check = check_mitigator if kind == "mitigator" else check_detector
    with tempfile.TemporaryDirectory(prefix="mmh-check-") as cache:  # the sandbox's own /tmp
        report = check(det, cache_dir=cache, seed=seed)
    return {"detector": report.detector, "task": report.task, "kind": kind, "checks": report.to_list()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmh_bench.evaluation.sealed --describe",
                                description="Import and construct a detector (or mitigator); write its metadata "
                                            "as JSON.")
    p.add_argument("--describe", required=True, metavar="REF", help="module:Class, path/file.py:Class or a name")
    p.add_argument("--kind", choices=tuple(META_KEYS), default="detector", help="what REF names (default: detector)")
    p.add_argument("--params", default="{}", help="constructor parameters as a JSON object")
    p.add_argument("--out", type=Path, default=None, help=f"folder for {DESCRIBE_FILE} (default: print it)")
    p.add_argument("--check", type=int, default=None, metavar="SEED",
                   help="also run the conformance checks (mmh_bench.evaluation.conformance) under this seed")
    args = p.parse_args(argv)
    try:
        params = json.loads(args.params)
        if not isinstance(params, dict):
            raise ValueError("--params must be a JSON object")
        det, meta = describe_here(args.describe, params, args.kind)
        doc: dict[str, Any] = {"status": "ok", args.kind: meta}
        if args.check is not None:
            doc["check"] = _check(det, args.check, args.kind)
    except BaseException as exc:  # anything the detector's import raises (even SystemExit) is its failure
        doc = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
               "traceback": traceback.format_exc()[-8000:]}
    if args.out is None:
        print(json.dumps(doc, indent=1))
    else:
        write_json(args.out / DESCRIBE_FILE, doc)
    return 0 if doc["status"] == "ok" else 1


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
    from .bwrap import VIEW_MOUNT, Limits, python_argv
    from .sandbox import LimitExceeded, WorkerFailure, choose_sandbox, hidden_paths, launch, read_document
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
    from mmh_bench.evaluation.conformance import Check, CheckReport
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
