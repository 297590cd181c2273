"""What a builder hands back: its own module, so a family module can name it without importing the
build machinery (which imports every family)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class BuildOutput:
    """What a builder hands back; labelling and checks are shared by all builders."""

    samples: np.ndarray
    train: np.ndarray | None = None
    train_lid: np.ndarray | None = None
    cond: np.ndarray | None = None
    train_cond: np.ndarray | None = None
    lid_star: np.ndarray | None = None  # given directly on LID-track tasks
    #: labels known by construction without a copy test (e.g. memorized prompt sets); with them
    #: ``subtype`` codes from subtypes.SUBTYPES; the nearest-neighbour labelling is then skipped
    labels: np.ndarray | None = None
    subtype: np.ndarray | None = None
    model: dict[str, Any] | None = None  # {"kind": ..., "path": relative path inside the build}
    #: fresh draws from the data distribution, never trained on: the held-out set of C_T
    heldout: np.ndarray | None = None
    #: fresh draws from the data distribution (never trained on) for the labels' chance test, and
    #: an independent set that measures the null copy rate (see mmh_bench.task.labels)
    null_draws: np.ndarray | None = None
    null_check: np.ndarray | None = None
    #: designed role of each training row (an index into ``source_names``), for the composition audit
    train_source: np.ndarray | None = None
    source_names: list[str] | None = None
    #: subtype name for a DD copy whose nearest training row has this ``train_source`` code (e.g.
    #: verbatim "VM" and template "TM" copies, as the Stable Diffusion tasks name them)
    dd_subtype_of_source: dict[int, str] = field(default_factory=dict)
    #: distances of the spec's [labels] are multiplied by this (a test instance placed at another scale)
    label_scale: float = 1.0
    #: arrays with one row per generated sample besides samples/cond (permuted with them)
    sample_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extra_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extra_meta: dict[str, Any] = field(default_factory=dict)
