"""Reading the results store: one JSON file per (task, task version, detector), each validated.

A file is accepted only when it passes :mod:`mmh_bench.leaderboard.schema`, names a task the registry knows
with the hash of its current spec, and sits at its canonical place
``<root>/<task>/v<version>/<detector>.json``, or ``<root>/<task>/v<version>/<instance id>/<detector>.json``
when a store keeps several instances of a task (so a name cannot point outside the store; the
board rejects a second entry for the same task, instance and detector). Everything else is rejected with a reason that
names the file and the field; rejected files never change what the accepted ones render.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, Mapping, Union

from mmh_bench.api.access import Access
from mmh_bench.api.detector import detector_group
from mmh_bench.common.paths import canonical_relpath
from mmh_bench.task.spec import TaskSpec, load_spec
from .schema import Instance, LIDResult, MemorizationResult, SchemaError, check_task, read_json, validate_result

log = logging.getLogger(__name__)

TaskCatalog = Mapping[str, TaskSpec]
#: a detection-board result as read: the typed model of its track
Result = Union[MemorizationResult, LIDResult]


class ResultError(ValueError):
    """A result file is unreadable or malformed; the message names the file and the field."""

    def __init__(self, message: str, path: str | Path | None = None, field: str = "") -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.field = field


@dataclass(frozen=True)
class Rejected:
    """A file the board refused, and why."""

    path: Path
    reason: str
    field: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ScanReport:
    """Accepted results (path, typed result) in path order, and the rejected files."""

    accepted: list[tuple[Path, Result]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def results(self) -> list[Result]:
        return [res for _, res in self.accepted]


def known_tasks(extra: Iterable[TaskSpec | str | Path] = ()) -> dict[str, TaskSpec]:
    """The registry's tasks (shipped and ``MMH_BENCH_TASKS_PATH``) plus ``extra`` specs or paths."""
    from mmh_bench.registry import all_tasks
    out = dict(all_tasks())
    for item in extra:
        spec = item if isinstance(item, TaskSpec) else load_spec(item)
        out[spec.name] = spec
    return out


def instance_of(res: Result) -> Instance:
    """A result's instance identity; results older than the ``instance`` field count as the dev
    instance named by ``provenance.data_hash``."""
    if res.instance is not None:
        return res.instance
    data_hash = res.provenance.data_hash
    # built unvalidated: an old provenance hash may be shorter than an instance's
    return Instance.model_construct(kind="dev", data_hash=data_hash, id=f"dev-{data_hash[:12]}", replicate=None)


def group_of(res: Result) -> str:
    """A result's board group; for results older than the ``group`` field, derived from
    ``reference`` and ``access`` by :func:`mmh_bench.api.detector.detector_group` itself."""
    if res.group:
        return res.group
    stub = SimpleNamespace(reference=res.reference, group="", access=Access.parse(res.access))
    return detector_group(stub)  # type: ignore[arg-type]


def read_result(path: str | Path, *, tasks: TaskCatalog | None = None,
                root: str | Path | None = None) -> Result:
    """Read and validate one result file: the one way a detection or LID result is read (the
    evaluator's currency check reads through it too), returned as its typed model.

    ``tasks``: when given, the task must be in it with the current spec's version and hash.
    ``root``: when given, the file must sit at its canonical place under ``root``.
    """
    path = Path(path)
    try:
        res = validate_result(read_json(path))
        if tasks is not None:
            check_task(res.task, res.task_version, res.task_hash, tasks, family=res.task_family,
                       track=res.track)
    except SchemaError as exc:
        raise ResultError(f"{path}: {exc}", path, exc.field) from None
    if root is not None:
        want = canonical_relpath(res.task, res.task_version, res.detector)
        inst = canonical_relpath(res.task, res.task_version, res.detector, instance_of(res).id)
        try:
            rel = path.relative_to(root)
        except ValueError:
            rel = None
        if rel not in (want, inst):
            raise ResultError(f"{path}: field 'detector': a result for task {res.task!r} v{res.task_version}, "
                              f"detector {res.detector!r} belongs at {str(want)!r} (or {str(inst)!r}) "
                              f"under the store, "
                              f"not {str(rel)!r} (a copy, a duplicate or a misnamed file)", path, "detector")
    return res


def iter_json_files(root: Path) -> Iterable[Path]:
    """Every ``*.json`` below ``root`` in sorted order, without following directory links."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".json"):
                yield Path(dirpath) / name


def scan_results(results_dir: str | Path, *, tasks: TaskCatalog | None = None) -> ScanReport:
    """Validate every result under ``results_dir``; ``tasks`` defaults to :func:`known_tasks`."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ResultError(f"results folder {str(root)!r} does not exist or is not a folder", root)
    catalog = known_tasks() if tasks is None else tasks
    report = ScanReport()
    for path in iter_json_files(root):
        try:
            report.accepted.append((path, read_result(path, tasks=catalog, root=root)))
        except ResultError as exc:
            report.rejected.append(Rejected(path, str(exc).removeprefix(f"{path}: "), exc.field))
    return report
