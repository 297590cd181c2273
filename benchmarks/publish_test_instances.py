"""Maintainers: build the board's test instances from a secret and publish them into the repository.

    MMH_BENCH_TEST_SECRET=$(python -c 'import secrets; print(secrets.token_hex(16))') \\
        python benchmarks/publish_test_instances.py --tasks suite:default --out leaderboard/instances

Memorization tasks get a *test* instance (seed and placement from the secret, which is read from the
environment and never written); LID-track tasks have no labels to shortcut and are published as
their dev instance; tasks without a trained model (numpy-seeded data) are skipped: every machine
builds them to the same bytes. A task whose spec asks for ``[instances] test_replicates = K`` gets K
test instances (replicates 0 .. K-1 of the one secret), each placed and trained from its own seed.
Each task's folder under ``--out`` keeps exactly this run's instances: older ones are removed.
Prints one JSON line per instance (id, replicate, size, build and publish seconds).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from mmh_bench.task.build import build_task
from mmh_bench.task.instances import test_instance_key, test_replicates
from mmh_bench.task.publish import publish_instance
from mmh_bench.registry import resolve_tasks


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="suite:default")
    p.add_argument("--out", default="leaderboard/instances")
    p.add_argument("--secret-env", default="MMH_BENCH_TEST_SECRET")
    p.add_argument("--cache", default=None)
    args = p.parse_args(argv)
    test_instance_key(args.secret_env)  # fails early and clearly without a secret
    for spec in resolve_tasks(args.tasks):
        memorization = spec.track == "memorization"
        keep = []
        for r in range(test_replicates(spec) if memorization else 1):
            t0 = time.perf_counter()
            inst = build_task(spec, args.cache, instance=test_instance_key(args.secret_env, r) if memorization else None,
                              progress=False)
            built = time.perf_counter() - t0
            if not inst.meta.get("model"):  # no trained model: numpy-seeded data, the same build anywhere
                print(json.dumps({"task": spec.name, "skipped": "no trained model: every machine builds the same bytes"}))
                break
            target = Path(args.out) / spec.name / inst.instance_info()["id"]
            keep.append(target)
            if target.exists():
                shutil.rmtree(target)
            t0 = time.perf_counter()
            publish_instance(inst, target)
            print(json.dumps({"task": spec.name, "instance": inst.instance_info()["id"], "replicate": r,
                              "bytes": folder_bytes(target), "build_seconds": round(built, 1),
                              "publish_seconds": round(time.perf_counter() - t0, 2),
                              "n_memorized": inst.summary().get("n_memorized"),
                              "null_copy_rate": inst.meta.get("null_copy_rate")}), flush=True)
        task_dir = Path(args.out) / spec.name
        for old in task_dir.iterdir() if task_dir.is_dir() else []:
            if old not in keep:
                shutil.rmtree(old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
