"""Test-only detectors for tests/test_engine.py, in a module of their own so that Dask workers can
import them (a class defined inside a test module is pickled by reference to that module)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

import mmh_bench as mb


class KillsItsWorker(mb.Detector):
    """Scores by norm; the first time it scores (no ``marker`` file yet) it SIGKILLs the process it
    runs in, as the kernel's out-of-memory killer would. ``always``: on every try."""
    name, access = "kills-worker", mb.Access.SAMPLES

    def __init__(self, marker: str = "", always: bool = False) -> None:
        self.marker, self.always = marker, always

    def score(self, batch, ctx):
        if self.always or not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return -np.linalg.norm(batch.x, axis=1)
