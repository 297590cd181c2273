"""Size and speed of published task instances: what ``mmh-bench publish`` / ``pull`` cost per task.

Why: instances are shared as data (a folder or a Hugging Face Hub dataset), so their size decides
whether a task is practical to publish, and pull time (sha256 of every file, arrays rebuilt from
Arrow, data hash, install) is paid by every user. For each task this loads the build from the
cache (building it first unless ``--cached-only``), publishes it into a temporary folder, pulls it
into a fresh temporary cache, and reports bytes per part (Arrow, model, other) next to the build's
own ``instance.npz``, with publish and pull seconds (best of ``--repeat``).

    .venv/bin/python benchmarks/publish_size.py --tasks tests/data/tiny.toml
    .venv/bin/python benchmarks/publish_size.py --tasks suite:default --cached-only --repeat 3

Writes benchmarks/results/publish_size.json (``--out``). Seconds are only comparable on an otherwise
idle machine; say how loaded it was when you quote them.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROW_SETS = ("samples", "train", "heldout")


def _bytes(folder: Path) -> dict[str, int]:
    """Published bytes by part: the Arrow row sets, the build's model files, everything else."""
    out = {"arrow": 0, "model": 0, "other": 0}
    for p in folder.rglob("*"):
        if p.is_file():
            top = p.relative_to(folder).parts[0]
            part = ("arrow" if top in ROW_SETS else
                    "other" if p.parent == folder or top == "arrays" else "model")
            out[part] += p.stat().st_size
    out["total"] = sum(out.values())
    return out


def _timed(fn: Any, repeat: int) -> tuple[Any, float]:
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return value, round(best, 3)


def measure(spec: Any, cache: str | None, repeat: int, cached_only: bool) -> dict[str, Any]:
    from mmh_bench.task.build import build_task, default_cache_dir
    from mmh_bench.task.publish import publish_instance, pull_instance

    root = (Path(cache) if cache else default_cache_dir()) / spec.name / spec.hash
    row: dict[str, Any] = {"task": spec.name, "spec_hash": spec.hash}
    if cached_only and not (root / "meta.json").exists():
        return {**row, "status": "not cached"}
    inst = build_task(spec, cache, progress=False)
    row.update(data_hash=inst.data_hash, kind=inst.instance_kind, n_samples=int(len(inst.samples)),
               build_npz_bytes=(inst.root / "instance.npz").stat().st_size)
    with tempfile.TemporaryDirectory(prefix="mmh-publish-") as tmp:
        n = iter(range(repeat))
        folder, row["publish_seconds"] = _timed(
            lambda: publish_instance(inst, Path(tmp) / f"pub{next(n)}"), repeat)
        row["published_bytes"] = _bytes(folder)
        m = iter(range(repeat))
        pulled, row["pull_seconds"] = _timed(
            lambda: pull_instance(folder, Path(tmp) / f"cache{next(m)}"), repeat)
        assert pulled.data_hash == inst.data_hash
    row["status"] = "ok"
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="tests/data/tiny.toml",
                    help="comma-separated task names, suite:NAME or .toml paths (default: the tiny test task)")
    ap.add_argument("--cache", default=None, help="build cache (default: $MMH_BENCH_CACHE or ~/.cache/mmh-bench)")
    ap.add_argument("--cached-only", action="store_true", help="skip tasks not built yet instead of building them")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per task; the best is reported")
    ap.add_argument("--out", default=str(HERE / "results" / "publish_size.json"), help="JSON report path")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    import torch

    from mmh_bench.files import write_json
    from mmh_bench.common.provenance import hardware, package_versions
    from mmh_bench.registry import resolve_tasks

    rows = [measure(spec, args.cache, args.repeat, args.cached_only) for spec in resolve_tasks(args.tasks)]
    report = {"tasks": rows, "repeat": args.repeat, "torch_threads": torch.get_num_threads(),
              "hardware": hardware(), "packages": package_versions()}
    write_json(args.out, report)
    json.dump(rows, sys.stdout, indent=2)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
