"""Serial against parallel: ``mmh-bench run`` on the default suite, cold and warm.

    .venv/bin/python benchmarks/engine_speedup.py                     # the default suite (quiet machine)
    .venv/bin/python benchmarks/engine_speedup.py --tasks tests/data/tiny.toml --detectors random,copy-rule

Four runs of ``mmh-bench run --tasks TASKS --detectors DETECTORS``, each in a fresh process from the
repository root (so the board's published instances, ``leaderboard/instances``, are used as in
``make bench``): serial (``--workers 1``) cold, i.e. into a fresh results folder with a fresh build
cache (published instances are pulled and verified into it, the others built), then warm (the same
command again: every result current), then the same two on a local cluster (``--workers N``, one
thread each) with its own fresh folders. The metrics of the two cold runs must be identical.
Writes ``benchmarks/results/engine_speedup.json`` and ``.md``; exits 1 when a run fails or the
metrics differ.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def run(args: list[str], cache: Path) -> dict:
    env = {**os.environ, "MMH_BENCH_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "mmh_bench.cli.main", "run", *args, "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    out = {"seconds": round(time.perf_counter() - t0, 2), "returncode": proc.returncode,
           "summary": (proc.stdout.strip().splitlines() or [""])[-1]}
    if proc.returncode:
        out["stderr"] = proc.stderr[-3000:]
    return out


def metrics(folder: Path) -> dict[str, object]:
    return {str(p.relative_to(folder)): json.loads(p.read_text()).get("metrics") for p in sorted(folder.rglob("*.json"))}


def write_results(out: Path, name: str, doc: dict, lines: list[str]) -> None:
    """``out/NAME.json`` (the document) and ``out/NAME.md`` (the lines, also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    from mmh_bench.threads import cores_given
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="suite:default")
    p.add_argument("--detectors", default="all")
    p.add_argument("--workers", type=int, default=cores_given(), help="local cluster size (default: one per core)")
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args()
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="engine-speedup-") as tmp:
        for label, workers in (("serial", 1), ("parallel", a.workers)):
            res, cache = Path(tmp) / label / "results", Path(tmp) / label / "cache"
            args = ["--tasks", a.tasks, "--detectors", a.detectors, "--results", str(res), "--cache", str(cache),
                    "--workers", str(workers)]
            for phase in ("cold", "warm"):
                print(f"{label} {phase} ...", flush=True)
                runs[f"{label}-{phase}"] = {"workers": workers, **run(args, cache)}
                print(f"  {runs[f'{label}-{phase}']['seconds']:.1f} s: {runs[f'{label}-{phase}']['summary']}")
        m_serial, m_parallel = metrics(Path(tmp) / "serial" / "results"), metrics(Path(tmp) / "parallel" / "results")
    identical = m_serial == m_parallel and bool(m_serial)
    ok = identical and all(r["returncode"] == 0 for r in runs.values())
    doc = {"date": time.strftime("%Y-%m-%d %H:%M"), "tasks": a.tasks, "detectors": a.detectors,
           "cores": cores_given(), "workers": a.workers, "results": len(m_serial), "identical_metrics": identical,
           "speedup_cold": runs["serial-cold"]["seconds"] / runs["parallel-cold"]["seconds"],
           "speedup_warm": runs["serial-warm"]["seconds"] / runs["parallel-warm"]["seconds"], "runs": runs}
    lines = [f"# Engine speed-up: `mmh-bench run --tasks {a.tasks} --detectors {a.detectors}` ({doc['date']}, "
             f"{doc['cores']} cores)", "", "| run | workers | seconds | summary |", "|---|---|---|---|"]
    lines += [f"| {k} | {r['workers']} | {r['seconds']:.1f} | {r['summary']} |" for k, r in runs.items()]
    lines += ["", f"speed-up cold {doc['speedup_cold']:.2f}x, warm {doc['speedup_warm']:.2f}x; "
                  f"{len(m_serial)} results, identical metrics: {identical}"]
    write_results(Path(a.out), "engine_speedup", doc, lines)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
