"""Shortcut baselines: what a detector can win by reading the public task spec instead of detecting.

Each rebuilds, from the spec and its public seed, where the *dev* instance keeps its memorization
sources (duplicated and isolated training points, the rare class, the memorized captions) and
scores samples by that knowledge alone. They are strong on dev instances by design and must fall
to chance on test instances, whose placement follows a secret (mmh_bench.task.instances): the board
keeps them in their own group as the evidence that the test instances hold.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from mmh_bench import Access, Batch, Context, Detector
from mmh_bench.task.families import all_families

@lru_cache(maxsize=16)
def _dev_training_set(task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(training rows, is-a-memorization-source flag, condition id per row) of the task's dev
    instance, rebuilt from the public spec without training anything."""
    from mmh_bench.registry import get_task
    spec = get_task(task)
    data = spec.model.data
    if spec.builder == "synthetic":
        from mmh_bench.task.builders.synthetic import remap_conditions
        from mmh_bench.task.data.synthetic import designed_sources, make_mixture
        mix = make_mixture(data, spec.seed)
        source = designed_sources(data, mix.component)
        if spec.conditional:
            remap_conditions(mix, spec.seed)
        return mix.x, source, mix.cond if spec.conditional else None
    if spec.builder in ("image", "text-to-image"):
        from mmh_bench.task.data.images import GROUP_COMMON, inject, load_images
        x, y = load_images(data.source, data.side)
        inj = inject(x, y, data, spec.seed)
        cond = inj.label
        if spec.builder == "text-to-image":
            from mmh_bench.task.data.captions import caption_set
            from mmh_bench.task.data.images import CLASS_NAMES
            cs = caption_set(inj, CLASS_NAMES[data.source], data, spec.seed)
            cond = cs.train_caption
        source = inj.group != GROUP_COMMON
        return inj.x.reshape(len(inj.x), -1), source, cond if spec.conditional else None
    raise ValueError(f"task {task!r} (builder {spec.builder!r}) has no training set to rebuild from its spec")


class SourceDistance(Detector):
    """Shortcut: minus the distance to the nearest memorization source of the dev instance
    (duplicated and isolated points, duplicated and rare-class images), rebuilt from the spec."""

    name = "shortcut-sources"
    access = Access.SAMPLES
    group = "shortcut"
    cost_note = "rebuilds the dev training set from the spec (no training); one NN search"

    def fit(self, ctx: Context) -> None:
        x, source, _ = _dev_training_set(ctx.task.name)
        self._sources = np.asarray(x[source], dtype=np.float64)

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        from scipy.spatial.distance import cdist
        q = np.asarray(batch.x, dtype=np.float64).reshape(len(batch.x), -1)
        return -cdist(q, self._sources).min(axis=1)


class OriginDistance(Detector):
    """Shortcut: minus the distance to the origin of the spec's coordinates. mmh-toy's dev
    instance keeps its duplicated point there and syn2-cond's its one generalized class, so on
    dev it wins (or loses with a sign the reader can flip); a test placement shifts the data until
    the origin ranks the designed sources at chance (mmh_bench.task.builders.synthetic)."""

    name = "shortcut-origin"
    access = Access.SAMPLES
    group = "shortcut"
    cost_note = "one norm per sample"
    #: only families whose data sit in the spec's coordinates have an origin to hide (an image's
    #: norm is brightness, not a placement): their records say so
    unsuited_families = {name: "the origin is a placement shortcut of tasks placed in spec coordinates only"
                         for name, record in all_families().items() if not record.spec_coordinates}

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        q = np.asarray(batch.x, dtype=np.float64).reshape(len(batch.x), -1)
        return -np.linalg.norm(q, axis=1)


class MemorizedCondition(Detector):
    """Shortcut: 1 when the sample's condition id is one the spec's dev instance gives to a
    memorization source (a duplicated point's class, the rare class, a memorized caption), else 0."""

    name = "shortcut-condition"
    access = Access.MODEL_COND
    group = "shortcut"
    cost_note = "rebuilds the dev conditions from the spec; a set lookup"

    def fit(self, ctx: Context) -> None:
        _, source, cond = _dev_training_set(ctx.task.name)
        if cond is None:
            raise ValueError(f"task {ctx.task.name!r} has no conditions in its spec")
        common = set(cond[~source].tolist())
        self._memorized = np.array(sorted(set(cond[source].tolist()) - common))

    def score(self, batch: Batch, ctx: Context) -> np.ndarray:
        return np.isin(np.asarray(batch.cond), self._memorized).astype(float)
