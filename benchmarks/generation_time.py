"""The published generation-time detectors against their post-hoc variants, side by side.

    python benchmarks/generation_time.py                 # the board's published test instances
    python benchmarks/generation_time.py --instances none  # this machine's dev builds

For each conditional CPU task, every pair runs through the evaluator (so NFE and seconds are
counted, not claimed) into its own results folder, and one table row per (task, detector) gives
AUROC, strict and closest-point TPR@1%FPR, NFE per sample and seconds. Variants beside the
published defaults (k = 1 step, n = 1 generation): more steps and more generations per condition,
as in Jeon et al.'s Table 1. Writes ``benchmarks/results/generation_time.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tabulate import tabulate

from mmh_bench.evaluation.runner import evaluate

TASKS = ["syn2-cond", "syn10-cond", "syn100-cond", "image-digits-cond", "t2i-digits"]
#: (setting, detector reference): the published method, its variants, and the post-hoc reading
DETECTORS = [
    ("generation-time", "cfg-norm"), ("generation-time", "cfg-norm(n_steps=5)"),
    ("generation-time", "cfg-norm(generations=4)"), ("generation-time", "sharpness"),
    ("generation-time", "sharpness(generations=4)"), ("generation-time", "one-step-dcs"),
    ("generation-time", 'one-step-dcs(start="ddim")'),
    ("generation-time", "attention-entropy"), ("generation-time", "attention-entropy(layer=null)"),
    ("post-hoc", "cfg-norm-posthoc"), ("post-hoc", "sharpness-posthoc"),
    ("post-hoc", "one-step-error-posthoc"), ("post-hoc", "attention-entropy-posthoc"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--instances", default="leaderboard/instances",
                   help="published instances to evaluate ('none': build the dev instances here)")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/generation_time"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/generation_time"))
    args = p.parse_args(argv)
    instances = None if args.instances == "none" else args.instances
    rows = []
    for task in args.tasks.split(","):
        for setting, ref in DETECTORS:
            rep = evaluate([task], [ref], args.results / ref.replace("(", "[").replace(")", "]"),
                           instances=instances, progress=False)
            for path in rep.ran + rep.skipped_current:
                res = json.loads(path.read_text())
                m = res["metrics"]
                rows.append({"task": task, "instance": res["instance"]["id"],
                             "replicate": res["instance"].get("replicate"), "setting": setting,
                             "detector": ref, "auroc": m["auroc"],
                             "tpr@1%": m["tpr_at_fpr"]["0.01"], "tpr@1% closest": m["tpr_at_fpr_closest"]["0.01"],
                             "nfe/sample": res["cost"]["nfe_per_sample"], "seconds": res["cost"]["seconds"]})
            for _, det, why in rep.not_applicable:
                rows.append({"task": task, "setting": setting, "detector": det, "not applicable": why})
            for path in rep.failed:
                rows.append({"task": task, "setting": setting, "detector": ref,
                             "failed": json.loads(path.read_text())["error"]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    ok = [r for r in rows if "auroc" in r]
    table = tabulate([[r["task"], r.get("replicate"), r["setting"], r["detector"], f"{r['auroc']:.3f}",
                       "n/a" if r["tpr@1%"] is None else f"{r['tpr@1%']:.3f}",
                       "n/a" if r["tpr@1% closest"] is None else f"{r['tpr@1% closest']:.3f}",
                       f"{r['nfe/sample']:g}", f"{r['seconds']:.2f}"] for r in ok],
                     headers=["task", "rep", "setting", "detector", "AUROC", "TPR@1% strict", "TPR@1% closest",
                              "NFE/sample", "seconds"], tablefmt="github")
    skipped = [f"- {r['task']} / {r['detector']}: {r.get('not applicable') or r.get('failed')}"
               for r in rows if "auroc" not in r]
    args.out.with_suffix(".md").write_text("# Generation-time vs post-hoc detectors\n\n" + table + "\n\n"
                                           + "\n".join(skipped) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
