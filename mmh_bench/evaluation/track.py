"""One protocol for every track: what a track declares once, and the pair lifecycle they all share.

A track (detection on memorization tasks, LID estimation, mitigation) declares its result model,
which entries a task can serve (:meth:`Track.why_not`), the name a result goes by, what makes an
old result current for it, and how one (instance, entry) pair is scored. Everything else is
written once here and used by every track: the result's path, its header (what was evaluated,
on what, where), the currency check, failure isolation (an entry that raises fails alone, as a
``status: failed`` result), the write (atomic, the only write of that file) and the report. The
runner (:mod:`.runner`), the parallel engine (:mod:`.engine`) and the conformance checks
(:mod:`.conformance`) take a track and nothing track-specific.
"""
from __future__ import annotations

import json
import logging
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

from tqdm.auto import tqdm

from mmh_bench.common.paths import canonical_relpath
from mmh_bench.common.provenance import provenance
from mmh_bench.files import write_json
from mmh_bench.task.spec import TaskSpec, canonical_json
from .sealed import WorkerFailure, isolation_mode
from .sealed.standin import StandIn

log = logging.getLogger(__name__)

#: ``isolation=...``: "auto" seals every entry but the shipped baselines
ISOLATION_CHOICES = ("auto", "sealed", "in-process")
SHIPPED_PACKAGE = "mmh_bench_baselines"
#: longest error message a result keeps
MAX_ERROR = 2000


@dataclass
class GridReport:
    """What a run did: results written (ok or failed), results skipped as current, and the
    (task, entry, reason) pairs the tasks could not serve."""

    ran: list[Path] = field(default_factory=list)
    skipped_current: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    not_applicable: list[tuple[str, str, str]] = field(default_factory=list)

    def sort(self) -> "GridReport":
        for paths in (self.ran, self.skipped_current, self.failed):
            paths.sort()
        return self


def is_shipped(entry: Any) -> bool:
    """A baseline (detector or mitigator) shipped with mmh-bench: trusted code, so it may run in
    the evaluator's process."""
    return not isinstance(entry, StandIn) and type(entry).__module__.split(".")[0] == SHIPPED_PACKAGE


def resolve_isolation(isolation: str, entry: Any) -> str:
    """``"sealed"`` or ``"in-process"`` for ``entry`` under the requested mode."""
    if isolation not in ISOLATION_CHOICES:
        raise ValueError(f"isolation {isolation!r} is not one of {', '.join(ISOLATION_CHOICES)}")
    if isinstance(entry, StandIn):  # a stand-in holds no code to run here
        return "sealed"
    if isolation == "auto":  # in-process is faster for trusted code (benchmarks/sealed_cost.py)
        return "in-process" if is_shipped(entry) else "sealed"
    return isolation


