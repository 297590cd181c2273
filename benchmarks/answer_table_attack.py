"""The answer-table attack on a real task: public instances against fresh (held-out) ones.

A hostile submitter builds, offline, a table of the sha256 of every published positive sample of a
task (``leaderboard/instances/<task>/*/samples``) and ships it inside a detector that reads nothing
at run time but ``batch.x``. This script writes that detector from the published instances, then
runs it through the command line exactly as a user would, sealed: on the public instances, and with
``--instances fresh`` on held-out instances built for the run. Results go to a temporary folder;
the figures are printed and written as JSON.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/answer_table_attack.py --task syn10-dd \\
          [--fresh-replicates 3] [--out benchmarks/results/answer_table_attack.json]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mmh_bench.cli.main import main as cli
from mmh_bench.files import write_json
from mmh_bench.registry import get_task
from mmh_bench.task.publish import DEFAULT_INSTANCES, published_for, verify_published

OUT = Path(__file__).parent / "results" / "answer_table_attack.json"
DETECTOR = '''
import hashlib
import numpy as np
import mmh_bench as mb

POSITIVES = set({table!r})


class AnswerTable(mb.Detector):
    name = "answer-table"
    access = mb.Access.SAMPLES

    def score(self, batch, ctx):
        rows = np.ascontiguousarray(np.asarray(batch.x, dtype=np.float32))
        return np.array([float(hashlib.sha256(r.tobytes()).hexdigest() in POSITIVES) for r in rows])
'''


def positive_hashes(arrays: dict[str, np.ndarray]) -> set[str]:
    """sha256 of every positive sample of one published instance's arrays, as DETECTOR hashes rows."""
    pos = np.ascontiguousarray(arrays["samples"][arrays["labels"].astype(bool)], dtype=np.float32)
    return {hashlib.sha256(r.reshape(-1).tobytes()).hexdigest() for r in pos}


def table(task: str) -> list[str]:
    """sha256 of every positive sample of the task's published instances, from the published files."""
    out: set[str] = set()
    for folder in published_for(get_task(task), DEFAULT_INSTANCES):
        out |= positive_hashes(verify_published(folder)[2])
    return sorted(out)


def aurocs(folder: Path) -> list[dict]:
    return [{"instance": d["instance"]["id"], "auroc": d["metrics"]["auroc"], "isolation": d["isolation"]}
            for d in (json.loads(p.read_text()) for p in sorted(folder.rglob("*.json")))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="syn10-dd")
    p.add_argument("--fresh-replicates", default="3")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmh-attack-") as tmp:
        det = Path(tmp) / "answers.py"
        positives = table(args.task)
        det.write_text(DETECTOR.format(table=positives))
        ref = f"{det}:AnswerTable"
        runs = {}
        for label, extra in (("public", ["--instances", DEFAULT_INSTANCES]),
                             ("heldout", ["--instances", "fresh", "--fresh-replicates", args.fresh_replicates])):
            t0 = time.perf_counter()
            assert cli(["run", "--tasks", args.task, "--detectors", ref, "--results", f"{tmp}/{label}",
                        "--workers", "1", "-q", *extra]) == 0
            rows = aurocs(Path(tmp) / label)
            runs[label] = {"seconds": round(time.perf_counter() - t0, 1), "results": rows,
                           "auroc_mean": round(statistics.fmean(r["auroc"] for r in rows), 4)}
            print(label, json.dumps(runs[label]), flush=True)
    write_json(Path(args.out), {"task": args.task, "n_positive_hashes": len(positives), **runs})


if __name__ == "__main__":
    main()
