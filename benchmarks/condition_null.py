"""How far a score that depends only on the condition id can land from 0.5 on one instance.

A score that is a function of the condition alone (the `probe-cond` leak probe, the
`shortcut-condition` baseline) ranks classes, not samples: on one instance with few classes its
AUROC is spread widely by the luck of which classes the secret id permutation puts where. The
right null is therefore the permutation distribution: AUROC of a random ranking of the classes.
This prints, per conditional task of the board, the observed AUROC of "score = condition id" and
of the condition shortcut, and where each falls in that null (2,000 random class rankings).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/condition_null.py
"""
from __future__ import annotations

import glob
import json

import numpy as np
from sklearn.metrics import roc_auc_score

from mmh_bench.task.publish import pull_instance


def main() -> None:
    rows = []
    for folder in sorted(glob.glob("leaderboard/instances/*/test-*/")):
        inst = pull_instance(folder)
        if inst.cond is None or inst.labels is None:
            continue
        y, c = inst.labels.astype(bool), inst.cond.astype(int)
        n_cls = int(c.max()) + 1
        rng = np.random.default_rng(0)
        null = np.array([roc_auc_score(y, rng.permutation(n_cls)[c]) for _ in range(2000)])
        obs = roc_auc_score(y, c)
        shortcut = [json.load(open(p))["metrics"]["auroc"] for p in
                    glob.glob(f"leaderboard/results/{inst.spec.name}/*/{inst.instance_info()['id']}/shortcut-condition.json")]
        row = {"task": inst.spec.name, "classes": int(len(np.unique(c))),
               "null_2.5%": round(float(np.quantile(null, 0.025)), 3),
               "null_97.5%": round(float(np.quantile(null, 0.975)), 3),
               "probe_cond": round(float(obs), 3), "probe_cond_percentile": round(float((null < obs).mean()), 3)}
        if shortcut:
            row.update(shortcut_condition=round(shortcut[0], 3),
                       shortcut_percentile=round(float((null < shortcut[0]).mean()), 3))
        rows.append(row)
        print(json.dumps(row))
    with open("benchmarks/results/condition_null.json", "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
