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


def add_hostile_row(root: Path) -> Path:
    """The norm result again, under a detector name made of markup (a valid, if nasty, name)."""
    doc = load(root / "results" / "tiny" / "v1" / "norm.json")
    doc["detector"] = HOSTILE_NAME
    path = root / "results" / "tiny" / "v1" / f"{HOSTILE_NAME}.json"
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
