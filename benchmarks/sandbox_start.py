"""What the hardened sandbox costs per worker start.

Times one worker start, to the end of a job that imports what every worker imports before the
detector (``mmh_bench.api``, numpy, torch), three ways: a plain child process (no sandbox), the
sandbox as it was before the hardening (the root file system read-only with folders masked, as
root, no seccomp filter, no limits) and the hardened sandbox (allow-list, unprivileged uid,
seccomp, limits, watched output), plus the once-per-process self-test.

Run alone on the machine:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sandbox_start.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmh_bench.common.provenance import hardware
from mmh_bench.evaluation.sealed.bwrap import PRELUDE, Limits
from mmh_bench.evaluation.sealed.process import launch
from mmh_bench.evaluation.sealed.selftest import _self_test
from mmh_bench.evaluation.sealed.sandbox import hidden_paths

OUT = Path(__file__).parent / "results" / "sandbox_start.json"
JOB = "import mmh_bench.api, numpy, torch"


def _old_bwrap(argv: list[str], hide: list[Path]) -> list[str]:
    """The sandbox before the hardening: / read-only, masks over hidden folders, same namespaces."""
    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for p in hide:
        if p.is_dir() and Path("/tmp") not in [p, *p.parents]:
            cmd += ["--tmpfs", str(p), "--remount-ro", str(p)]
    cmd += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
            "--new-session", "--chdir", "/tmp", "--cap-drop", "ALL"]
    return cmd + ["--", *argv]


def time_mode(mode: str, repeats: int) -> list[float]:
    out = []
    hide = [h for h in hidden_paths() if not any(q in h.parents for q in hidden_paths())]
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="mmh-bench-start-") as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "view").mkdir()
            (tmp / "out").mkdir()
            t0 = time.perf_counter()
            if mode == "old sandbox":
                rc = subprocess.run(_old_bwrap([sys.executable, "-c", JOB], hide), capture_output=True).returncode
            else:
                rc, _ = launch(tmp, lambda v, o: [sys.executable, "-c", PRELUDE + JOB],
                               sandbox=mode == "hardened sandbox", limits=Limits.from_env(), threads=1)
            out.append(time.perf_counter() - t0)
            if rc != 0:
                raise SystemExit(f"{mode}: the job exited {rc}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    rows = {}
    for mode in ("process", "old sandbox", "hardened sandbox"):
        time_mode(mode, 1)  # warm the page cache
        ts = time_mode(mode, args.repeats)
        rows[mode] = {"median_s": round(statistics.median(ts), 3), "min_s": round(min(ts), 3),
                      "max_s": round(max(ts), 3)}
    t0 = time.perf_counter()
    status = _self_test()
    rows["self-test (once per process)"] = {"median_s": round(time.perf_counter() - t0, 3), "ok": status.ok}
    doc = {"job": JOB, "repeats": args.repeats, "hardware": hardware(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for mode, r in rows.items():
        print(f"{mode:30s} {r}")


if __name__ == "__main__":
    main()
