"""FLIPD on the LID tasks, one factor at a time: training steps, network width, the t0 rule, probes.

    OMP_NUM_THREADS=1 python benchmarks/lid_flipd_factors.py --task lid-mix10 \
        --variant base --variant steps=20000 --variant hidden=512

Each ``--variant`` overrides keys of the task's ``[model]`` (``base``: none) and builds that model
(a dev instance; cached under ``--cache``). On it the script scores, in-process and single-threaded:
FLIPD with the t0 rules (``plateau``, the default; ``knee``) and fixed t0 values (``--t0``), FLIPD
with Hutchinson probes instead of the exact trace (``--probes``, at the plateau rule's t0), the
normal bundle, and the four k-NN estimators (they do not depend on the model: scored once per task).
It also records FLIPD's MAE at every t of the rule's grid over all queries (``grid``): the best
value there is a diagnostic that looks at LID*, never a chosen constant. ``--ideal S`` (base variant
only) adds the closed-form FLIPD of a fresh draw S times the training set (:func:`ideal_curve`):
FLIPD with a near-exact score, to tell the network's error from what FLIPD reads at a scale.

Writes ``OUT/<task>__<variant>.json`` and ``OUT/summary.md`` (``--summarize`` only re-reads OUT).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mmh_bench.evaluation.runner import evaluate_pair
from mmh_bench.registry import get_task
from mmh_bench.task.build import build_task
from mmh_bench.task.spec import parse_spec
from mmh_bench_baselines.flipd import FLIPD, flipd_curve
from mmh_bench_baselines.knn_lid import ESS, LPCA, MLE, TwoNN
from mmh_bench_baselines.normal_bundle import NormalBundle

OUT = Path(__file__).parent / "results" / "lid_flipd_factors"


def variant_spec(task: str, variant: str):
    """The task's spec with ``[model]`` keys overridden (``steps=20000,hidden=512``; ``base``: none)."""
    spec = get_task(task)
    raw = copy.deepcopy(spec.raw)
    if variant != "base":
        for item in variant.split(","):
            key, value = item.split("=", 1)
            raw.setdefault("model", {})[key] = float(value) if key == "lr" else int(value)
    return parse_spec(raw, spec.path)


def _score(inst, det) -> dict:
    res = evaluate_pair(inst, det, isolation="in-process")
    if res.status != "ok":
        return {"error": res.error}
    out = {k: getattr(res.metrics, k) for k in ("mae", "concordance")}
    out["seconds"] = res.cost.seconds
    out["nfe_per_sample"] = res.cost.nfe_per_sample
    return out


def grid_mae(inst, det: FLIPD) -> dict:
    """FLIPD's MAE at every t of the detector's grid, over all queries (exact trace when D <= 64)."""
    model = inst.score_model()
    x = inst.samples
    dim = int(np.prod(x.shape[1:]))
    probes = None
    if dim > det.exact_max_dim:
        g = torch.Generator().manual_seed(0)
        probes = (torch.randint(0, 2, (det.probes, len(x), dim), generator=g) * 2 - 1).float()
    grid = det.t_grid()
    curves = flipd_curve(model, x, grid, probes=probes)
    lids = np.unique(inst.lid_star)
    return {"t": grid.tolist(), "mae": [float(np.abs(c - inst.lid_star).mean()) for c in curves],
            "lid": lids.tolist(),  # mean FLIPD per true LID at every t: where the error comes from
            "mean_per_lid": [[float(c[inst.lid_star == v].mean()) for v in lids] for c in curves]}


