"""The describe worker's side (``python -m mmh_bench.evaluation.sealed --describe REF``): import and
construct a submitted detector or mitigator inside the sandbox, write its metadata, and with
``--check`` run the conformance checks there."""
from __future__ import annotations

import argparse
import json
import tempfile
import traceback
from pathlib import Path
from typing import Any, Sequence

from mmh_bench.api.detector import Detector, LIDEstimator
from mmh_bench.files import write_json
from .standin import DESCRIBE_FILE, META_KEYS, _registry_error


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