class Track(ABC):
    """A track's declarations: a subclass sets ``kind`` and implements the abstract methods (what
    applies, how a pair is named, scored and typed); the defaults below them may be overridden; the
    shared part (paths, currency, failure isolation, writing) is the same for every track.
    Instances carry a run's options of the track (e.g. how many generations a mitigation run
    regenerates), so a track object is what a run passes around."""

    #: what its entries are, as the registry and the result's fields name them ("detector", "mitigator")
    kind: ClassVar[str] = ""

    # -- declared by each track --------------------------------------------------------------
    @abstractmethod
    def why_not(self, entry: Any, inst: Any) -> str | None:
        """Why the built instance cannot serve ``entry``, else None."""

    @abstractmethod
    def ruled_out(self, entry: Any, spec: TaskSpec) -> str | None:
        """Why the spec alone rules ``entry`` out (no build needed to know), else None."""

    @abstractmethod
    def result_name(self, entry: Any) -> str:
        """The file name (without ``.json``) of ``entry``'s result on an instance."""

    @abstractmethod
    def header(self, inst: Any, entry: Any) -> dict[str, Any]:
        """The track's own fields of a result document, before scoring."""

    @abstractmethod
    def score(self, inst: Any, entry: Any, doc: dict[str, Any], *, seed: int, batch_size: int, isolation: str,
              timeout: float | None, threads: int, hide: Iterable[str | Path | None], progress: bool) -> None:
        """Run ``entry`` on ``inst`` and fill ``doc``'s outcome (metrics, cost, ...). Anything the
        entry breaks raises; :meth:`evaluate` records it as the pair's failure."""

    @abstractmethod
    def run_here(self, entry: Any, inst: Any, *, seed: int, batch_size: int,
                 progress: bool = False) -> tuple[Any, dict[str, Any]]:
        """The entry's raw output on ``inst`` (scores, or generated samples) and its cost, computed
        in this process by the loop a sealed worker runs too."""

    @abstractmethod
    def validate(self, doc: dict[str, Any]) -> Any:
        """The document as the track's typed result model (raises naming the bad field)."""

    @abstractmethod
    def read(self, path: Path) -> Any:
        """A stored result of this track, typed (raises on anything unreadable or invalid)."""

    def still_current(self, old: Any, inst: Any, entry: Any) -> bool:
        """Track-specific conditions on a stored ok result beyond :meth:`is_current`'s."""
        return True

    @abstractmethod
    def headline(self, res: Any) -> str:
        """One progress line's outcome."""

    def settings(self, entry: Any) -> list[Any]:
        """The entries a given one stands for in a run (a mitigator: each setting of its sweep)."""
        return [entry]

    def select(self, insts: list[Any]) -> list[Any]:
        """Which of a task's instances a run of this track evaluates (default: all)."""
        return insts

    def runs_here(self, inst: Any) -> bool:
        """Whether a pair on ``inst`` must run in the driver (not on a cluster worker)."""
        return False

    # -- shared by every track -----------------------------------------------------------------
    def result_path(self, results_dir: str | Path, inst: Any, entry: Any) -> Path:
        """``<results>/<task>/v<version>/<instance id>/<result name>.json`` (``entry``: the entry,
        or its result name): one folder per instance, so results of different instances never
        overwrite or pass for one another."""
        name = entry if isinstance(entry, str) else self.result_name(entry)
        return Path(results_dir) / canonical_relpath(inst.spec.name, inst.spec.version, name,
                                                     inst.instance_info()["id"])

    def is_current(self, path: Path, inst: Any, entry: Any) -> bool:
        """An ok result for this very task spec, instance (data hash), entry version and parameters."""
        try:
            old = self.read(path)
        except Exception:  # unreadable, invalid or missing: not current, so it is measured again
            return False
        version, params = getattr(old, f"{self.kind}_version"), getattr(old, f"{self.kind}_params")
        return (old.status == "ok" and old.task_hash == inst.spec.hash and old.instance is not None
                and old.instance.data_hash == inst.data_hash and version == entry.version
                and canonical_json(params) == canonical_json(entry.params())
                and self.still_current(old, inst, entry))

    def document(self, inst: Any, entry: Any, *, seed: int, isolation: str) -> dict[str, Any]:
        """A result document before scoring: what was evaluated, on what, where (status ok so far)."""
        spec = inst.spec
        return {"task": spec.name, "task_version": spec.version, "task_hash": spec.hash, "task_family": spec.family,
                "instance": inst.instance_info(), "access": entry.access.label,
                "isolation": isolation_mode() if resolve_isolation(isolation, entry) == "sealed" else "in-process",
                "status": "ok", "error": None, "metrics": None, "cost": None,
                "provenance": provenance(seed=seed, spec_hash=spec.hash, data_hash=inst.data_hash),
                **self.header(inst, entry)}

    def evaluate(self, inst: Any, entry: Any, *, seed: int = 0, batch_size: int = 512, isolation: str = "auto",
                 timeout: float | None = None, threads: int = 1, hide: Iterable[str | Path | None] = (),
                 progress: bool = False) -> Any:
        """One pair's typed result; any failure of the entry becomes ``status: failed``."""
        doc = self.document(inst, entry, seed=seed, isolation=isolation)
        try:
            self.score(inst, entry, doc, seed=seed, batch_size=batch_size, isolation=isolation, timeout=timeout,
                       threads=threads, hide=hide, progress=progress)
        except Exception as exc:  # a broken entry must not stop the grid
            log.debug("%s %s failed on %s:\n%s", self.kind, entry.name, inst.spec.name, traceback.format_exc())
            name = "" if isinstance(exc, WorkerFailure) else f"{type(exc).__name__}: "
            doc = {**self.document(inst, entry, seed=seed, isolation=isolation),
                   "isolation": doc["isolation"], "status": "failed", "error": f"{name}{exc}"[:MAX_ERROR]}
        return self.validate(json.loads(json.dumps(doc, allow_nan=False)))

    def failed(self, inst: Any, entry: Any, error: str, *, seed: int = 0, isolation: str = "auto") -> Any:
        """The result of a pair that ended outside the entry (its worker died every time it ran)."""
        return self.validate({**self.document(inst, entry, seed=seed, isolation=isolation),
                              "status": "failed", "error": error[:MAX_ERROR]})

    def record(self, report: GridReport, path: Path, res: Any, *, progress: bool) -> None:
        """Write one pair's result (atomically; the only write of that file) and count it."""
        write_json(path, res.model_dump(mode="json", by_alias=True))
        (report.failed if res.status == "failed" else report.ran).append(path)
        if progress:
            outcome = self.headline(res) if res.status == "ok" else res.error
            tqdm.write(f"  {res.task:<28} {path.stem:<28} {res.status:<7} {outcome}")

    def pairs(self, inst: Any, candidates: Iterable[Any], results_dir: str | Path, report: GridReport, *,
              force: bool, why_not: Any = None) -> list[tuple[Any, Path]]:
        """The candidates to evaluate on ``inst`` and their result paths; current results and
        entries the instance cannot serve go to ``report`` instead. ``why_not``: the judgement
        made elsewhere (a cluster worker's), by result name; default :meth:`why_not` here."""
        out = []
        for entry in candidates:
            name = self.result_name(entry)
            path = self.result_path(results_dir, inst, entry)
            if not force and self.is_current(path, inst, entry):
                report.skipped_current.append(path)
                continue
            why = why_not[name] if why_not is not None else self.why_not(entry, inst)
            if why:
                if (inst.spec.name, name, why) not in report.not_applicable:  # once per task
                    report.not_applicable.append((inst.spec.name, name, why))
                continue
            out.append((entry, path))
        return out


__all__ = ["GridReport", "ISOLATION_CHOICES", "SHIPPED_PACKAGE", "Track", "is_shipped", "resolve_isolation"]