def ideal_curve(spec, inst, grid: list[float], scale: int, chunk: int = 32) -> dict:
    """FLIPD of a near-exact score: the closed-form FLIPD of a large fresh draw from the task's own
    distribution (``scale`` times its training set, every point used, no neighbour truncation), at
    every t of ``grid``. Where the draw is dense at the bandwidth h = sigma(t) / sqrt(alpha_bar(t))
    (h well above ``ref_spacing``, the reference's median nearest-neighbour distance) this is the
    FLIPD the true density has at t: it separates what FLIPD reads at a scale from what the trained
    network gets wrong. Below that spacing it reads the draw's own points (falls towards 0)."""
    from mmh_bench.api.score_model import vp_linear_alpha_bar
    from mmh_bench.evaluation.data_lid import KNNIndex
    from mmh_bench.task.data import lid_paper
    from mmh_bench.task.data.synthetic import make_mixture
    data = spec.model.data
    seed = spec.seed + 7_000_001
    if data.source == "dgm":
        ref, _, _ = lid_paper.draw(data, spec.seed, scale * data.n, draw_seed=seed)
    else:
        data = data.model_copy(update={"components": [
            c.model_copy(update={"n": scale * c.n}) if c.kind != "point" and c.copies <= 1 else c
            for c in data.components]})
        ref = make_mixture(data, spec.seed, draw_seed=seed).x
    ref = torch.as_tensor(np.asarray(ref, dtype=np.float64))
    sub = ref[torch.randperm(len(ref), generator=torch.Generator().manual_seed(0))[:5000]].numpy()
    spacing = float(np.median(KNNIndex(ref.numpy()).search(sub, 2)[0][:, 1]))
    h2 = []
    for t in grid:
        ab = float(vp_linear_alpha_bar(torch.tensor(t)))
        h2.append((1 - ab) / ab)
    x = torch.as_tensor(np.asarray(inst.samples, dtype=np.float64))
    est = np.zeros((len(grid), len(x)))
    for s0 in range(0, len(x), chunk):
        d2 = torch.cdist(x[s0:s0 + chunk], ref) ** 2  # [c, n_ref]
        for i, hh in enumerate(h2):
            q = d2 / hh
            est[i, s0:s0 + chunk] = (torch.softmax(-0.5 * q, dim=1) * q).sum(1).numpy()
    h2 = torch.tensor(h2, dtype=torch.float64)
    lids = np.unique(inst.lid_star)
    return {"n_ref": int(len(ref)), "ref_spacing": spacing, "t": list(grid),
            "h": np.sqrt(h2.flatten().numpy()).tolist(), "lid": lids.tolist(),
            "mae": [float(np.abs(e - inst.lid_star).mean()) for e in est],
            "mean_per_lid": [[float(e[inst.lid_star == v].mean()) for v in lids] for e in est]}


def run(task: str, variant: str, t0s: list[float], probes: list[int], cache: Path, knn: bool,
        ideal: int = 0) -> dict:
    spec = variant_spec(task, variant)
    t = time.perf_counter()
    inst = build_task(spec, cache, progress=False)
    build_s = time.perf_counter() - t
    res: dict = {"task": task, "variant": variant, "model": spec.model.model.model_dump(include=spec.model.written("model")), "dim": int(inst.samples.shape[1]),
                 "n_queries": int(len(inst.samples)), "build_seconds_this_run": round(build_s, 1),
                 "build_seconds": inst.meta.get("build_seconds"), "scores": {}}
    rules: list[tuple[str, FLIPD]] = [("flipd t0=plateau", FLIPD()), ("flipd t0=knee", FLIPD(t0="knee"))]
    rules += [(f"flipd t0={v:g}", FLIPD(t0=v)) for v in t0s]
    for label, det in rules:
        res["scores"][label] = _score(inst, det)
        if det.chosen_t0 is not None and isinstance(det.t0, str):
            res["scores"][label]["t0"] = det.chosen_t0
    chosen = res["scores"]["flipd t0=plateau"].get("t0")
    for k in probes:  # Hutchinson at the plateau rule's t0, even where the exact trace is affordable
        res["scores"][f"flipd hutchinson K={k}"] = _score(inst, FLIPD(t0=chosen, probes=k, exact_max_dim=0))
    if res["dim"] > FLIPD().exact_max_dim:  # the authors' code takes the exact trace up to D = 3500
        res["scores"]["flipd exact trace"] = _score(inst, FLIPD(t0=chosen, exact_max_dim=res["dim"]))
    res["scores"]["normal-bundle"] = _score(inst, NormalBundle())
    if knn:
        for det in (ESS(), LPCA(), MLE(), TwoNN()):
            res["scores"][det.name] = _score(inst, det)
    res["grid"] = grid_mae(inst, FLIPD())
    if ideal:
        res["ideal"] = ideal_curve(spec, inst, res["grid"]["t"], ideal)
    return res


