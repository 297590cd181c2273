"""Published numbers that mmh-bench ships beside its own measurements, never ranked with them.

Each ``*.toml`` file in this folder holds the tables of published papers and repositories, one
``[[table]]`` per published table (what its rows share: task, source, model, prompt sets, TPR
rule, how the protocol differs) with a list ``rows`` of its rows (method, setting, metrics; a row
may also override a shared field). :func:`load_reported` merges each row with its table and
validates it as a :class:`~mmh_bench.leaderboard.schema.ReportedRow`, so a typo, a number out of range or an
unknown task is an error that names the file, the table, the row and the field.

Only numbers a source states are listed (see each table's ``source``); the board shows them
under their task in a table of their own, "reported, not re-measured", with the TPR rule each
source used, because the same ROC curve gives a different TPR@1%FPR under another rule.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from mmh_bench.leaderboard.schema import ReportedRow, SchemaError, describe

REPORTED_DIR = Path(__file__).parent
_TOP_KEYS = {"description", "table"}


def reported_files() -> list[Path]:
    """The shipped files, in name order."""
    return sorted(REPORTED_DIR.glob("*.toml"))


def load_reported(paths: Path | str | list[Path] | None = None,
                  tasks: Mapping[str, Any] | None = None) -> list[ReportedRow]:
    """Every row of ``paths`` (default: the shipped files), validated, in file order.

    ``tasks``: when given, every row's task must be in it (the registry's names). Raises
    :class:`~mmh_bench.leaderboard.schema.SchemaError` naming file, table, row and field on the first bad entry."""
    files = reported_files() if paths is None else [Path(p) for p in
                                                    (paths if isinstance(paths, list) else [paths])]
    rows: list[ReportedRow] = []
    seen: dict[tuple[str, ...], str] = {}
    for path in files:
        for where, row in _read(path):
            if tasks is not None and row.task not in tasks:
                raise SchemaError(f"{path}: {where}: field 'task': unknown task {row.task!r} "
                                  "(not in the task registry)", "task")
            if row.key() in seen:
                raise SchemaError(f"{path}: {where}: repeats {seen[row.key()]} (same task, method, "
                                  "setting, model, negatives and source)", "method")
            seen[row.key()] = f"{path.name}, {where}"
            rows.append(row)
    return rows


def _read(path: Path) -> list[tuple[str, ReportedRow]]:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"{path}: not readable TOML: {exc}") from None
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise SchemaError(f"{path}: unknown top-level key {unknown[0]!r} (expected {sorted(_TOP_KEYS)})",
                          unknown[0])
    tables = doc.get("table")
    if not isinstance(tables, list) or not tables:
        raise SchemaError(f"{path}: needs at least one [[table]]", "table")
    out = []
    for i, table in enumerate(tables, 1):
        shared = dict(table)
        rows = shared.pop("rows", None)
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise SchemaError(f"{path}: table {i}: needs 'rows', a non-empty list of tables", "rows")
        for j, row in enumerate(rows, 1):
            where = f"table {i} ({str(shared.get('source', '?'))[:60]!r}), row {j} ({str(row.get('method', '?'))[:60]!r})"
            try:
                out.append((where, ReportedRow.model_validate({**shared, **row})))
            except ValidationError as exc:
                err = describe(exc)
                raise SchemaError(f"{path}: {where}: {err}", err.field) from None
    return out


__all__ = ["REPORTED_DIR", "load_reported", "reported_files"]
