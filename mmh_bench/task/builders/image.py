"""Real-image tasks (family "image"): packaged images with injected duplicates and a rare class, a
pixel-space diffusion model trained on CPU, its samples labelled in pixel space by the shared
copy test.

Spec tables:

- ``[data]``: ``source`` (see :mod:`mmh_bench.task.data.images`), ``side`` (resize), and the injection
  keys of :func:`mmh_bench.task.data.images.inject`.
- ``[model]``: ``hidden``, ``depth``, ``steps``, ``batch_size``, ``lr``, ``t_power`` (training
  time density, see :func:`mmh_bench.task.models.mlp.sample_times`); ``conditional = true``
  trains a class-conditional model with condition dropout ``p_uncond`` (classifier-free guidance).
- ``[sampling]``: ``n``, ``steps``, ``guidance`` (conditional only; classes are drawn evenly, the
  rare class included, so every class is prompted as often).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from mmh_bench.task.build import BuildOutput, training_options
from mmh_bench.task.data.images import CLASS_NAMES, UNKNOWN_POSITIVE_LID, heldout_images, inject, load_images
from mmh_bench.task.instances import placement_rng
from mmh_bench.task.models.mlp import train_denoiser
from mmh_bench.task.models.pixel_mlp import PixelMLPScoreModel, save_pixel_mlp
from mmh_bench.task.sampler import Sampler, sample_task
from mmh_bench.task.spec import TaskSpec

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.spec_models import ImageData

ImageDataT = TypeVar("ImageDataT", bound="ImageData")


#: designed role of each training row, by ``InjectedSet.group``
GROUP_NAMES = ("common-class single", "duplicated image", "rare-class single")


def null_halves(heldout: np.ndarray) -> dict[str, np.ndarray]:
    """Unused real images are the fresh draws of an image task: half of them feed the labels'
    chance test, the other half measures the null copy rate independently."""
    return {"null_draws": heldout[0::2], "null_check": heldout[1::2]}


def place_rare_class(spec: TaskSpec, d: ImageDataT, y: np.ndarray) -> ImageDataT:
    """On a test instance the rare class is drawn by the secret placement, not read from the spec."""
    rng = placement_rng(spec)
    if rng is None or d.rare_class is None:
        return d
    return d.model_copy(update={"rare_class": int(rng.choice(d.class_list(y)))})


def even_classes(classes: list[int], n: int) -> np.ndarray:
    """``n`` class ids cycling through ``classes``: every class is prompted equally often."""
    return np.asarray([classes[i % len(classes)] for i in range(n)], dtype=np.int64)


def build_image(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    d, s = spec.model.data, spec.model.sampling
    source = d.source
    x, y = load_images(source, d.side)
    d = place_rare_class(spec, d, y)
    inj = inject(x, y, d, spec.seed)
    shape = inj.x.shape[1:]
    conditional = spec.conditional
    n_classes = int(y.max()) + 1
    net = train_denoiser(inj.x, cond=inj.label if conditional else None,
                         n_classes=n_classes if conditional else 0, **training_options(spec, progress))
    save_pixel_mlp(net, shape, work / "model")
    model = PixelMLPScoreModel(net, shape)
    n = s.n
    cond = even_classes(sorted(set(inj.label.tolist())), n) if conditional else None
    sampler = Sampler.from_spec(s, clip=1.0)
    samples, noise = sample_task(model, n, spec.seed, sampler, None if cond is None else cond.tolist(),
                                 progress=progress)
    names = CLASS_NAMES.get(source, ())
    heldout = heldout_images(x, y, inj, d, spec.seed)
    return BuildOutput(
        heldout=heldout, **null_halves(heldout), train_source=inj.group, source_names=list(GROUP_NAMES),
        samples=samples, train=inj.x, train_lid=inj.lid, cond=cond,
        train_cond=inj.label if conditional else None,
        model={"kind": "pixel-mlp", "path": "model"}, sample_arrays={"noise": noise},
        extra_arrays={"train_class": inj.label, "train_group": inj.group, "train_dup_id": inj.dup_id,
                      "train_source_row": inj.source_row},
        extra_meta={"image_source": source, "image_shape": list(shape), "sampler": sampler.to_meta(),
                    "class_names": list(names),
                    "train_lid_note": (f"LID* is 0 for duplicated images; {UNKNOWN_POSITIVE_LID} marks "
                                       "'unknown, > 0' for all others"),
                    "train_groups": {"common": int((inj.group == 0).sum()),
                                     "duplicated_rows": int((inj.group == 1).sum()),
                                     "rare": int((inj.group == 2).sum())}})
