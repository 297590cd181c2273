"""The typed reading of a built instance's ``meta.json``.

The build writes ``meta.json`` as a plain document (its bytes are part of published instances, so
its layout stays as it is); everything that reads it goes through :class:`BuildMeta`, where each
field's default is written once. Family-specific entries (caption kinds, class names, ...) pass
through as extra fields for the family's own code.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    """Known fields typed; anything else a builder recorded is kept as it is."""

    model_config = ConfigDict(extra="allow", frozen=True)


class ModelRecord(_Open):
    """Where the task's trained model lies and which loader reads it."""

    kind: str
    path: str = "."


class CopyingRecord(_Open):
    """The instance's C_T against its held-out draw (common/ct_statistic.py)."""

    ct: float | None = None
    n_cells_used: int | None = None
    n_heldout: int | None = None


class LabellingRecord(_Open):
    """The copy rule the labels were made with, and what its checks found."""

    ratio: float
    abs_tol: float
    chance_alpha: float
    null_copy_rate: float | None = None


class BuildMeta(_Open):
    """One built instance's record: identity, files, labelling rule and model."""

    task: str | None = None
    version: str | None = None
    spec_hash: str | None = None
    data_hash: str
    build_format: int | None = None
    build_seconds: float | None = None
    #: dev: built from the public spec; test: placed by a secret seed; fresh: held out
    instance_kind: Literal["dev", "test", "fresh"] = "dev"
    instance_replicate: int | None = None
    files: dict[str, str] = {}
    model: ModelRecord | None = None
    sampler: dict[str, Any] | None = None
    dedup_tol: float = 0.0
    n_train_dedup: int = 0
    labelling: LabellingRecord | None = None
    null_copy_rate: float | None = None
    copying: CopyingRecord | None = None
    packages: dict[str, Any] | None = None
    published_record: str | None = None


def read_meta(doc: dict[str, Any]) -> BuildMeta:
    """The typed record of a ``meta.json`` document."""
    return BuildMeta.model_validate(doc)


__all__ = ["BuildMeta", "CopyingRecord", "LabellingRecord", "ModelRecord", "read_meta"]