def _c(v: dict) -> str:
    """Concordance, or a dash where it is undefined (every query has the same LID*)."""
    return "–" if v.get("concordance") is None else f"{v['concordance']:.3f}"


def summarize(out: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines = ["| task | variant | build s | " + "FLIPD plateau (t0) | FLIPD knee (t0) | FLIPD fixed t0 | "
             "Hutchinson (K: MAE) | best t on grid (diagnostic) | near-exact score: at plateau t0 / best (t) | "
             "normal-bundle | ESS | lPCA | MLE | TwoNN |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    knn = {}
    for r in runs:
        for k in ("ess", "lpca", "mle", "twonn"):
            if k in r["scores"]:
                knn.setdefault(r["task"], {})[k] = r["scores"][k]
    for r in runs:
        s = r["scores"]

        def cell(key: str, with_t: bool = False) -> str:
            v = s.get(key, {})
            if "mae" not in v:
                return "–"
            t = f" ({v['t0']:.3g})" if with_t and "t0" in v else ""
            return f"{v['mae']:.3f} / {_c(v)}{t}"

        fixed = "; ".join(f"{k.split('=')[1]}: {v['mae']:.3f}" for k, v in s.items()
                          if k.startswith("flipd t0=") and k.split("=")[1] not in ("plateau", "knee") and "mae" in v)
        hutch = "; ".join(f"{k.split('=')[1]}: {v['mae']:.3f}" for k, v in s.items()
                          if k.startswith("flipd hutchinson") and "mae" in v)
        if "mae" in s.get("flipd exact trace", {}):
            hutch += f"; exact: {s['flipd exact trace']['mae']:.3f}"
        g = r["grid"]
        i = int(np.argmin(g["mae"]))
        kn = knn.get(r["task"], {})
        ideal = "–"
        if "ideal" in r and "t0" in s.get("flipd t0=plateau", {}):
            ig = r["ideal"]
            at = int(np.argmin(np.abs(np.log(np.array(ig["t"]) / s["flipd t0=plateau"]["t0"]))))
            j = int(np.argmin(ig["mae"]))
            ideal = f"{ig['mae'][at]:.3f} / {ig['mae'][j]:.3f} ({ig['t'][j]:.3g})"
        kcells = [f"{kn[k]['mae']:.3f} / {_c(kn[k])}" if k in kn and "mae" in kn[k] else "–"
                  for k in ("ess", "lpca", "mle", "twonn")]
        lines.append(f"| {r['task']} | {r['variant']} | {r.get('build_seconds') or '–'} | "
                     f"{cell('flipd t0=plateau', True)} | {cell('flipd t0=knee', True)} | {fixed or '–'} | "
                     f"{hutch or '–'} | {g['mae'][i]:.3f} (t = {g['t'][i]:.3g}) | {ideal} | {cell('normal-bundle')} | "
                     + " | ".join(kcells) + " |")
    return ("Cells: MAE / concordance on the task's queries (dev instance); FLIPD t0 in brackets where a rule "
            "chose it. Measured single-threaded on a shared 2-core CPU by `benchmarks/lid_flipd_factors.py`.\n\n"
            + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=False)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--t0", default="0.0001,0.01,0.05", help="fixed t0 values to score (comma-separated)")
    ap.add_argument("--probes", default="1,4,16", help="Hutchinson probe counts (comma-separated, '' for none)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/mmh_lid28_cache"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--ideal", type=int, default=0,
                    help="also the closed-form FLIPD of a fresh draw this many times the training set (base only)")
    ap.add_argument("--summarize", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        if not args.task:
            ap.error("--task is required unless --summarize")
        t0s = [float(v) for v in args.t0.split(",") if v]
        probes = [int(v) for v in args.probes.split(",") if v]
        for i, variant in enumerate(args.variant or ["base"]):
            t = time.perf_counter()
            res = run(args.task, variant, t0s, probes, args.cache, knn=(variant == "base"),
                      ideal=args.ideal if variant == "base" else 0)
            res["seconds_total"] = round(time.perf_counter() - t, 1)
            name = f"{args.task}__{variant.replace('=', '-').replace(',', '_')}.json"
            (args.out / name).write_text(json.dumps(res, indent=1))
            print(f"{args.task} {variant}: {res['seconds_total']} s", file=sys.stderr, flush=True)
    text = summarize(args.out)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
