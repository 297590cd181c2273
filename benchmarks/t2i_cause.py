"""What reverses the published detector order on ``t2i-digits``: one factor at a time (issue 24, item 1).

    MMH_BENCH_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/t2i_cause.py            # the whole sweep
    MMH_BENCH_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/t2i_cause.py --only base # one variant

On Stable Diffusion the generation-time detectors read at the first step, n = 1, rank
sharpness > CFG norm > attention entropy at AUROC 0.99 / 0.98 / 0.85 (Jeon et al. Table 1); on
``t2i-digits`` CFG norm and sharpness sit below chance on the verbatim (DD) copies. Each variant
here is the shipped spec with ONE change (spec overrides, validated like any spec), built as a dev
instance from scratch by the task's own builder into a separate cache, and scored by the shipped
detectors through the evaluator:

- ``cfg-norm`` and ``sharpness`` (generation-time, step 1, n = 1) and the all-layer attention
  entropy ``attention-entropy(layer=null)`` (Ren's layer 3 does not exist on a 3-layer model):
  AUROC overall, on the DD copies (each DD copy against every non-memorized sample, as the board's
  subtype columns), and on the DD copies against the non-memorized samples of each caption kind
  (the "negatives' kind" factor: which negatives the detectors confuse with copies);
- the mechanism the issue suspects, measured directly: the share of 300 *unconditional*
  generations (empty caption, same sampler) that copy a duplicated image by the base copy test
  (ratio < 1/3 and the task's absolute tolerance; no chance test), and the DD copies by the kind
  of caption that produced them;
- build seconds (wall and CPU of this process), sample and copy counts.

The label balance the shipped spec declares is relaxed (a variant may have few copies; the
counts are reported instead); the null-copy-rate check is kept, so every label still means
memorization. Results go to ``benchmarks/results/t2i_cause.json`` (one entry per variant; a
variant already there is skipped unless ``--force``) and a Markdown table beside it. Nothing here
tunes a detector: every score is the shipped detector's.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mmh_bench.evaluation.metrics import memorization_metrics
from mmh_bench.evaluation.runner import compute_scores
from mmh_bench.registry import get_task, make_detector
from mmh_bench.task.build import BuildError, build_task
from mmh_bench.task.data.captions import KIND
from mmh_bench.task.data.images import GROUP_DUPLICATED
from mmh_bench.task.instance import SUBTYPE_CODE
from mmh_bench.task.labels import label_samples
from mmh_bench.task.sampler import generate, initial_noise
from mmh_bench.task.spec import parse_spec

TASK = "t2i-digits"
DETECTORS = ["cfg-norm", "sharpness", "attention-entropy(layer=null)",
             "cfg-norm(n_steps=50)"]  # the last: the guidance norm averaged over the first 50 of 100 steps
#: (factor, level, overrides {section: {key: value}}); "base" is the shipped spec
VARIANTS: list[tuple[str, str, dict[str, dict[str, Any]]]] = [
    ("base", "shipped (30 per class, 10 x 10 duplicates, guidance 3, 5,000 steps, hidden 256)", {}),
    ("base seed", "seed 1", {"": {"seed": 1}}),
    ("base seed", "seed 2", {"": {"seed": 2}}),
    ("duplicated fraction", "80 per class", {"data": {"per_class": 80}}),
    ("duplicated fraction", "150 per class", {"data": {"per_class": 150}}),
    ("duplicated fraction", "10 x 3 copies", {"data": {"dup_copies": 3}}),
    ("guidance", "1.5", {"sampling": {"guidance": 1.5}}),
    ("guidance", "7.5", {"sampling": {"guidance": 7.5}}),
    ("training length", "2,000 steps", {"model": {"steps": 2000}}),
    ("training length", "15,000 steps", {"model": {"steps": 15000}}),
    ("capacity", "hidden 128", {"model": {"hidden": 128}}),
    ("capacity", "hidden 512", {"model": {"hidden": 512}}),
    ("architecture", "UNet2DConditionModel (32, 64)",
     {"model": {"arch": "unet", "channels": [32, 64], **dict.fromkeys(["hidden", "depth", "queries", "heads",
                                                                     "text_width"])}}),
    # not one factor: the DESIGN note's exploratory LAION-like draw (7% duplicated, 4 images x 25)
    ("combined", "150 per class, 4 x 25 copies", {"data": {"per_class": 150, "dup_n": 4, "dup_copies": 25}}),
]
RELAXED_BALANCE = {"min_memorized": 0.0, "max_memorized": 1.0, "require_subtypes": [], "min_per_subtype": 1}
UNCOND_N = 300


def variant_spec(overrides: dict[str, dict[str, Any]]):
    """The shipped spec with ``overrides`` merged in (key "" = top level), balance relaxed, validated."""
    raw = copy.deepcopy(get_task(TASK).raw)
    for section, values in overrides.items():
        table = raw if section == "" else raw.setdefault(section, {})
        for key, value in values.items():
            if value is None:  # None removes the key (e.g. the MLP's keys when the architecture changes)
                table.pop(key, None)
            else:
                table[key] = value
    raw["balance"] = dict(RELAXED_BALANCE)
    return parse_spec(raw, path=f"<{TASK} variant>")


def _auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def measure(inst: Any) -> dict[str, Any]:
    """Counts, the unconditional copy share, and each detector's AUROCs on one built instance."""
    a = inst.arrays
    y = a["labels"].astype(bool)
    dd = y & (a["subtype"] == SUBTYPE_CODE["DD"])
    kind_names = {v: k for k, v in KIND.items()}
    kind = a["caption_kind"][a["cond"]]
    out: dict[str, Any] = {
        "n_samples": int(len(y)), "n_train": int(len(a["train"])), "n_memorized": int(y.sum()),
        "n_dd": int(dd.sum()), "n_od": int((y & (a["subtype"] == SUBTYPE_CODE["OD"])).sum()),
        "dup_fraction": float((a["train_group"] == GROUP_DUPLICATED).mean()),
        "null_copy_rate": inst.meta.get("null_copy_rate"),
        "dd_by_caption_kind": {kind_names[int(k)]: int((dd & (kind == k)).sum()) for k in np.unique(kind)},
    }
    # the unconditional model's own copies of duplicated images (empty caption, the task's sampler)
    model, sampler = inst.score_model(), inst.sampler()
    noise = initial_noise(UNCOND_N, model.shape, inst.spec.seed + 991)
    unc = generate(model, noise, sampler, None, progress=False)
    lab = label_samples(unc, a["train"], a["train_lid"], inst.spec.model.labels)
    out["uncond_dd_share"] = float((lab.arrays["subtype"] == SUBTYPE_CODE["DD"]).mean())
    out["detectors"] = {}
    for ref in DETECTORS:
        t0 = time.time()
        s, cost = compute_scores(make_detector(ref), inst, seed=0)
        m = memorization_metrics(a["labels"], s, a["subtype"], {v: k for k, v in SUBTYPE_CODE.items()})
        by_kind = {}
        for k in np.unique(kind[~y]):
            sel = dd | (~y & (kind == k))
            by_kind[kind_names[int(k)]] = _auroc(dd[sel], s[sel])
        out["detectors"][ref] = {"auroc": m["auroc"], "auroc_dd": m["per_subtype"].get("DD", {}).get("auroc"),
                                 "auroc_od": m["per_subtype"].get("OD", {}).get("auroc"),
                                 "auroc_dd_by_negative_kind": by_kind, "seconds": round(time.time() - t0, 2),
                                 "nfe_per_sample": cost.get("nfe_per_sample")}
    return out


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def table(results: dict[str, Any]) -> str:
    heads = ["factor", "level", "train (dup %)", "samples", "DD / OD", "uncond. DD share",
             "cfg-norm DD", "sharpness DD", "attn (mean) DD", "cfg-norm first 50 steps DD", "cfg-norm all", "build s"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for factor, level, _ in VARIANTS:
        r = results.get(f"{factor}: {level}")
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {factor} | {level} | build failed: {r['error'][:160]} |" + " |" * (len(heads) - 3))
            continue
        d = r["detectors"]
        lines.append("| " + " | ".join([
            factor, level, f"{r['n_train']} ({100 * r['dup_fraction']:.0f}%)", str(r["n_samples"]),
            f"{r['n_dd']} / {r['n_od']}", _fmt(r["uncond_dd_share"]),
            _fmt(d["cfg-norm"]["auroc_dd"]), _fmt(d["sharpness"]["auroc_dd"]),
            _fmt(d["attention-entropy(layer=null)"]["auroc_dd"]), _fmt(d["cfg-norm(n_steps=50)"]["auroc_dd"]),
            _fmt(d["cfg-norm"]["auroc"]),
            f"{r['build_wall_s']:.0f}"]) + " |")
    kinds = sorted({k for r in results.values() if "detectors" in r
                    for k in r["detectors"]["cfg-norm"]["auroc_dd_by_negative_kind"]})
    lines += ["", "cfg-norm AUROC of the DD copies against the non-memorized samples of one caption kind:", "",
              "| factor | level | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for factor, level, _ in VARIANTS:
        r = results.get(f"{factor}: {level}")
        if r and "detectors" in r:
            bk = r["detectors"]["cfg-norm"]["auroc_dd_by_negative_kind"]
            lines.append(f"| {factor} | {level} | " + " | ".join(_fmt(bk.get(k)) for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="", help="comma-separated levels or factors to run (default: all)")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("T2I_CAUSE_CACHE", "/tmp/mmh-t2i-cause-cache")),
                   help="build cache of the variants (kept apart from the shared one: builds are timed)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/t2i_cause"))
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    path = args.out.with_suffix(".json")
    results = json.loads(path.read_text()) if path.exists() else {}
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    for factor, level, overrides in VARIANTS:
        key = f"{factor}: {level}"
        if only and factor not in only and level not in only:
            continue
        if key in results and not args.force:
            continue
        spec = variant_spec(overrides)
        t0, c0 = time.time(), time.process_time()
        try:
            inst = build_task(spec, args.cache, force=args.force, progress=False)
        except BuildError as exc:
            results[key] = {"overrides": overrides, "error": str(exc)}
        else:
            wall, cpu = time.time() - t0, time.process_time() - c0
            results[key] = {"overrides": overrides, "spec_hash": spec.hash, "data_hash": inst.data_hash,
                            "build_wall_s": round(wall, 1), "build_cpu_s": round(cpu, 1), **measure(inst)}
        print(key, json.dumps({k: v for k, v in results[key].items() if k != "detectors"}, default=str)[:400],
              flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
