"""A small, real leaderboard store on the tiny task, built once per test session and copied.

Detectors cover three access levels (samples, model, train_data) so filters have something to do.
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mmh_bench as mb

HOSTILE_NAME = "<img src=x onerror=\"document.title='pwned'\">&'"


class Norm(mb.Detector):
    """Closeness to the origin, where tiny's point mass sits."""
    name, access = "norm", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return -np.linalg.norm(batch.x, axis=1)


class EpsNorm(mb.Detector):
    """One network evaluation per sample: the predicted noise's norm at a small time."""
    name, access = "eps-norm", mb.Access.MODEL

    def score(self, batch, ctx):
        with torch.no_grad():
            eps = ctx.model.eps(torch.as_tensor(batch.x, dtype=torch.float32), 0.05)
        return -eps.reshape(len(batch), -1).norm(dim=1).numpy()


def result_file(root: Path, det: str, task: str = "tiny", version: str = "1") -> Path:
    """Where ``det``'s result on the task is in the store (``<task>/v<version>/[<instance id>/]``);
    for a detector not there yet, the plain place."""
    folder = root / "results" / task / f"v{version}"
    subs = sorted(p / f"{det}.json" for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return next((p for p in subs if p.is_file()), folder / f"{det}.json")


def add_hostile_row(root: Path) -> Path:
    """The norm result again, under a detector name made of markup (a valid, if nasty, name)."""
    norm = result_file(root, "norm")
    doc = load(norm)
    doc["detector"] = HOSTILE_NAME
    path = norm.parent / f"{HOSTILE_NAME}.json"
    dump(path, doc)
    return path


_STORE: dict[str, Path] = {}


def base_store(tiny_spec: Any) -> Path:
    """``<tmp>/leaderboard/results`` with four real results on tiny (built once, then reused)."""
    if "root" not in _STORE:
        root = Path(tempfile.mkdtemp(prefix="mmh-board-")) / "leaderboard"
        atexit.register(shutil.rmtree, root.parent, True)
        rep = mb.evaluate([tiny_spec], [Norm(), EpsNorm(), "random", "nn-ratio"], root / "results",
                          progress=False)
        assert len(rep.ran) == 4 and not rep.failed
        _STORE["root"] = root
    return _STORE["root"]


def copy_store(tiny_spec: Any, dest: Path) -> Path:
    """A private copy of the base store at ``dest/leaderboard``; returns that folder."""
    out = dest / "leaderboard"
    shutil.copytree(base_store(tiny_spec), out)
    return out


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


# -- variants of a stored result (the board's cases are built from real results, then edited) ----
def with_negatives(doc: dict[str, Any], n_neg: int) -> dict[str, Any]:
    """The same result as if the task had ``n_neg`` negatives (counts and resolvability flags follow)."""
    from mmh_bench.common.fpr import tpr_resolvable
    m = doc["metrics"]
    for part in [m] + list(m["per_subtype"].values()):
        part["n_neg"] = n_neg
        part["tpr_at_fpr_resolvable"] = {k: tpr_resolvable(n_neg, float(k)) for k in part["tpr_at_fpr"]}
    doc["n_samples"] = m["n_pos"] + n_neg
    return doc


def as_instance(doc: dict[str, Any], kind: str, data_hash: str) -> dict[str, Any]:
    """The result moved to another instance of its task (a 64-hex data hash)."""
    doc["instance"] = {"kind": kind, "data_hash": data_hash, "id": f"{kind}-{data_hash[:12]}"}
    doc["provenance"]["data_hash"] = data_hash
    return doc


def renamed_task(spec: Any, name: str, dest: Path) -> Any:
    """A copy of a task spec under another name (so another hash): a second task for the overview."""
    from mmh_bench.task.spec import load_spec
    path = dest / f"{name}.toml"
    path.write_text(Path(spec.path).read_text().replace(f'name = "{spec.name}"', f'name = "{name}"', 1))
    return load_spec(path)


def on_task(doc: dict[str, Any], spec: Any) -> dict[str, Any]:
    doc["task"], doc["task_hash"] = spec.name, spec.hash
    doc["provenance"]["spec_hash"] = spec.hash
    return doc


def board_markdown(out: Path) -> str:
    """The Markdown board as one text: README.md (the overviews) and every task's page under tasks/."""
    return "\n".join(p.read_text() for p in [out / "README.md", *sorted((out / "tasks").glob("*.md"))])


def mem_metrics(auroc: float, model: Any = None, **fields: Any) -> Any:
    """Valid memorization metrics for a hand-made row: ``auroc`` and ``fields`` (as a result file
    keys them) over neutral defaults (AP 0.5, TPR 0.1 at every target, 40 positives, 400
    negatives); ``model``: another metrics model (a subtype's :class:`DetectionMetrics`, or one with
    the field a guide adds), :class:`MemorizationMetrics` by default."""
    from mmh_bench.common.fpr import FPR_KEYS
    from mmh_bench.leaderboard.schema import MemorizationMetrics
    doc = {"auroc": auroc, "ap": 0.5, "tpr_at_fpr": {k: 0.1 for k in FPR_KEYS}, "n_pos": 40, "n_neg": 400, **fields}
    return (model or MemorizationMetrics).model_validate(doc)
