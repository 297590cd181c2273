"""The detector view: a folder holding exactly what a detector's access grants, and its job.

Layout (arrays as ``.npy``, loaded with ``allow_pickle=False``; everything else JSON)::

    view.json     public task facts (TaskInfo), track, access, seed; model kind; dedup tolerance
    job.json      detector reference, constructor parameters, batch size
    samples.npy   always
    cond.npy      only with Access.MODEL_COND (and a conditional task)
    model/        only with Access.MODEL: the task's model folder (hard links, else copies)
    train.npy     only with Access.TRAIN_DATA
    detector/     the detector's source file, when it was loaded from a file

Never labels, subtypes, nearest-neighbour audit arrays, held-out data, LID*, or build metadata
beyond the model kind: what is not in the folder cannot leak from it.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmh_bench.api.context import TaskInfo
from mmh_bench.api.detector import Detector
from mmh_bench.files import atomic_write_bytes, write_json

VIEW_FORMAT = 1
#: module-name prefix of detectors loaded from ``path/file.py:Class`` (mmh_bench.registry)
FILE_MODULE_PREFIX = "mmh_bench_user_"


class SealError(RuntimeError):
    """The pair cannot be evaluated sealed (e.g. its model exists only in the parent's memory)."""


def detector_ref(det: Detector) -> tuple[str, Path | None]:
    """How the worker finds the detector's class: ``(reference, source file to ship or None)``.

    Importable classes travel as ``module:Class``; classes loaded from a file (or defined in a
    script) travel with their file, so a file in a folder the sandbox hides still runs."""
    from .describe import SealedDetector
    if isinstance(det, SealedDetector):  # a stand-in: the code was never imported here
        return det.sealed_ref, det.sealed_file
    cls = type(det)
    if "<locals>" in cls.__qualname__:
        raise SealError(f"detector class {cls.__qualname__} is defined inside a function; sealed "
                        "evaluation needs a class importable by module:Class or path/file.py:Class "
                        "(or evaluate it with isolation='in-process')")
    if cls.__module__ == "__main__" or cls.__module__.startswith(FILE_MODULE_PREFIX):
        path = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if not path:
            raise SealError(f"detector class {cls.__qualname__} has no source file to ship (defined "
                            "interactively?); save it in a file or evaluate with isolation='in-process'")
        return f"detector/{Path(path).name}:{cls.__qualname__}", Path(path)
    return f"{cls.__module__}:{cls.__qualname__}", None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _model_folder(inst: Any) -> tuple[str, Path]:
    model = inst.meta.get("model") or {}
    if not model.get("kind") or inst.root is None:
        raise SealError(f"task {inst.spec.name!r}: the model exists only in this process's memory, "
                        "so a sealed worker cannot load it; evaluate in-process to trust the detector")
    root = Path(inst.root).resolve()
    src = (root / model.get("path", "")).resolve()
    if src == root or root not in src.parents:
        raise SealError(f"task {inst.spec.name!r}: its model folder is the build folder itself, which "
                        "holds the labels; a sealed view cannot ship it")
    return str(model["kind"]), src


def write_view(inst: Any, det: Detector, dir: str | Path, *, seed: int = 0, batch_size: int = 512) -> Path:
    """Write ``det``'s view of ``inst`` into ``dir`` (created, must be empty) and return it."""
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SealError(f"view folder {out} is not empty")
    access = det.access
    ref, source = detector_ref(det)
    params = det.params()
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SealError(f"detector {det.name!r}: parameters are not plain JSON ({exc})") from None
    info: TaskInfo = inst.info()
    view: dict[str, Any] = {"format": VIEW_FORMAT, "task": {**asdict(info), "shape": list(info.shape)},
                            "track": inst.spec.track, "access": access.label, "seed": int(seed),
                            "model": None, "train": None}
    save_npy(out / "samples.npy", inst.samples)
    if access.grants_cond() and inst.cond is not None:
        save_npy(out / "cond.npy", inst.cond)
    if access.grants_generation() and inst.noise is not None and inst.meta.get("sampler"):
        save_npy(out / "noise.npy", inst.noise)
        view["sampler"] = dict(inst.meta["sampler"])
    if access.grants_model():
        kind, src = _model_folder(inst)
        shutil.copytree(src, out / "model", copy_function=_link_or_copy)
        view["model"] = {"kind": kind, "path": "model"}
    if access.grants_train() and "train" in inst.arrays:
        save_npy(out / "train.npy", inst.arrays["train"])
        view["train"] = {"path": "train.npy", "dedup_tol": float(inst.meta.get("dedup_tol", 0.0))}
        if "train_null_rate" in inst.arrays and inst.meta.get("labelling"):  # the copy rule's training side
            save_npy(out / "train_null_rate.npy", inst.arrays["train_null_rate"])
            view["train"]["labelling"] = {k: inst.meta["labelling"][k] for k in ("ratio", "abs_tol", "chance_alpha")}
    if source is not None:
        (out / "detector").mkdir()
        shutil.copyfile(source, out / "detector" / source.name)
    write_json(out / "view.json", view)
    write_json(out / "job.json", {"detector": ref, "params": params, "batch_size": int(batch_size)})
    return out
