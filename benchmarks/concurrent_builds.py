"""Thread hygiene, measured: one task build alone against two identical builds at once.

    python benchmarks/concurrent_builds.py --task syn10-dd

Each build runs in its own process with its own empty cache (so nothing is reused), under the
project's default thread policy (``mmh_bench.threads``: small models single-threaded). The check
passes when two concurrent builds each take at most 1.3 times the lone build's wall time. With
``--threads N`` every build is forced to N threads instead (``$MMH_BENCH_THREADS``), to show the
collapse the policy avoids. Run it on a quiet machine: nothing else may compete for the cores.
Writes one JSON object to ``benchmarks/results/concurrent_builds.json`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT = 1.3


def start(task: str, cache: Path, threads: int | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        env["MMH_BENCH_THREADS"] = str(threads)
    cmd = [sys.executable, "-c", "from mmh_bench.cli.main import main; raise SystemExit(main())"]
    return subprocess.Popen(cmd + ["build", task, "--cache", str(cache), "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wall(procs: list[subprocess.Popen]) -> list[float]:
    t0 = time.perf_counter()
    out = [0.0] * len(procs)
    pending = set(range(len(procs)))
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                out[i] = time.perf_counter() - t0
                pending.discard(i)
                if procs[i].returncode != 0:
                    raise SystemExit(f"build failed: {procs[i].stderr.read()[-2000:]}")
        time.sleep(0.05)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="syn10-dd", help="task to build (default syn10-dd)")
    p.add_argument("--threads", type=int, default=None, help="force every build to N threads (default: the policy)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "concurrent_builds.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        alone = wall([start(args.task, Path(tmp) / "alone", args.threads)])[0]
        both = wall([start(args.task, Path(tmp) / f"pair{i}", args.threads) for i in range(2)])
    ratio = max(both) / alone
    res = {"task": args.task, "threads": args.threads or "policy (mmh_bench.threads)",
           "alone_seconds": round(alone, 1), "concurrent_seconds": [round(b, 1) for b in both],
           "slowdown": round(ratio, 3), "limit": LIMIT, "ok": ratio <= LIMIT,
           "cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
