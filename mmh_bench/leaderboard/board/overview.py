"""The overview matrices (detector x task), ordered by mean within-group rank."""
from __future__ import annotations

from collections import defaultdict

from scipy.stats import rankdata

from .cells import group_position
from .columns import rank_column, rank_key
from .model import GROUP_NOTE, Board, InstanceFacts, Row, TaskFacts, finite_number
from .replicates import overview_rows


def _mean_ranks(track: str, tasks: list[TaskFacts], rows: dict[tuple[str, str], list[Row]]
                ) -> dict[str, tuple[float, int]]:
    """detector -> (mean within-group rank, tasks ranked): on each task, the group's members with a
    value are ranked (1 = best, ties share the average rank); the mean runs over the tasks the
    detector has a rank on, so a detector's own task set never changes another's scale."""
    col, sort = rank_column(track), rank_key(track)
    ranks: dict[str, list[float]] = defaultdict(list)
    for t in tasks:
        by: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for r in rows[(t.name, t.version)]:
            v = col.value(r) if r.status == "ok" else None
            if v is not None:
                by[r.group].append((r.detector, sort(v)))
        for members in by.values():
            for (d, _), rk in zip(members, rankdata([v for _, v in members])):
                ranks[d].append(float(rk))
    return {d: (sum(v) / len(v), len(v)) for d, v in ranks.items()}


def overview(board: Board, track: str, *, shortcut: bool = False) -> tuple[list[str], list[list[str]]]:
    """One matrix per track, detector x task: the track's rank column (:func:`.columns.rank_column`:
    AUROC on memorization, MAE on LID) of the measured rows on each task's first instance
    (:meth:`Board.instances`: the test instance when there is one).

    Rows are grouped (:data:`GROUP_ORDER`) and ordered within a group by mean within-group rank
    (:func:`_mean_ranks`), with the number of tasks that mean covers; ``shortcut`` selects the
    shortcut group alone (rendered apart). The last rows give the task's C_T (memorization) and
    the instance each column uses."""
    tasks = [t for _, tr, ts in board.tables() if tr == track for t in ts if board.rows_for(t, ("measured",))]
    chosen = {(t.name, t.version): board.instances(t)[0] for t in tasks}
    reps = {k: board.replicates(board.tasks[k]).get(chosen[k].kind, []) for k in chosen}
    rows = {k: [r for r in (overview_rows(board, board.tasks[k], reps[k]) if reps[k] else
                            board.rows_for(board.tasks[k], ("measured",), chosen[k].data_hash))
                if (r.group == "shortcut") == shortcut] for k in chosen}
    tasks = [t for t in tasks if rows[(t.name, t.version)]]
    if not tasks:
        return _overview_heads(track, []), []
    col = rank_column(track)
    cells: dict[str, dict[tuple[str, str], str]] = defaultdict(dict)
    group: dict[str, str] = {}
    for t in tasks:
        for r in rows[(t.name, t.version)]:
            group[r.detector] = r.group
            cells[r.detector][(t.name, t.version)] = (
                col.text(col.value(r)) if r.status == "ok"
                else f"{r.error} replicates" if r.status == "partial" else "failed")
    mean = _mean_ranks(track, tasks, rows)
    order = sorted(cells, key=lambda d: (group_position(group[d]), group[d], d not in mean,
                                         mean.get(d, (0.0, 0))[0], -mean.get(d, (0.0, 0))[1], d))
    out = [[group[d], d] + [cells[d].get((t.name, t.version), "n/a") for t in tasks]
           + ([f"{mean[d][0]:.2f}", f"{mean[d][1]} of {len(tasks)}"] if d in mean else ["–", "0"]) for d in order]
    keys = [(t.name, t.version) for t in tasks]
    if track != "lid" and not shortcut:
        out.append(["task", "C_T of the samples"]
                   + [(f"{v:+.2f}" if (v := _task_ct(reps[k] or [chosen[k]])) is not None else "–") for k in keys]
                   + ["", ""])
    out.append(["task", "instance"] + [f"mean of {len(reps[k])} {chosen[k].kind}" if reps[k] else chosen[k].id
                                       for k in keys] + ["", ""])
    return _overview_heads(track, tasks), out


