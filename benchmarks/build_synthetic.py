"""Build every synthetic and LID task cold and report wall time, peak memory and label balance.

Why: the default suite's synthetic part must build in under ten minutes on two CPU cores, and each
task must reach its declared label balance; this measures both instead of assuming them. Every
task is built in its own subprocess (so peak memory is that build's alone) into a fresh temporary
cache. With ``--flipd`` it also runs FLIPD on each built model and reports its median LID estimate
for non-memorized samples and for each memorized subtype.

    .venv/bin/python benchmarks/build_synthetic.py                  # all synthetic + LID tasks
    .venv/bin/python benchmarks/build_synthetic.py --suite default  # only those in a suite
    .venv/bin/python benchmarks/build_synthetic.py --tasks syn100-both --flipd --json out.json

Timings are only comparable on an otherwise idle machine; say how loaded it was when you quote them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FAMILIES = ("synthetic", "lid")


def _one(task: str, cache: str, flipd: bool, flipd_t0: str | None = None) -> dict[str, Any]:
    """Build one task in this process; return its figures (runs in the child)."""
    import numpy as np
    import torch

    from mmh_bench.task.build import BuildError, build_task
    from mmh_bench.registry import get_task

    spec = get_task(task)
    t0 = time.perf_counter()
    row: dict[str, Any] = {"task": spec.name, "family": spec.family, "track": spec.track,
                           "dim": getattr(spec.model.data, "dim", None), "conditional": spec.conditional,
                           "suites": list(spec.suites), "threads": torch.get_num_threads()}
    try:
        inst = build_task(spec, cache, progress=False)
    except BuildError as exc:
        row.update(status="build failed", error=str(exc), seconds=round(time.perf_counter() - t0, 1))
        return row
    row["seconds"] = round(time.perf_counter() - t0, 1)
    row["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    row["status"] = "ok"
    s = inst.summary()
    row["dim"] = s["shape"][0] if len(s["shape"]) == 1 else s["shape"]
    for key in ("n_samples", "n_train", "memorized_frac", "per_subtype"):
        if key in s:
            row[key] = s[key]
    if "null_copy_rate" in inst.meta:
        row["null_copy_rate"] = inst.meta["null_copy_rate"]
    if flipd and inst.meta.get("model"):
        try:
            row["flipd"] = _flipd(inst, np, flipd_t0)
        except Exception as exc:  # the build's figures stand even when the detector fails
            row["flipd"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return row


def _flipd(inst: Any, np: Any, t0: str | None) -> dict[str, Any]:
    """Median FLIPD estimate per subtype (memorization tasks) or MAE (LID tasks)."""
    from mmh_bench.registry import load_detector_class
    from mmh_bench.evaluation.runner import compute_scores

    cls = load_detector_class("flipd")
    det = cls() if t0 is None else cls(t0=t0)
    scores, cost = compute_scores(det, inst, seed=0)
    est = -scores if inst.spec.track == "memorization" else scores
    out: dict[str, Any] = {"params": det.params(), "seconds": cost["seconds"]}
    if inst.labels is None:
        out["mae"] = float(np.mean(np.abs(est - inst.lid_star)))
        out["median_by_lid_star"] = {f"{v:g}": round(float(np.median(est[inst.lid_star == v])), 3)
                                     for v in np.unique(inst.lid_star)}
        return out
    from mmh_bench.task.instance import SUBTYPES
    lab = inst.labels.astype(bool)
    out["median_not_memorized"] = round(float(np.median(est[~lab])), 3) if (~lab).any() else None
    out["median_memorized"] = round(float(np.median(est[lab])), 3) if lab.any() else None
    for code, name in SUBTYPES.items():
        rows = inst.subtype == code
        if code and rows.any():
            out[f"median_{name}"] = round(float(np.median(est[rows])), 3)
    if 0 < lab.sum() < len(lab):
        from sklearn.metrics import roc_auc_score
        out["auroc"] = round(float(roc_auc_score(lab, scores)), 4)
    return out


def _tasks(args: argparse.Namespace) -> list[str]:
    from mmh_bench.registry import all_tasks, resolve_tasks
    if args.tasks:
        return [s.name for s in resolve_tasks(args.tasks)]
    specs = [s for s in all_tasks().values() if s.family in FAMILIES]
    if args.suite:
        specs = [s for s in specs if args.suite in s.suites]
    return [s.name for s in specs]


def _table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate
    body = []
    for r in rows:
        sub = r.get("per_subtype") or {}
        fl = r.get("flipd") or {}
        body.append([r["task"], r.get("dim"), "yes" if r.get("conditional") else "",
                     "default" if "default" in r.get("suites", []) else "", r.get("seconds"),
                     r.get("peak_mb"), r.get("n_samples"),
                     None if r.get("memorized_frac") is None else f"{r['memorized_frac']:.3f}",
                     sub.get("DD"), sub.get("OD"),
                     None if r.get("null_copy_rate") is None else f"{r['null_copy_rate']:.4f}",
                     fl.get("median_not_memorized", fl.get("mae")), fl.get("median_memorized"),
                     r["status"]])
    return tabulate(body, headers=["task", "D", "cond", "suite", "build s", "peak MB", "samples",
                                   "mem frac", "DD", "OD", "null rate", "FLIPD non-mem / MAE",
                                   "FLIPD mem", "status"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=None, help="comma-separated names or suite:NAME (default: every "
                    "synthetic and LID task)")
    ap.add_argument("--suite", default=None, help="only the synthetic/LID tasks of this suite")
    ap.add_argument("--flipd", action="store_true", help="also run FLIPD on each built model")
    ap.add_argument("--flipd-t0", default=None, help="FLIPD's t0: a float or the name of its rule "
                    "(default: the detector's default)")
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cache", default=None, help="build into this cache folder and keep it (default: a "
                    "fresh temporary folder, deleted afterwards); must be empty for a cold build")
    args = ap.parse_args(argv)
    if args.one:  # child: build one task, print one JSON line
        print("ROW " + json.dumps(_one(args.one, args.cache, args.flipd, args.flipd_t0)), flush=True)
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmh-bench-cold-") as tmp:
        cache = args.cache or tmp
        for name in _tasks(args):
            cmd = [sys.executable, __file__, "--one", name, "--cache", cache] + (["--flipd"] if args.flipd else [])
            if args.flipd_t0 is not None:
                cmd += ["--flipd-t0", args.flipd_t0]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")), None)
            if line is None:
                row = {"task": name, "status": f"crashed (exit {proc.returncode})",
                       "error": proc.stderr.strip().splitlines()[-1:] or "", "seconds": None}
            else:
                row = json.loads(line[4:])
            row["process_seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(f"{name}: {row['status']} in {row.get('seconds')} s", file=sys.stderr, flush=True)
    print(_table(rows))
    for r in rows:
        if r["status"] != "ok":
            print(f"\n{r['task']}: {r.get('error')}")
        elif "error" in (r.get("flipd") or {}):
            print(f"\n{r['task']}: FLIPD failed: {r['flipd']['error']}")
    default = [r for r in rows if "default" in r.get("suites", []) and r.get("seconds") is not None]
    if default:
        print(f"\ndefault-suite synthetic/LID tasks: {len(default)}, total build "
              f"{sum(r['seconds'] for r in default):.0f} s; load average now "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
