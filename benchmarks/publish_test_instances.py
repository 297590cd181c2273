"""Maintainers: build the board's test instances from a secret and publish them into the repository.

    MMH_BENCH_TEST_SECRET=$(python -c 'import secrets; print(secrets.token_hex(16))') \\
        python benchmarks/publish_test_instances.py --tasks suite:default --out leaderboard/instances

Memorization tasks get a *test* instance (seed and placement from the secret, which is read from the
environment and never written); LID-track tasks have no labels to shortcut and are published as
their dev instance; tasks without a trained model (numpy-seeded data) are skipped: every machine
builds them to the same bytes. Each task's folder under ``--out`` keeps one instance: older ones are removed.
Prints one JSON line per task (instance id, size, build and publish seconds).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from mmh_bench.build import build_task
from mmh_bench.instances import test_instance_key
from mmh_bench.publish import publish_instance
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
    key = test_instance_key(args.secret_env)
    for spec in resolve_tasks(args.tasks):
        t0 = time.perf_counter()
        inst = build_task(spec, args.cache, instance=key if spec.track == "memorization" else None,
                          progress=False)
        built = time.perf_counter() - t0
        if not inst.meta.get("model"):  # no trained model: numpy-seeded data, the same build anywhere
            print(json.dumps({"task": spec.name, "skipped": "no trained model: every machine builds the same bytes"}))
            continue
        task_dir = Path(args.out) / spec.name
        target = task_dir / inst.instance_info()["id"]
        for old in task_dir.iterdir() if task_dir.is_dir() else []:
            if old != target:
                shutil.rmtree(old)
        if target.exists():
            shutil.rmtree(target)
        t0 = time.perf_counter()
        publish_instance(inst, target)
        print(json.dumps({"task": spec.name, "instance": inst.instance_info()["id"], "bytes": folder_bytes(target),
                          "build_seconds": round(built, 1),
                          "publish_seconds": round(time.perf_counter() - t0, 2),
                          "n_memorized": inst.summary().get("n_memorized"),
                          "null_copy_rate": inst.meta.get("null_copy_rate")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
