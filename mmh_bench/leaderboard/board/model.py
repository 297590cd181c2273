"""The board's content: rows, task and instance facts, and the :class:`Board` that holds them.

Every renderer reads these records, never the files, so what a row shows cannot depend on which
renderer shows it; a row's metrics are the typed models the files validate into (read by field).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Union

from mmh_bench.api.access import Access
from mmh_bench.common.provenance import hardware_label
from mmh_bench.leaderboard.schema import (Cost, LIDMetrics, MemorizationMetrics, PublishedMetrics, ReportedMetrics,
                                          Roc, TaskStats)
from mmh_bench.leaderboard.store import Rejected, Result, TaskCatalog, group_of, instance_of
from mmh_bench.task.families import all_families
from mmh_bench.task.subtypes import SUBTYPE_NAMES

#: Table order and titles: one table per task family (the "track" a reader picks), as the family
#: records give them (mmh_bench.task.families: board position, then name)
FAMILIES = {name: record.title for name, record in all_families().items()}
#: the page's access filters: one box per access level
ACCESS_FLAGS = tuple(a.label for a in Access)
SUBTYPES = SUBTYPE_NAMES
KIND_LABEL = {"measured": "measured", "submission": "submission",
              "reported": "reported, not re-measured"}
#: how an instance kind is named to readers: published test instances are public (anyone can read
#: their labels), fresh ones held out (never published)
INSTANCE_KIND_LABEL = {"test": "test, public", "fresh": "fresh, held out"}


def kind_label(kind: str) -> str:
    """An instance kind as the board names it (``test, public``; ``fresh, held out``; ``dev``)."""
    return INSTANCE_KIND_LABEL.get(kind, kind)

# -- the board's content ------------------------------------------------------------------------
#: Display order of detector groups; a ranking never crosses a group. ``chance`` (the random
#: floor) is its own group, last in each table; ``shortcut`` rows render apart with GROUP_NOTE.
GROUP_ORDER = ("reference", "generation-time", "model-side", "sample-side", "training-set oracle", "shortcut",
               "chance")
GROUP_NOTE = ("Shortcut baselines exploit what the public spec says about a dev instance (for example "
              "where its duplicates are placed); they show what a test instance has to hide, and "
              "are ranked only among themselves.")
#: below this many positives of a subtype the board prints the count, not an AUROC
MIN_SUBTYPE_POS = 20


@dataclass(frozen=True)
class ReplicateMean:
    """An overview stand-in row's number: a detector's mean over a task's replicates in the track's
    rank column, under that column's key (so the column reads it as it reads a result's metrics)."""

    auroc: float | None = None  # memorization
    mae: float | None = None  # LID


#: what a row's ``metrics`` holds, by its kind: a measured or submitted result's own metrics model
#: (memorization or LID track), a reported row's published numbers (a store file's
#: :class:`ReportedMetrics`, a shipped table's :class:`PublishedMetrics`), or an overview stand-in's
#: :class:`ReplicateMean`; None where the row failed
RowMetrics = Union[MemorizationMetrics, LIDMetrics, ReportedMetrics, PublishedMetrics, ReplicateMean]


@dataclass
class Row:
    """One line of a table, whatever file it came from."""

    kind: str  # "measured" | "submission" | "reported"
    task: str
    version: str
    family: str
    track: str
    detector: str
    access: str | None
    reference: bool = False
    group: str = ""
    instance: str = ""  # the instance's data hash ("" for reported rows: not measured on one)
    status: str = "ok"
    error: str | None = None
    metrics: RowMetrics | None = None
    #: the detector's parameters as the result records them (its defaults included), so a published
    #: protocol is matched on what ran rather than on how the result is named
    params: dict[str, Any] = field(default_factory=dict)
    cost: Cost | None = None
    roc: Roc | None = None
    hardware: str = ""
    submission: str = ""
    authors: list[str] = field(default_factory=list)
    url: str = ""
    verified: bool = False
    citation: str = ""
    notes: str = ""
    model: str = ""
    detector_note: str = ""
    # reported rows: the method as published, its setting, negatives and TPR rule (schema.TPR_RULES)
    method: str = ""
    setting: str = ""
    negatives: str = ""
    tpr_rule: str = ""

    @property
    def flags(self) -> list[str]:
        return [] if self.access is None else self.access.split("+")

    @property
    def auroc(self) -> float | None:
        """The AUROC of a memorization-track row (measured, reported or a replicate mean); None on
        the LID track and where the row failed."""
        m = self.metrics
        return None if m is None or isinstance(m, LIDMetrics) else finite_number(m.auroc)


@dataclass
class InstanceFacts:
    """One built instance of a task (its data hash); its own sizes and task-level statistics."""

    id: str
    kind: str
    data_hash: str
    n_samples: int | None = None
    n_memorized: int | None = None
    stats: TaskStats = field(default_factory=TaskStats)  # the results' task_stats (C_T, null copy rate)
    replicate: int | None = None  # index among the task's instances of this kind (schema.Instance)

    def fact_parts(self, with_id: bool = True) -> list[str]:
        parts = []
        if self.n_samples is not None:
            parts.append(f"{self.n_samples} samples")
        if self.n_memorized is not None:
            parts.append(f"{self.n_memorized} memorized")
        ct = finite_number(self.stats.data_copying_ct)
        if ct is not None:
            parts.append(f"C_T {ct:+.2f} (held-out {self.stats.n_heldout}, "
                         f"{self.stats.ct_cells_used} cells; < 0: samples closer to the "
                         "training set than fresh data)")
        null = finite_number(self.stats.null_copy_rate)
        if null is not None:
            parts.append(f"null copy rate {null:.1%}")
        return parts + ([f"instance {self.id} ({kind_label(self.kind)})"] if with_id else [])


@dataclass
class TaskFacts:
    name: str
    version: str
    family: str
    track: str
    hash: str = ""
    description: str = ""
    instances: dict[str, InstanceFacts] = field(default_factory=dict)  # data hash -> facts
    #: the spec's sampling steps ([sampling] steps), where it has a sampler: what "the first k
    #: steps" of a published protocol covers on this task
    sampler_steps: int | None = None

    def fact_parts(self) -> list[str]:
        """The task's one-line facts as plain text (callers escape for Markdown or HTML)."""
        return [f"family {self.family}"] + ([f"spec hash {self.hash}"] if self.hash else [])


