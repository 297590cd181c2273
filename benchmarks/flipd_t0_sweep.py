"""Sweep FLIPD's t0 on built tasks: per-t AUROC (memorization tasks) or MAE (LID tasks), and the t0
the label-free rules pick, to check a rule against the labels it never sees.

    python benchmarks/flipd_t0_sweep.py --tasks suite:default

Writes ``OUT/<task>.json`` (mean curves per class and the per-t metric; per-sample curves with
``--keep-curves``) and ``OUT/summary.md``: per task the best t on the grid and what the plateau
rule (at several stability factors) and the knee rule choose. ``--summarize`` only re-reads OUT.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mmh_bench.task.build import build_task
from mmh_bench.registry import resolve_tasks
from mmh_bench_baselines.flipd import RATIO, T_MAX, flipd_curve, knee_index, plateau_index

RATIOS = (1.15, 1.2, 1.25, RATIO, 1.4, 1.5)


def sweep(spec, grid: np.ndarray, n_per_class: int, seed: int) -> dict:
    name = spec.name
    inst = build_task(spec)
    model = inst.score_model()
    if model is None:
        return {}
    rng = np.random.default_rng(seed)
    n = len(inst.samples)
    if inst.labels is not None:
        pick = np.concatenate([rng.choice(np.where(inst.labels == c)[0],
                                          min(n_per_class, int((inst.labels == c).sum())), replace=False)
                               for c in (0, 1)])
    else:
        pick = rng.choice(n, min(2 * n_per_class, n), replace=False)
    x = inst.samples[pick]
    dim = int(np.prod(x.shape[1:]))
    probes = None
    if dim > 64:
        probes = torch.from_numpy(rng.choice([-1.0, 1.0], size=(16, len(pick), *x.shape[1:])).astype(np.float32))
    curves = flipd_curve(model, x, grid, probes=probes)
    out = {"task": name, "dim": dim, "grid": grid.tolist(), "index": pick.tolist(), "curves": curves.tolist(),
           "build_seconds": inst.meta.get("build_seconds")}
    # the mean over a label-blind random subset, as the detector's fit sees it
    if inst.labels is not None:
        y = inst.labels[pick]
        out["labels"] = y.tolist()
        out["auroc"] = [float(roc_auc_score(y, -c)) for c in curves]
        out["mean_mem"] = curves[:, y == 1].mean(1).tolist()
        out["mean_non"] = curves[:, y == 0].mean(1).tolist()
        frac = float(inst.labels.mean())
        out["mean_blind"] = (frac * np.array(out["mean_mem"]) + (1 - frac) * np.array(out["mean_non"])).tolist()
    if inst.lid_star is not None:
        ls = inst.lid_star[pick]
        out["mae"] = [float(np.abs(c - ls).mean()) for c in curves]
        if inst.labels is None:
            out["mean_blind"] = curves.mean(1).tolist()
    return out


def summarize(folder: Path) -> str:
    """The Markdown table of what each rule picks against the best t on the grid (t <= T_MAX)."""
    lines = ["| task | D | metric | best on grid (t) | plateau rule, factor " + ", ".join(f"{r:g}" for r in RATIOS)
             + " (t: metric) | knee (t: metric) | FLIPD mem / non at the default pick |",
             "|---|---|---|---|---|---|---|"]
    for f in sorted(folder.glob("*.json")):
        r = json.loads(f.read_text())
        keep = np.array(r["grid"]) <= T_MAX * 1.001  # the rules see the detector's grid only
        g, y, dim = np.array(r["grid"])[keep], np.array(r["mean_blind"])[keep], r["dim"]
        key = "auroc" if "auroc" in r else "mae"
        vals = np.array(r[key])[keep]
        best = int(np.argmax(vals) if key == "auroc" else np.argmin(vals))
        picks = [plateau_index(g, y, dim, ratio=q) for q in RATIOS]
        knee = knee_index(np.log(g), y)
        default = picks[RATIOS.index(RATIO)]
        cls = (f"{r['mean_mem'][default]:.2f} / {r['mean_non'][default]:.2f}" if "mean_mem" in r else "")
        lines.append(f"| {r['task']} | {dim} | {key.upper()} | {vals[best]:.3f} ({g[best]:.3g}) | "
                     + ", ".join(f"{g[i]:.3g}: {vals[i]:.3f}" for i in picks)
                     + f" | {g[knee]:.3g}: {vals[knee]:.3f} | {cls} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="suite:default")
    ap.add_argument("--n", type=int, default=150, help="samples per class (memorization tasks)")
    ap.add_argument("--t-min", type=float, default=1e-3)
    ap.add_argument("--t-max", type=float, default=0.9)
    ap.add_argument("--n-t", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/flipd_t0"))
    ap.add_argument("--keep-curves", action="store_true", help="also store every sample's curve")
    ap.add_argument("--summarize", action="store_true", help="only rebuild OUT/summary.md")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid = np.geomspace(args.t_min, args.t_max, args.n_t)
    for spec in ([] if args.summarize else resolve_tasks(args.tasks)):
        if spec.family == "stable-diffusion":
            continue
        res = sweep(spec, grid, args.n, seed=0)
        if not res:
            continue
        if not args.keep_curves:
            res.pop("curves"), res.pop("index")
        (args.out / f"{spec.name}.json").write_text(json.dumps(res))
        print(spec.name, "done", flush=True)
    table = summarize(args.out)
    (args.out / "summary.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
