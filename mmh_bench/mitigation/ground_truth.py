"""Ground-truth training images of memorized prompts: the user's folder that SD mitigation compares to.

MemBench (and Jeon et al.) score a Stable Diffusion generation by its SSCD similarity to the
training images its prompt reproduces. Those images are LAION's, fetched by the user (a prompt
set's file names them by URL); nothing here downloads. The folder's layout::

    DIR/manifest.csv    header "prompt,image"; one row per ground-truth image: the prompt's exact
                        text (as in the task's prompt table; CSV quoting for commas and quotes)
                        and the image's path relative to DIR; a prompt may have several rows
    DIR/<images>        any format Pillow reads (PNG, JPEG, WebP, ...), converted to RGB

``sha256`` identifies the whole set (manifest and every image's bytes), so a result records
exactly which ground truth scored it.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmh_bench.files import sha256_file

MANIFEST = "manifest.csv"
COLUMNS = ("prompt", "image")


class GroundTruthError(ValueError):
    """The ground-truth folder is missing, malformed, or does not cover the task's prompts."""


@dataclass(frozen=True)
class GroundTruth:
    """Prompt text -> its ground-truth image files, read from a folder's manifest."""

    root: Path
    images: dict[str, tuple[Path, ...]]
    sha256: str

    def covering(self, prompts: list[str], *, partial: bool = False) -> list[str]:
        """The prompts of ``prompts`` that have ground truth; every one must, unless ``partial``
        (Jeon et al. score only the prompts whose training images could be retrieved)."""
        missing = [p for p in prompts if p not in self.images]
        if missing and len(missing) == len(prompts):
            raise GroundTruthError(f"{self.root / MANIFEST}: none of the task's {len(prompts)} memorized prompts "
                                   f"has a ground-truth image (e.g. {prompts[0]!r}); is it the task's folder?")
        if missing and not partial:
            shown = "; ".join(repr(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise GroundTruthError(f"{self.root / MANIFEST}: {len(missing)} of {len(prompts)} memorized prompts have "
                                   f"no ground-truth image ({shown}); add them, or score the covered ones alone "
                                   "(--partial-ground-truth)")
        return [p for p in prompts if p in self.images]


def load_ground_truth(folder: str | Path) -> GroundTruth:
    """Read and check ``folder``'s manifest: columns, non-empty prompts, every image file present."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise GroundTruthError(f"ground-truth folder {root} does not exist")
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise GroundTruthError(f"ground-truth folder {root} has no {MANIFEST} (header: {','.join(COLUMNS)})")
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not set(COLUMNS) <= set(reader.fieldnames):
            raise GroundTruthError(f"{manifest}: header must name the columns {', '.join(COLUMNS)}, "
                                   f"got {reader.fieldnames}")
        images: dict[str, list[Path]] = {}
        for line, row in enumerate(reader, start=2):
            prompt, name = (row["prompt"] or "").strip(), (row["image"] or "").strip()
            if not prompt or not name:
                raise GroundTruthError(f"{manifest}, line {line}: empty prompt or image")
            path = (root / name).resolve()
            if not path.is_file():
                raise GroundTruthError(f"{manifest}, line {line}: image {name!r} not found in {root}")
            images.setdefault(prompt, []).append(path)
    if not images:
        raise GroundTruthError(f"{manifest} lists no images")
    h = hashlib.sha256(manifest.read_bytes())
    for files in images.values():
        for path in files:
            h.update(sha256_file(path).encode())
    return GroundTruth(root, {p: tuple(v) for p, v in images.items()}, h.hexdigest())


def read_image(path: str | Path) -> Any:
    """An image file as an RGB ``PIL.Image`` (raises :class:`GroundTruthError` naming the file)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise GroundTruthError(f"cannot read ground-truth image {path}: {exc}") from None
