"""Reading the results store: one JSON file per (task, task version, detector)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ResultError(ValueError):
    """A result file is unreadable or malformed; the message names the file and the field."""


def read_result(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ResultError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ResultError(f"{path}: top level must be an object")
    for key in ("task", "task_version", "detector", "status"):
        if key not in obj:
            raise ResultError(f"{path}: missing field {key!r}")
    return obj


def load_results(results_dir: str | Path, *, strict: bool = False) -> list[dict[str, Any]]:
    """All results under ``results_dir``; malformed files are skipped with a warning unless strict."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ResultError(f"results folder {str(root)!r} does not exist or is not a folder")
    out = []
    for path in sorted(root.rglob("*.json")):
        try:
            out.append(read_result(path))
        except ResultError as exc:
            if strict:
                raise
            log.warning("skipping %s", exc)
    return out
