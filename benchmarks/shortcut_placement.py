"""How well does a task's test placement hold against shortcuts? A simulation, no training.

For each synthetic task, builds many test-instance *training sets* exactly as the builder places
them (secret-derived seed, jittered points, the whole set's similarity transform), stands in for
the generated samples with the training set itself (memorization sources labelled 1: duplicated
points, isolated points; the rest 0), and scores them with the shortcuts a spec reader can write:

- ``sources``: minus the distance to the dev instance's sources (what ``shortcut-sources`` does);
- ``origin``: minus the distance to the origin (the spec's coordinate frame; either sign);

The AUROC over placements should centre on 0.5 for a placement that holds; its spread is what a
fixed function of position scores by the luck of one placement. Run::

    python benchmarks/shortcut_placement.py [--tasks mmh-toy,syn2-cond] [--placements 200]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from mmh_bench.registry import get_task, resolve_tasks
from mmh_bench.task.builders.synthetic import draw_placement, jitter_points
from mmh_bench.task.data.synthetic import designed_sources, make_mixture
from mmh_bench.task.spec_models import MixtureData

def sources(data: MixtureData, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, is-a-memorization-source) of one placement-free draw."""
    mix = make_mixture(data, seed)
    return mix.x.astype(np.float64), designed_sources(data, mix.component)


def simulate(task: str, placements: int, override: dict | None = None) -> dict:
    spec = get_task(task)
    if override:  # try a placement design before writing it into the spec
        placement = {**spec.raw["placement"], **override} if "placement" in spec.raw else override
        spec = dataclasses.replace(spec, raw={**spec.raw, "placement": placement})
    dev_x, dev_src = sources(spec.model.data, spec.seed)
    ref = np.unique(dev_x[dev_src], axis=0)
    out = {"sources": [], "origin": []}
    for k in range(placements):
        test = dataclasses.replace(spec, seed=10_000_019 * (k + 1) % (2 ** 62), instance="test")
        data = jitter_points(test, test.model.data)
        x, src = sources(data, test.seed)
        place = draw_placement(test, data, x.astype(np.float32), src)
        x = place(x).astype(np.float64) if place is not None else x
        if src.all() or not src.any():
            continue
        out["sources"].append(roc_auc_score(src, -cdist(x, ref).min(axis=1)))
        out["origin"].append(roc_auc_score(src, -np.linalg.norm(x, axis=1)))
    dev = {"sources": roc_auc_score(dev_src, -cdist(dev_x, ref).min(axis=1)),
           "origin": roc_auc_score(dev_src, -np.linalg.norm(dev_x, axis=1))}
    return {name: {"dev": round(float(dev[name]), 3), "test_mean": round(float(np.mean(v)), 3),
                   "test_sd": round(float(np.std(v)), 3),
                   "test_q10_q90": [round(float(q), 3) for q in np.quantile(v, [0.1, 0.9])]}
            for name, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="suite:synthetic")
    ap.add_argument("--placements", type=int, default=200)
    ap.add_argument("--shift", type=float, default=None, help="try this [placement] shift on every task")
    ap.add_argument("--out", default="benchmarks/results/shortcut_placement.json")
    a = ap.parse_args()
    override = None if a.shift is None else {"shift": a.shift}
    specs = resolve_tasks(a.tasks)
    report = {}
    for spec in specs:
        if spec.builder != "synthetic":
            continue
        report[spec.name] = simulate(spec.name, a.placements, override)
        print(spec.name, json.dumps(report[spec.name]))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"placements": a.placements, "override": override, "tasks": report}, indent=1) + "\n")


if __name__ == "__main__":
    main()
