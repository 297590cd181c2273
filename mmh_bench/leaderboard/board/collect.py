"""Collecting the store: results, submissions and reported numbers, each validated first.

A rejected file is recorded on the board (``Board.rejected``) and left out; it never changes how
the accepted ones render.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from mmh_bench.files import sha256_file
from mmh_bench.leaderboard.reported import REPORTED_DIR, load_reported
from mmh_bench.leaderboard.schema import (ReportedFile, SchemaError, SubmissionMeta, Verification, read_json,
                      validate_model)
from mmh_bench.leaderboard.store import Rejected, Result, TaskCatalog, instance_of, iter_json_files, known_tasks, scan_results
from mmh_bench.task.spec import TaskSpec
from .model import Board, Row, TaskFacts, add_result, sampler_steps


def _sha_tree(paths: Iterable[tuple[Path, Path]]) -> dict[str, str]:
    return {str(rel): sha256_file(p) for p, rel in paths}


def _load_submission(folder: Path, tasks: TaskCatalog, rejected: list[Rejected]
                     ) -> tuple[SubmissionMeta, list[Result], bool] | None:
    meta_path = folder / "metadata.json"
    try:
        meta = validate_model(SubmissionMeta, read_json(meta_path))
        if meta.name != folder.name:
            raise SchemaError(f"field 'name': {meta.name!r} differs from the folder name {folder.name!r}", "name")
    except SchemaError as exc:
        rejected.append(Rejected(meta_path, f"{exc} (the whole submission is left out)", exc.field))
        return None
    if meta.kind != "detector":  # a mitigator's entry: its results belong to the mitigation track
        return None
    res_dir = folder / "results"
    if not res_dir.is_dir():
        rejected.append(Rejected(res_dir, "submission has no results folder"))
        return None
    scan = scan_results(res_dir, tasks=tasks)
    rejected += scan.rejected
    docs, files = [], []
    for path, doc in scan.accepted:
        if doc.detector != meta.detector:
            rejected.append(Rejected(path, f"field 'detector': {doc.detector!r} is not the submission's "
                                           f"detector {meta.detector!r}", "detector"))
            continue
        if doc.isolation != "sandbox":  # submitted code counts only where it ran sealed
            rejected.append(Rejected(path, f"field 'isolation': {doc.isolation!r}; a submission's results "
                                           "count only when its code ran in the sandbox", "isolation"))
            continue
        docs.append(doc)
        files.append((path, path.relative_to(folder)))
    return meta, docs + _heldout_docs(folder, meta, tasks, rejected), entry_verified(folder, meta, files, rejected)


def _heldout_docs(folder: Path, meta: SubmissionMeta, tasks: TaskCatalog, rejected: list[Rejected]
                  ) -> list[Result]:
    """The entry's held-out results (``heldout/``, written by ``verify`` on fresh instances), each
    shown only while verification.json vouches for its bytes: the submitter cannot write their own."""
    held = folder / "heldout"
    if not held.is_dir():
        return []
    try:
        vouched = validate_model(Verification, read_json(folder / "verification.json")).heldout_files
    except (SchemaError, OSError):
        vouched = {}
    out = []
    scan = scan_results(held, tasks=tasks)
    rejected += scan.rejected
    for path, doc in scan.accepted:
        rel = str(path.relative_to(folder))
        if doc.detector != meta.detector or instance_of(doc).kind != "fresh":
            rejected.append(Rejected(path, "not a held-out (fresh) result of the entry's detector", "instance"))
        elif vouched.get(rel) != sha256_file(path):
            rejected.append(Rejected(path, "held-out result not recorded by `mmh-bench verify` "
                                           "(verification.json): left out"))
        else:
            out.append(doc)
    return out


def entry_verified(folder: Path, meta: SubmissionMeta, files: list[tuple[Path, Path]],
              rejected: list[Rejected]) -> bool:
    """True while verification.json vouches for exactly these bytes (results and detector code)."""
    path = folder / "verification.json"
    if not path.exists():
        return False
    try:
        ver = validate_model(Verification, read_json(path))
    except SchemaError as exc:
        rejected.append(Rejected(path, str(exc), exc.field))
        return False
    code_sha = None
    target = meta.detector_ref.rsplit(":", 1)[0]
    if target.endswith(".py"):
        code = folder / target
        inside = code.resolve().parent == folder.resolve() and code.is_file() and not code.is_symlink()
        code_sha = sha256_file(code) if inside else "missing"
    return (ver.ok and ver.name == meta.name and ver.detector_sha256 == meta.detector_sha256 == code_sha
            and bool(files) and ver.files == _sha_tree(files))


def _load_reported(reported_dir: Path, tasks: TaskCatalog, rejected: list[Rejected]) -> list[Row]:
    rows: list[Row] = []
    seen: dict[tuple[str, str, str, str], Path] = {}
    for path in iter_json_files(reported_dir):
        try:
            doc = validate_model(ReportedFile, read_json(path))
            for i, e in enumerate(doc.entries):
                if e.task not in tasks:
                    raise SchemaError(f"field 'entries.{i}.task': unknown task {e.task!r} "
                                      "(not in the task registry)", f"entries.{i}.task")
        except SchemaError as exc:
            rejected.append(Rejected(path, str(exc), exc.field))
            continue
        for i, e in enumerate(doc.entries):
            key = (e.task, e.detector, e.model or "", e.citation)
            if key in seen:
                rejected.append(Rejected(path, f"field 'entries.{i}': repeats an entry of {seen[key]} "
                                               "(kept there)", f"entries.{i}"))
                continue
            seen[key] = path
            spec = tasks[e.task]
            rows.append(Row(kind="reported", task=e.task, version=spec.version, family=spec.family,
                            track=spec.track, detector=e.detector, access=e.access,
                            metrics=e.metrics,
                            citation=e.citation, url=e.url, notes=e.protocol_notes, model=e.model or "",
                            method=e.detector, tpr_rule="unstated"))
    return rows


def _shipped_reported(tasks: TaskCatalog, rejected: list[Rejected]) -> list[Row]:
    """The published numbers shipped in :mod:`mmh_bench.leaderboard.reported`, for the tasks on this board."""
    try:
        entries = load_reported()
    except SchemaError as exc:
        rejected.append(Rejected(REPORTED_DIR, str(exc), exc.field))
        return []
    rows = []
    for e in entries:
        spec = tasks.get(e.task)
        if spec is None:  # a catalog without the Stable Diffusion tasks
            continue
        rows.append(Row(kind="reported", task=e.task, version=spec.version, family=spec.family,
                        track=spec.track, detector=e.detector or "", access=None,
                        metrics=e.metrics, citation=e.source,
                        url=e.url or "", notes=e.protocol, model=e.model, method=e.method,
                        setting=e.setting or "", negatives=e.negatives, tpr_rule=e.tpr_rule))
    return rows


def _claim(res: Result) -> tuple[str, str, str, str]:
    return res.task, res.task_version, instance_of(res).data_hash, res.detector


def collect_board(results_dir: str | Path, *, submissions_dir: str | Path | None = None,
                  reported_dir: str | Path | None = None,
                  tasks: TaskCatalog | Iterable[TaskSpec | str | Path] | None = None,
                  shipped_reported: bool = True) -> Board:
    """Validate the whole store and gather what the board shows.

    ``submissions_dir`` / ``reported_dir`` default to ``submissions`` / ``reported`` beside
    ``results_dir`` (the store is ``leaderboard/{results,submissions,reported}``).
    ``shipped_reported``: add the published numbers mmh-bench ships (:mod:`mmh_bench.leaderboard.reported`)
    for the tasks in the catalog, before the store's own reported files.
    ``tasks``: extra task specs accepted besides the registry's (or a full catalog mapping).
    Precedence when two entries claim the same (task, version, instance, detector): the results
    store first (a file in its instance's folder before one at the older flat place), then
    submissions by submission date and name; the later claim is rejected. Entries on different
    instances of a task are all kept, and never ranked together.
    """
    results_dir = Path(results_dir)
    catalog: TaskCatalog = tasks if isinstance(tasks, Mapping) else known_tasks(tasks or ())
    subs = Path(submissions_dir) if submissions_dir is not None else results_dir.parent / "submissions"
    reps = Path(reported_dir) if reported_dir is not None else results_dir.parent / "reported"
    board = Board()
    scan = scan_results(results_dir, tasks=catalog)
    board.rejected += scan.rejected
    claimed: dict[tuple[str, str, str, str], str] = {}
    for path, doc in sorted(scan.accepted, key=lambda pd: (pd[0].parent.name != instance_of(pd[1]).id,
                                                           str(pd[0]))):
        key = _claim(doc)
        if key in claimed:
            board.rejected.append(Rejected(path, f"field 'detector': {doc.detector!r} on {doc.task!r} "
                                                 f"instance {instance_of(doc).id} is already on the board "
                                                 f"from {claimed[key]} (kept there)", "detector"))
            continue
        add_result(board, doc, "measured", catalog)
        claimed[key] = str(path)
    if subs.is_dir():
        loaded = []
        for folder in sorted(p for p in subs.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.is_symlink():
                board.rejected.append(Rejected(folder, "submission folder is a symbolic link"))
                continue
            got = _load_submission(folder, catalog, board.rejected)
            if got is not None:
                loaded.append(got)
        for meta, docs, verified in sorted(loaded, key=lambda m: (m[0].submitted, m[0].name)):
            for doc in docs:
                key = _claim(doc)
                if key in claimed:
                    board.rejected.append(Rejected(
                        subs / meta.name, f"field 'detector': {doc.detector!r} on {doc.task!r} is "
                                          f"already on the board from {claimed[key]} (kept there)", "detector"))
                    continue
                claimed[key] = str(subs / meta.name)
                row = add_result(board, doc, "submission", catalog)
                row.submission, row.authors, row.url, row.verified = (meta.name, list(meta.authors),
                                                                      meta.url, verified)
    reported = _shipped_reported(catalog, board.rejected) if shipped_reported else []
    if reps.is_dir():
        reported += _load_reported(reps, catalog, board.rejected)
    for row in reported:
        board.rows.append(row)
        key = (row.task, row.version)
        if key not in board.tasks:
            spec = catalog[row.task]
            board.tasks[key] = TaskFacts(row.task, row.version, row.family, row.track, spec.hash,
                                         description=spec.description, sampler_steps=sampler_steps(spec))
    return board