def _task_ct(insts: list[InstanceFacts]) -> float | None:
    """The C_T of an instance, or the mean over replicates (None unless every one has it)."""
    cts = [finite_number(i.stats.data_copying_ct) for i in insts]
    return None if any(v is None for v in cts) else sum(cts) / len(cts)  # type: ignore[arg-type]


def uses_replicates(board: Board, track: str) -> bool:
    """Whether any overview column of ``track`` is a replicate mean (its note then says so)."""
    return any(board.replicates(t).get(board.instances(t)[0].kind)
               for _, tr, ts in board.tables() if tr == track for t in ts if board.rows_for(t, ("measured",)))


def _overview_heads(track: str, tasks: list[TaskFacts]) -> list[str]:
    return (["group", "detector" if track != "lid" else "estimator"] + [t.name for t in tasks]
            + ["mean rank in group", "tasks ranked"])


OVERVIEW_RULE = ("Within each group, detectors are ordered by mean rank: on every task the group's "
                 "members with a value are ranked (1 = best in the group; ties share the average), "
                 "and each detector's ranks are averaged over the tasks it ran, whose number is shown "
                 "(a mean {metric} over different task sets is not shown: it would compare different "
                 "tasks). Each column uses the task's held-out (fresh, never published) instances when "
                 "the store has them, else its published test instance, else its only instance (with "
                 "several dev instances, the one with the most rows); the last row names it.")
OVERVIEW_NOTE = {
    "memorization": ("AUROC per detector and task (n/a: not applicable, e.g. a conditional detector on "
                     "an unconditional task). " + OVERVIEW_RULE.format(metric=rank_column("memorization").name) + " The C_T row "
                     "is the task's C_T (Meehan et al. 2020): z-score of generated vs held-out "
                     "distances to the training set; negative means the samples sit closer to the "
                     "training set than fresh data."),
    "lid": ("MAE of the LID estimate per estimator and task (lower is better). "
            + OVERVIEW_RULE.format(metric=rank_column("lid").name)),
}
OVERVIEW_TITLE = {"memorization": "Overview: memorization", "lid": "Overview: LID estimation"}
REPLICATE_RULE = ("Where a task has several instances of that kind (replicates: one spec, different "
                  "seeds), its column is the mean over them and ranks by it; a detector without a "
                  "result on every replicate shows how many it has and is not ranked on that task.")


def overviews(board: Board) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, note, headers, rows) of every track's non-empty overview, for both renderers; the
    shortcut group's matrix follows its track's, apart."""
    out = []
    for track in OVERVIEW_TITLE:
        for shortcut in (False, True):
            heads, rows = overview(board, track, shortcut=shortcut)
            if rows:
                title = OVERVIEW_TITLE[track] + (", shortcut baselines" if shortcut else "")
                note = GROUP_NOTE if shortcut else OVERVIEW_NOTE[track]
                out.append((title, note + (" " + REPLICATE_RULE if uses_replicates(board, track) else ""),
                            heads, rows))
    return out


def multi_instance_line(board: Board, t: TaskFacts) -> str:
    insts = board.instances(t)
    head = f"This task has {len(insts)} instances in the store ({', '.join(i.id for i in insts)})"
    reps = board.replicates(t)
    if not reps:
        return (head + ": they differ in data and model, so their rows are not comparable and are ranked "
                f"apart, never against each other. The overview uses {insts[0].id}.")
    kinds = "; ".join(f"the {len(v)} {k} instances are replicates (one spec, different seeds)"
                      for k, v in reps.items())
    first = reps.get(insts[0].kind)
    uses = f"the mean over the {len(first)} {insts[0].kind} replicates" if first else insts[0].id
    return (f"{head}: {kinds}, summarised by their mean and spread and ranked by the mean. Every "
            "instance's rows also get a table of their own, ranked apart; rows of different kinds are "
            f"never ranked together. The overview uses {uses}.")

