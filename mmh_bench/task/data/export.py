"""Save synthetic mixtures and built tasks with the ``datasets`` library (Arrow on disk).

So a user can open a task's data in the ecosystem's usual tool without the benchmark:

    from datasets import load_from_disk
    ds = load_from_disk("mmh-toy-data")      # DatasetDict with "train" (and "samples")
    ds["train"].to_pandas().head()
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .synthetic import Mixture

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset, DatasetDict

    from mmh_bench.task.instance import TaskInstance

#: sample-level arrays of a built task copied into the "samples" split when present
SAMPLE_COLUMNS = ("labels", "subtype", "d1", "d2", "nn_row", "group_size", "lid_star", "cond", "component")


def _vectors(x: np.ndarray) -> list[np.ndarray]:
    return list(np.asarray(x, dtype=np.float32).reshape(len(x), -1))


def mixture_to_dataset(mix: Mixture) -> "Dataset":
    """One row per training point: ``x`` (float32 vector), ``lid``, ``component``, ``cond``."""
    from datasets import Dataset, Features, Sequence, Value
    dim = mix.x.shape[1]
    cols = {"x": _vectors(mix.x), "lid": mix.lid.astype(np.float32),
            "component": mix.component.astype(np.int64)}
    feats = {"x": Sequence(Value("float32"), length=dim), "lid": Value("float32"),
             "component": Value("int64")}
    if mix.cond is not None:
        cols["cond"] = mix.cond.astype(np.int64)
        feats["cond"] = Value("int64")
    ds = Dataset.from_dict(cols, features=Features(feats))
    ds.info.description = f"synthetic manifold mixture, D={dim}, n_classes={mix.n_classes}"
    return ds


def dataset_to_mixture(ds: "Dataset") -> Mixture:
    """Inverse of :func:`mixture_to_dataset`."""
    ds = ds.with_format("numpy")
    cond = np.asarray(ds["cond"], dtype=np.int64) if "cond" in ds.column_names else None
    return Mixture(x=np.asarray(ds["x"], dtype=np.float32), lid=np.asarray(ds["lid"], dtype=np.float32),
                   component=np.asarray(ds["component"], dtype=np.int64), cond=cond,
                   n_classes=int(cond.max()) + 1 if cond is not None and len(cond) else 0)


def save_mixture(mix: Mixture, path: str | Path) -> Path:
    """Write the mixture as an Arrow dataset folder (``datasets.load_from_disk`` reads it)."""
    path = Path(path)
    mixture_to_dataset(mix).save_to_disk(str(path))
    return path


def load_mixture(path: str | Path) -> Mixture:
    from datasets import load_from_disk
    return dataset_to_mixture(load_from_disk(str(path)))


def instance_to_datasets(inst: "TaskInstance") -> "DatasetDict":
    """A built task as a ``DatasetDict``: ``train`` (when the task has one) and ``samples``.

    The samples split carries the audit trail of the labels (d1, d2, copied row, group size, LID*).
    """
    from datasets import Dataset, DatasetDict, Features, Sequence, Value
    a = inst.arrays
    splits = {}
    if "train" in a:
        n = len(a["train"])
        cond = a.get("train_cond")
        mix = Mixture(x=a["train"], lid=a["train_lid"],
                      component=a.get("train_component", np.zeros(n, dtype=np.int64)), cond=cond,
                      n_classes=int(cond.max()) + 1 if cond is not None and len(cond) else 0)
        splits["train"] = mixture_to_dataset(mix)
    x = a["samples"]
    cols = {"x": _vectors(x)}
    feats = {"x": Sequence(Value("float32"), length=int(np.prod(x.shape[1:])))}
    for key in SAMPLE_COLUMNS:
        if key in a and len(a[key]) == len(x) and a[key].ndim == 1:
            arr = a[key]
            kind = "float32" if np.issubdtype(arr.dtype, np.floating) else "int64"
            cols[key] = arr.astype(kind)
            feats[key] = Value(kind)
    splits["samples"] = Dataset.from_dict(cols, features=Features(feats))
    return DatasetDict(splits)


def save_instance(inst: "TaskInstance", path: str | Path) -> Path:
    """Write a built task's training set and labelled samples as an Arrow ``DatasetDict`` folder."""
    path = Path(path)
    instance_to_datasets(inst).save_to_disk(str(path))
    return path
