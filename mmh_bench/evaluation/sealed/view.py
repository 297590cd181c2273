"""The view: a folder holding exactly what a detector's (or mitigator's) access grants, and its job.

Layout (arrays as ``.npy``, loaded with ``allow_pickle=False``; everything else JSON)::

    view.json     public task facts (TaskInfo), track, access, seed; model kind; dedup tolerance;
                  which array the context's samples are (``samples``)
    job.json      the kind ("detector" or "mitigator"), its reference, constructor parameters,
                  batch size
    samples.npy   a detector's: the task's generated samples, always
    cond.npy      only with Access.MODEL_COND (and a conditional task)
    noise.npy     only with Access.GENERATION: each sample's initial noise x_T (and view.json
                  the sampler); a mitigator's samples are these noises (it generates the rest)
    model/        only with Access.MODEL: the task's model folder (hard links, else copies);
                  without Access.MODEL_COND a conditional model's conditions are forgotten (its
                  class embeddings or caption tokens all the null condition's)
    train.npy     only with Access.TRAIN_DATA (the copy rule's training side only for the
                  shipped reference detector)
    detector/     the detector's (mitigator's) source file, when it was loaded from a file

Never labels, subtypes, nearest-neighbour audit arrays, held-out data, LID*, or build metadata
beyond the model kind, and never a mitigator the task's own generations: what is not in the
folder cannot leak from it. A mitigator's view holds the task's first ``n`` rows only.
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
from mmh_bench.files import atomic_write_bytes, write_json
from .standin import StandIn

VIEW_FORMAT = 2
#: what the worker writes for each kind of job (beside ``result.json``)
OUTPUT_FILE = {"detector": "scores.npy", "mitigator": "generated.npy"}
#: module-name prefix of detectors loaded from ``path/file.py:Class`` (mmh_bench.registry)
FILE_MODULE_PREFIX = "mmh_bench_user_"


class SealError(RuntimeError):
    """The pair cannot be evaluated sealed (e.g. its model exists only in the parent's memory)."""


def kind_of(obj: Any) -> str:
    """``"mitigator"`` for a :class:`~mmh_bench.mitigation.Mitigator` (or its stand-in), else ``"detector"``."""
    from mmh_bench.api.mitigator import Mitigator
    return "mitigator" if isinstance(obj, Mitigator) else "detector"


def granted(inst: Any, access: Any, *, n: int | None = None, generating: bool = False) -> dict[str, Any]:
    """The rows ``access`` grants of the first ``n`` samples of ``inst`` (all by default): ``x`` (the
    generated samples; for a mitigator, ``generating``, the initial noises it starts from), ``cond``
    and ``noise`` (None where not granted). The in-process context and the view both take these."""
    noise = inst.noise[:n] if access.grants_generation() and inst.noise is not None else None
    cond = inst.cond[:n] if access.grants_cond() and inst.cond is not None else None
    return {"x": noise if generating else inst.samples[:n], "cond": cond, "noise": noise}


def detector_ref(det: Any) -> tuple[str, Path | None]:
    """How the worker finds the detector's (or mitigator's) class: ``(reference, source file to
    ship or None)``.

    Importable classes travel as ``module:Class``; classes loaded from a file (or defined in a
    script) travel with their file, so a file in a folder the sandbox hides still runs."""
    if isinstance(det, StandIn):  # a stand-in: the code was never imported here
        return det.sealed_ref, det.sealed_file
    cls, kind = type(det), kind_of(det)
    if "<locals>" in cls.__qualname__:
        raise SealError(f"{kind} class {cls.__qualname__} is defined inside a function; sealed "
                        "evaluation needs a class importable by module:Class or path/file.py:Class "
                        "(or evaluate it with isolation='in-process')")
    if cls.__module__ == "__main__" or cls.__module__.startswith(FILE_MODULE_PREFIX):
        path = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if not path:
            raise SealError(f"{kind} class {cls.__qualname__} has no source file to ship (defined "
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
    model = inst.build_meta.model
    if model is None or inst.root is None:
        raise SealError(f"task {inst.spec.name!r}: the model exists only in this process's memory, "
                        "so a sealed worker cannot load it; evaluate in-process to trust the detector")
    root = Path(inst.root).resolve()
    src = (root / model.path).resolve()
    if src == root or root not in src.parents:
        raise SealError(f"task {inst.spec.name!r}: its model folder is the build folder itself, which "
                        "holds the labels; a sealed view cannot ship it")
    return model.kind, src


def write_view(inst: Any, det: Any, dir: str | Path, *, seed: int = 0, batch_size: int = 512,
               n: int | None = None) -> Path:
    """Write ``det``'s view of ``inst`` into ``dir`` (created, must be empty) and return it; a
    mitigator's holds the first ``n`` rows (all by default)."""
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SealError(f"view folder {out} is not empty")
    access, kind = det.access, kind_of(det)
    ref, source = detector_ref(det)
    params = det.params()
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SealError(f"{kind} {det.name!r}: parameters are not plain JSON ({exc})") from None
    rows = granted(inst, access, n=n if kind == "mitigator" else None, generating=kind == "mitigator")
    info: TaskInfo = inst.info()
    view: dict[str, Any] = {"format": VIEW_FORMAT, "task": {**asdict(info), "shape": list(info.shape)},
                            "track": inst.spec.track, "access": access.label, "seed": int(seed),
                            "model": None, "train": None, "samples": "samples.npy"}
    if kind == "mitigator":  # it starts from the noises; the task's own generations stay here
        view["samples"] = "noise.npy"
    else:
        save_npy(out / "samples.npy", rows["x"])
    if rows["cond"] is not None:
        save_npy(out / "cond.npy", rows["cond"])
    if rows["noise"] is not None and inst.meta.get("sampler"):
        save_npy(out / "noise.npy", rows["noise"])
        view["sampler"] = dict(inst.meta["sampler"])
    if access.grants_model():
        model_kind, src = _model_folder(inst)
        shutil.copytree(src, out / "model", copy_function=_link_or_copy)
        if inst.cond is not None and not access.grants_cond():  # no conditional prediction to reach
            from mmh_bench.registry import CONDITION_FORGETTERS, load_target
            if model_kind in CONDITION_FORGETTERS:
                load_target(CONDITION_FORGETTERS[model_kind])(out / "model")
        view["model"] = {"kind": model_kind, "path": "model"}
    if access.grants_train() and "train" in inst.arrays:
        save_npy(out / "train.npy", inst.arrays["train"])
        meta = inst.build_meta
        view["train"] = {"path": "train.npy", "dedup_tol": meta.dedup_tol}
        if det.reference and "train_null_rate" in inst.arrays and meta.labelling is not None:
            # the copy rule's training side: for the shipped reference row alone (a stand-in never
            # is one: describe refuses untrusted code that claims it)
            save_npy(out / "train_null_rate.npy", inst.arrays["train_null_rate"])
            view["train"]["labelling"] = meta.labelling.model_dump(include={"ratio", "abs_tol", "chance_alpha"})
    if source is not None:
        (out / "detector").mkdir()
        shutil.copyfile(source, out / "detector" / source.name)
    write_json(out / "view.json", view)
    if not (out / view["samples"]).is_file():
        raise SealError(f"task {inst.spec.name!r} keeps no initial noises and sampler for {kind} {det.name!r}")
    write_json(out / "job.json", {"kind": kind, kind: ref, "params": params, "batch_size": int(batch_size)})
    return out
