"""Replicated instances: a task measured on several instances of one kind (test instances built
from different secret seeds, or several dev seeds). One instance's bootstrap interval says how
much its number depends on the samples drawn; replicates say how much it depends on the whole
build (data placement, training, sampling). So the board gives, per detector, the mean and
standard deviation over the replicates, ranks the task by the mean, and reports how stable the
ranking is (Kendall's tau between the replicates' orderings, averaged over pairs).

Replicates are the instances of one (task, version, kind); rows of different tasks, versions or
kinds never mix. A detector without a result on every replicate shows how many it has and is
not ranked (its mean would rest on other draws than its neighbours')."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from itertools import combinations

from scipy.stats import kendalltau

from .cells import group_position
from .columns import REPLICATES, Column, columns, rank_column, rank_key
from .model import Board, InstanceFacts, ReplicateMean, Row, TaskFacts


def _value(r: Row, col: Column) -> float | str | None:
    """A row's number in ``col`` ("n/r" where the negatives cannot resolve a TPR target)."""
    if r.status != "ok":
        return None
    return "n/r" if col.hidden is not None and col.hidden(r.metrics) else col.value(r)


def spread_text(values: list[float | str | None], digits: int = 3) -> tuple[str, float | None]:
    """(text, sort value) of mean ± standard deviation (n - 1) over the replicates that have a value."""
    if "n/r" in values:
        return "n/r", None
    nums = [v for v in values if isinstance(v, float)]
    if not nums:
        return "–", None
    mean = statistics.fmean(nums)
    return (f"{mean:.{digits}f} ± {statistics.stdev(nums):.{digits}f}" if len(nums) > 1
            else f"{mean:.{digits}f}"), mean


@dataclass
class ReplicateRow:
    """One detector across the replicates: its rows (None where it has no result) and spreads."""

    detector: str
    group: str
    rows: list[Row | None]
    track: str

    @property
    def first(self) -> Row:
        return next(r for r in self.rows if r is not None)

    @property
    def n_ok(self) -> int:
        return sum(1 for r in self.rows if r is not None and r.status == "ok")

    @property
    def complete(self) -> bool:
        return self.n_ok == len(self.rows)

    def values(self, col: Column) -> list[float | str | None]:
        return [None if r is None else _value(r, col) for r in self.rows]

    def mean(self, col: Column) -> float | None:
        return spread_text(self.values(col))[1]

    def cells(self) -> list[tuple[str, float | None]]:
        """(text, sort value): replicates with a result, then each column's mean ± sd."""
        return ([(f"{self.n_ok} of {len(self.rows)}", float(self.n_ok))]
                + [spread_text(self.values(c), c.digits) for c in columns(self.track, REPLICATES)])


@dataclass
class ReplicateSummary:
    """A task's replicates of one kind, its detectors ranked by the replicate mean within groups."""

    kind: str
    instances: list[InstanceFacts]
    track: str
    groups: list[tuple[str, list[tuple[int | None, ReplicateRow]]]]
    taus: list[float]  # Kendall's tau of each pair of replicates with a defined tau
    n_pairs: int
    n_tau: int  # detectors the taus are computed over

    @property
    def directions(self) -> list[tuple[str, bool]]:
        """(label, higher is better) of the numeric columns: replicates with a result, then the
        mean ± sd of each column of the replicate view."""
        return [("replicates", True)] + [(f"{c.name} mean ± sd", c.higher_is_better)
                                         for c in columns(self.track, REPLICATES)]

    @property
    def heads(self) -> list[str]:
        return [label for label, _ in self.directions]

    def note(self) -> str:
        """What the summary table shows, and its rank stability, as plain text."""
        label = rank_column(self.track).name
        n = len(self.instances)
        stable = (f"mean {statistics.fmean(self.taus):.2f} over {len(self.taus)} of {self.n_pairs} pairs "
                  f"(lowest {min(self.taus):.2f})" if self.taus else "not defined (fewer than two detectors "
                  "ranked on every replicate, or constant values)")
        return (f"Mean ± standard deviation (n - 1) over the {n} {self.kind} instances "
                f"({', '.join(i.id for i in self.instances)}): one spec, built with different seeds. Ranked "
                f"within each group by the mean {label}; a detector ranks only with a result on every "
                f"replicate (the replicates column says how many it has). Rank stability, Kendall's tau "
                f"between the replicates' {label} orderings of the {self.n_tau} detectors with a result on "
                f"every replicate (shortcuts apart): {stable}. Each instance's own table, with its "
                "bootstrap intervals, follows.")


def summarize(board: Board, t: TaskFacts, insts: list[InstanceFacts], kinds: tuple[str, ...] = ("measured", "submission")
              ) -> ReplicateSummary:
    """The summary of ``insts`` (replicates of one kind of task ``t``) over rows of ``kinds``."""
    per = [{r.detector: r for r in board.rows_for(t, kinds, inst.data_hash)} for inst in insts]
    names = sorted({d for rows in per for d in rows})
    reps = [ReplicateRow(d, next(rows[d] for rows in per if d in rows).group, [rows.get(d) for rows in per],
                         t.track) for d in names]
    col, sort = rank_column(t.track), rank_key(t.track)
    by: dict[str, list[ReplicateRow]] = {}
    for rep in reps:
        by.setdefault(rep.group, []).append(rep)
    groups = []
    for g in sorted(by, key=lambda g: (group_position(g), g)):
        ranked = sorted((r for r in by[g] if r.complete and r.mean(col) is not None),
                        key=lambda r: (sort(r.mean(col)), r.detector))
        done = {id(r) for r in ranked}
        rest = sorted((r for r in by[g] if id(r) not in done), key=lambda r: r.detector)
        groups.append((g, [(i, r) for i, r in enumerate(ranked, 1)] + [(None, r) for r in rest]))
    stable = [r for r in reps if r.group != "shortcut" and r.complete
              and all(isinstance(v, float) for v in r.values(col))]
    taus = []
    for a, b in combinations(range(len(insts)), 2):
        if len(stable) >= 2:
            tau = kendalltau([r.values(col)[a] for r in stable], [r.values(col)[b] for r in stable]).statistic
            if tau == tau:  # NaN when one ordering is constant
                taus.append(float(tau))
    return ReplicateSummary(insts[0].kind, insts, t.track, groups, taus,
                            len(insts) * (len(insts) - 1) // 2, len(stable))


def overview_rows(board: Board, t: TaskFacts, insts: list[InstanceFacts]) -> list[Row]:
    """Stand-in rows for the overview: each measured detector's replicate mean, status "ok" only
    where it has every replicate ("partial" otherwise, with how many in ``error``)."""
    out = []
    col = rank_column(t.track)  # its key names the ReplicateMean field the column reads
    for _, ranked in summarize(board, t, insts, ("measured",)).groups:
        for _, rep in ranked:
            first = rep.first
            mean = rep.mean(col)
            ok = rep.complete and mean is not None
            out.append(Row(kind="measured", task=t.name, version=t.version, family=t.family, track=t.track,
                           detector=rep.detector, access=first.access, group=rep.group,
                           status="ok" if ok else "partial", error=None if ok else f"{rep.n_ok} of {len(insts)}",
                           metrics=ReplicateMean(**{col.key: mean}) if ok else None))
    return out
