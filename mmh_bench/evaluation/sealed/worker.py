"""The sealed worker: ``python -m mmh_bench.evaluation.sealed VIEW OUT [--threads N]``.

A self-contained job: it reads only the view folder, constructs the detector (or mitigator) fresh
from its reference and parameters, runs the evaluator's loop (:func:`mmh_bench.evaluation.sealed.job.run_job`)
and writes ``OUT/scores.npy`` (a mitigator's ``OUT/generated.npy``) and then ``OUT/result.json``
(``status`` ok with the cost, or failed with the error and its traceback), each atomically. It
never sees labels: they are not in the view.
"""
from __future__ import annotations

import argparse
import json
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmh_bench.files import write_json
from .view import OUTPUT_FILE, VIEW_FORMAT, save_npy


def _load(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _detector(view: Path, job: dict[str, Any]) -> Any:
    from mmh_bench.registry import load_detector_class
    kind = str(job["kind"])
    ref = str(job[kind])
    target, _, attr = ref.rpartition(":")
    if target.startswith("detector/"):  # shipped with the view
        ref = f"{view / target}:{attr}"
    return load_detector_class(ref, kind)(**job["params"])


def _context(view: Path, det: Any, spec: dict[str, Any]) -> tuple[Any, Any]:
    from mmh_bench.api.context import Context, TaskInfo
    from mmh_bench.api.detector import Batch
    info = TaskInfo(**{**spec["task"], "shape": tuple(spec["task"]["shape"])})
    model = train_index = None
    if spec["model"]:
        from mmh_bench.registry import MODEL_LOADERS, load_target
        kind = spec["model"]["kind"]
        if kind not in MODEL_LOADERS:
            raise KeyError(f"no loader for model kind {kind!r}; known: {sorted(MODEL_LOADERS)}")
        model = load_target(MODEL_LOADERS[kind])(view / spec["model"]["path"])
    if spec["train"]:
        from mmh_bench.retrieval.train_index import TrainIndex
        train_index = TrainIndex(_load(view / spec["train"]["path"]), dedup_tol=spec["train"]["dedup_tol"])
        if spec["train"].get("labelling"):
            from mmh_bench.task.build_meta import LabellingRecord
            from mmh_bench.task.instance import copy_rule
            train_index.rule = copy_rule(LabellingRecord(**spec["train"]["labelling"]),
                                         {"train_null_rate": _load(view / "train_null_rate.npy")}, train_index)
    x = _load(view / spec["samples"])
    cond = _load(view / "cond.npy") if (view / "cond.npy").is_file() else None
    noise = _load(view / "noise.npy") if (view / "noise.npy").is_file() else None
    sampler = None
    if spec.get("sampler"):
        from mmh_bench.task.sampler import Sampler
        sampler = Sampler.from_meta(spec["sampler"])
    ctx = Context(det.name, det.access, info, seed=int(spec["seed"]), model=model, train_index=train_index,
                  samples=Batch(x=x, cond=cond, noise=noise), sampler=sampler)
    return ctx, model


def run_view(view: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Score the view's task with the view's detector (or generate with its mitigator);
    ``(scores or generated samples, cost)``."""
    from .job import run_job
    spec = json.loads((view / "view.json").read_text())
    if spec.get("format") != VIEW_FORMAT:
        raise ValueError(f"view format {spec.get('format')!r}; this worker reads {VIEW_FORMAT}")
    job = json.loads((view / "job.json").read_text())
    det = _detector(view, job)
    ctx, model = _context(view, det, spec)
    return run_job(det, ctx, lid=spec["track"] == "lid", generate=job["kind"] == "mitigator", model=model,
                   batch_size=int(job["batch_size"]))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmh_bench.evaluation.sealed",
                                description="Run one sealed (task, detector or mitigator) job from a view folder.")
    p.add_argument("view", type=Path, help="the detector view (see mmh_bench.evaluation.sealed.view)")
    p.add_argument("out", type=Path, help="folder for scores.npy (generated.npy) and result.json")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(max(1, args.threads))
    try:
        output, cost = run_view(args.view)
        kind = json.loads((args.view / "job.json").read_text())["kind"]
    except BaseException as exc:  # anything the detector raises (even SystemExit) is its failure
        write_json(args.out / "result.json", {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
                                              "traceback": traceback.format_exc()[-8000:]})
        return 1
    save_npy(args.out / OUTPUT_FILE[kind], output)
    write_json(args.out / "result.json", {"status": "ok", "cost": cost})
    return 0
