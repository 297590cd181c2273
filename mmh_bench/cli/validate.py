"""``mmh-bench validate``: check the leaderboard store (or given files) against the schema.

Meant for review and CI: every file the board would leave out is listed with the field at fault,
and the exit status is 1 when there is any. ``--json-schema`` prints the result schema.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = "leaderboard/results"


def _kind(path: Path) -> str:
    if path.name == "metadata.json":
        return "metadata"
    if path.name == "verification.json":
        return "verification"
    if "reported" in path.parts:
        return "reported"
    return "result"


def validate_file(path: Path, tasks: Any) -> str | None:
    """The reason ``path`` is invalid, or None."""
    from mmh_bench.leaderboard.store import ResultError, read_result
    from mmh_bench.leaderboard.schema import (ReportedFile, SchemaError, SubmissionMeta, Verification, read_json,
                          validate_model)
    kind = _kind(path)
    try:
        if kind == "result":
            read_result(path, tasks=tasks)
        else:
            model = {"metadata": SubmissionMeta, "verification": Verification, "reported": ReportedFile}[kind]
            validate_model(model, read_json(path))
    except ResultError as exc:
        return str(exc).removeprefix(f"{path}: ")
    except SchemaError as exc:
        return str(exc)
    return None


def cmd_validate(args: argparse.Namespace) -> int:
    from mmh_bench.leaderboard.board import collect_board
    from mmh_bench.leaderboard.store import known_tasks
    from mmh_bench.leaderboard.schema import json_schema

    if args.json_schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.files:
        catalog = known_tasks()
        bad = 0
        for f in args.files:
            reason = validate_file(Path(f), catalog)
            print(f"{f}: {'ok' if reason is None else 'REJECTED: ' + reason}")
            bad += reason is not None
        return 1 if bad else 0
    board = collect_board(args.results)
    for r in board.rejected:
        print(f"REJECTED {r}")
    kinds = {k: sum(1 for r in board.rows if r.kind == k) for k in ("measured", "submission", "reported")}
    print(f"{kinds['measured']} measured, {kinds['submission']} submitted and {kinds['reported']} reported "
          f"row(s) accepted; {len(board.rejected)} file(s) or entries rejected")
    return 1 if board.rejected else 0


def register(sub: Any) -> None:
    s = sub.add_parser(
        "validate", help="check result, submission and reported files against the schema",
        description="Validate the leaderboard store (results, submissions/, reported/ beside it) or the "
                    "given files. Lists every rejected file with the field at fault; exit status 1 if any.")
    s.add_argument("files", nargs="*", help="files to check (default: the whole store)")
    s.add_argument("--results", default=DEFAULT_RESULTS, help=f"results folder (default: {DEFAULT_RESULTS})")
    s.add_argument("--json-schema", action="store_true", help="print the result file's JSON Schema and exit")
    s.set_defaults(func=cmd_validate)
