"""Where a result sits under a results root: one layout for every track and for the board."""
from __future__ import annotations

from pathlib import Path


def canonical_relpath(task: str, version: str, entry: str, instance: str | None = None) -> Path:
    """``<task>/v<version>[/<instance id>]/<entry>.json`` (``entry``: the detector's or mitigator
    setting's result name)."""
    folder = Path(task) / f"v{version}"
    return (folder / instance if instance else folder) / f"{entry}.json"
