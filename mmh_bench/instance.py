"""A built task: samples, labels, audit trail and handles to the model and training index."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .context import TaskInfo
from .retrieval import TrainIndex
from .score_model import ScoreModel
from .spec import TaskSpec

#: Subtype codes stored per sample, defined with the labelling rule (re-exported here).
#: DD/OD: data-driven / overfitting-driven (synthetic and image tasks, by construction);
#: VM/TM: verbatim / template memorization (Stable Diffusion prompt sets, from their labels).
from .labels import SUBTYPE_CODE, SUBTYPES, CopyRule  # noqa: E402

#: model kind -> loader(path) -> ScoreModel. Adapters register themselves here.
MODEL_LOADERS: dict[str, Callable[[Path], ScoreModel]] = {}


def register_model_loader(kind: str) -> Callable[[Callable[[Path], ScoreModel]], Callable[[Path], ScoreModel]]:
    def deco(fn: Callable[[Path], ScoreModel]) -> Callable[[Path], ScoreModel]:
        MODEL_LOADERS[kind] = fn
        return fn
    return deco


@dataclass
class TaskInstance:
    """Everything the evaluator needs for one task. Labels never reach a detector.

    ``arrays`` holds: ``samples`` [n, ...]; for memorization tasks ``labels`` (0/1), ``subtype``
    (codes of :data:`SUBTYPES`), ``d1``, ``d2``, ``nn`` (copied deduplicated training point),
    ``group_size``; ``lid_star`` per sample; ``train`` and ``train_lid``; optional ``cond`` and
    ``train_cond``.
    """

    spec: TaskSpec
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    root: Path | None = None
    #: task-specific handles for detectors: key -> (Access needed, object), see Context.extra
    extras: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    _model: ScoreModel | None = field(default=None, repr=False)

    # -- views ----------------------------------------------------------------------------------
    @property
    def samples(self) -> np.ndarray:
        return self.arrays["samples"]

    @property
    def labels(self) -> np.ndarray | None:
        return self.arrays.get("labels")

    @property
    def subtype(self) -> np.ndarray | None:
        return self.arrays.get("subtype")

    @property
    def lid_star(self) -> np.ndarray | None:
        return self.arrays.get("lid_star")

    @property
    def cond(self) -> np.ndarray | None:
        return self.arrays.get("cond")

    @property
    def data_hash(self) -> str:
        return str(self.meta["data_hash"])

    @property
    def instance_kind(self) -> str:
        """``dev`` (built from the public spec and seed) or ``test`` (placed by a secret seed)."""
        return str(self.meta.get("instance_kind", "dev"))

    def instance_info(self) -> dict[str, str]:
        """The instance's identity, part of every result: a result is current, and rows are
        ranked together, only for the same data hash."""
        return {"kind": self.instance_kind, "data_hash": self.data_hash,
                "id": f"{self.instance_kind}-{self.data_hash[:12]}"}

    def info(self) -> TaskInfo:
        return TaskInfo(name=self.spec.name, family=self.spec.family,
                        shape=tuple(self.samples.shape[1:]), conditional=self.cond is not None,
                        n_samples=len(self.samples))

    @cached_property
    def train_index(self) -> TrainIndex:
        """The deduplicated training set, carrying the instance's copy rule when it has one."""
        index = TrainIndex(self.arrays["train"], dedup_tol=float(self.meta.get("dedup_tol", 0.0)))
        index.rule = copy_rule(self.meta, self.arrays, index)
        return index

    def score_model(self) -> ScoreModel | None:
        """Load the task's model once (None when the task has none)."""
        if self._model is None and self.meta.get("model"):
            import importlib
            importlib.import_module("mmh_bench.builders")  # registers the shipped model loaders
            kind = self.meta["model"]["kind"]
            if kind not in MODEL_LOADERS:
                raise KeyError(f"no loader for model kind {kind!r}; known: {sorted(MODEL_LOADERS)}")
            path = Path(self.meta["model"].get("path", ""))
            if self.root is not None and not path.is_absolute():
                path = self.root / path
            self._model = MODEL_LOADERS[kind](path)
        return self._model

    def set_model(self, model: ScoreModel) -> None:
        """Attach a model built elsewhere (e.g. a Stable Diffusion pipeline given on the CLI)."""
        self._model = model

    def task_stats(self) -> dict[str, Any] | None:
        """Task-level figures of the build (C_T, null copy rate) that results and the board carry."""
        ct = self.meta.get("copying") or {}
        out = {"data_copying_ct": ct.get("ct"), "ct_cells_used": ct.get("n_cells_used"),
               "n_heldout": ct.get("n_heldout"), "null_copy_rate": self.meta.get("null_copy_rate")}
        return out if any(v is not None for v in out.values()) else None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.spec.name, "version": self.spec.version,
                               "spec_hash": self.spec.hash, "data_hash": self.data_hash,
                               "family": self.spec.family, "track": self.spec.track,
                               "n_samples": int(len(self.samples)),
                               "shape": list(self.samples.shape[1:]),
                               "conditional": self.cond is not None}
        if "train" in self.arrays:
            out["n_train"] = int(len(self.arrays["train"]))
            out["n_train_dedup"] = int(self.meta.get("n_train_dedup", 0))
        if self.labels is not None:
            lab = self.labels.astype(bool)
            out["n_memorized"] = int(lab.sum())
            out["memorized_frac"] = float(lab.mean())
            out["per_subtype"] = {name: int((self.subtype == code).sum())
                                  for code, name in SUBTYPES.items() if name != "none"}
        if "build_seconds" in self.meta:
            out["build_seconds"] = self.meta["build_seconds"]
        return out


def copy_rule(meta: dict[str, Any], arrays: dict[str, np.ndarray], index: TrainIndex) -> CopyRule | None:
    """The labelling rule of a built instance (None for tasks labelled otherwise)."""
    lab = meta.get("labelling")
    if not lab or "train_null_rate" not in arrays:
        return None
    return CopyRule(ratio=float(lab["ratio"]), abs_tol=float(lab["abs_tol"]),
                    chance_alpha=float(lab["chance_alpha"]),
                    null_pass_rate=np.asarray(arrays["train_null_rate"], dtype=np.float64)[index.rep_row])


def dump_meta(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=2, sort_keys=True) + "\n"