@dataclass
class Board:
    rows: list[Row] = field(default_factory=list)
    tasks: dict[tuple[str, str], TaskFacts] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    #: (task, version, instance data hash) -> {"roc": relative path, "pareto": relative path}
    plots: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)

    def tables(self) -> list[tuple[str, str, list[TaskFacts]]]:
        """(family, track, tasks) in display order; one section per family and track."""
        groups: dict[tuple[str, str], list[TaskFacts]] = defaultdict(list)
        for key in sorted(self.tasks):
            t = self.tasks[key]
            groups[(t.family, t.track)].append(t)
        order = list(FAMILIES)
        return [(fam, tr, ts) for (fam, tr), ts in
                sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order
                                                       else len(order), kv[0][0], kv[0][1]))]

    def rows_for(self, task: TaskFacts, kinds: Iterable[str], instance: str | None = None) -> list[Row]:
        """The task's rows of these kinds; with ``instance`` (a data hash), only that instance's."""
        kinds = set(kinds)
        return [r for r in self.rows if (r.task, r.version) == (task.name, task.version)
                and r.kind in kinds and (instance is None or r.instance == instance)]

    def instances(self, task: TaskFacts) -> list[InstanceFacts]:
        """The task's instances in display order: held out (fresh, never published) first, then
        test (published), then the rest; within a kind by replicate index (where the results give
        one), rows measured and id. The first is the one the overview uses (or, with replicates of
        its kind, their mean): official numbers come from instances nobody could have read."""
        count = defaultdict(int)
        for r in self.rows_for(task, ("measured",)):
            count[r.instance] += 1
        order = {"fresh": 0, "test": 1}
        return sorted(task.instances.values(), key=lambda i: (order.get(i.kind, 2), i.kind, i.replicate is None,
                                                              i.replicate or 0, -count[i.data_hash], i.id))

    def replicates(self, task: TaskFacts) -> dict[str, list[InstanceFacts]]:
        """kind -> the task's instances of that kind, where it has two or more (replicates: one
        spec, different seeds), in display order."""
        by: dict[str, list[InstanceFacts]] = defaultdict(list)
        for inst in self.instances(task):
            by[inst.kind].append(inst)
        return {k: v for k, v in by.items() if len(v) >= 2}

    def hardware(self) -> list[str]:
        return sorted({r.hardware for r in self.rows if r.hardware})


def section_title(family: str, track: str) -> str:
    """The heading of a family's section (a family's LID-track tasks get their own)."""
    return FAMILIES.get(family, family) + (" (LID track)" if track == "lid" and family != "lid" else "")


def sampler_steps(spec: Any) -> int | None:
    """A spec's ``[sampling] steps`` (None without a spec or a sampler)."""
    steps = spec.model.sampling.steps if spec is not None and "steps" in spec.model.written("sampling") else None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def finite_number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _row_from_result(res: Result, kind: str) -> Row:
    hw = res.provenance.hardware
    return Row(kind=kind, task=res.task, version=res.task_version, family=res.task_family, track=res.track,
               detector=res.detector, access=res.access, reference=res.reference, group=group_of(res),
               instance=instance_of(res).data_hash, status=res.status, error=res.error,
               metrics=res.metrics, params=dict(res.detector_params), cost=res.cost,
               roc=res.roc, hardware=hardware_label(hw) if hw else "", detector_note=res.detector_note or "")


def board_from_results(results: list[Result], tasks: TaskCatalog | None = None) -> Board:
    """A board of measured rows only, from typed results (:func:`mmh_bench.leaderboard.store.read_result`)."""
    board = Board()
    for res in results:
        add_result(board, res, "measured", tasks or {})
    return board


def add_result(board: Board, res: Result, kind: str, tasks: TaskCatalog) -> Row:
    row = _row_from_result(res, kind)
    board.rows.append(row)
    key = (row.task, row.version)
    if key not in board.tasks:
        spec = tasks.get(row.task)
        board.tasks[key] = TaskFacts(row.task, row.version, row.family, row.track, res.task_hash,
                                     description=spec.description if spec is not None else "",
                                     sampler_steps=sampler_steps(spec))
    known = board.tasks[key].instances
    if row.instance not in known or (known[row.instance].n_samples is None and res.n_samples):
        inst = instance_of(res)
        known[row.instance] = InstanceFacts(inst.id, inst.kind, inst.data_hash, res.n_samples, res.n_memorized,
                                            res.task_stats or TaskStats(), inst.replicate)
    return row
