"""Build the real-image and mini text-to-image tasks and report build time and label balance.

Why: these tasks must build in about two minutes each on two CPU cores; this is the measurement
behind the numbers in ``benchmarks/IMAGE_TASKS.md``. CPU seconds are reported next to wall seconds
because the machine is often shared (wall time then overstates the cost). Run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/image_tasks.py [TASK ...] [--cache DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

DEFAULT = ["image-digits", "image-digits-cond", "t2i-digits"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tasks", nargs="*", default=DEFAULT)
    ap.add_argument("--cache", default=None, help="build cache (default: a fresh temporary folder)")
    args = ap.parse_args()
    from mmh_bench.task.build import build_task
    from mmh_bench.registry import get_task

    cache = args.cache or tempfile.mkdtemp(prefix="mmh-image-bench-")
    for name in args.tasks:
        t0, c0 = time.perf_counter(), time.process_time()
        inst = build_task(get_task(name), cache, force=True, progress=False)
        s = inst.summary()
        print(json.dumps({"task": name, "wall_s": round(time.perf_counter() - t0, 1),
                          "cpu_s": round(time.process_time() - c0, 1),
                          "threads": os.environ.get("OMP_NUM_THREADS", "default"),
                          "load_avg_1min": round(os.getloadavg()[0], 2),
                          "n_samples": s["n_samples"], "memorized_frac": round(s["memorized_frac"], 3),
                          "per_subtype": {k: v for k, v in s["per_subtype"].items() if v}}), flush=True)


if __name__ == "__main__":
    main()
