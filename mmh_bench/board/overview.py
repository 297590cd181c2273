"""The overview matrices (detector x task), ordered by mean within-group rank."""
from __future__ import annotations

from collections import defaultdict

from scipy.stats import rankdata

from .cells import _fmt, _group_pos
from .model import GROUP_NOTE, Board, Row, TaskFacts, _num

def _mean_ranks(track: str, tasks: list[TaskFacts], rows: dict[tuple[str, str], list[Row]]
                ) -> dict[str, tuple[float, int]]:
    """detector -> (mean within-group rank, tasks ranked): on each task, the group's members with a
    value are ranked (1 = best, ties share the average rank); the mean runs over the tasks the
    detector has a rank on, so a detector's own task set never changes another's scale."""
    key, sign = ("mae", 1.0) if track == "lid" else ("auroc", -1.0)
    ranks: dict[str, list[float]] = defaultdict(list)
    for t in tasks:
        by: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for r in rows[(t.name, t.version)]:
            v = _num(r.metrics.get(key)) if r.status == "ok" else None
            if v is not None:
                by[r.group].append((r.detector, sign * v))
        for members in by.values():
            for (d, _), rk in zip(members, rankdata([v for _, v in members])):
                ranks[d].append(float(rk))
    return {d: (sum(v) / len(v), len(v)) for d, v in ranks.items()}


def overview(board: Board, track: str, *, shortcut: bool = False) -> tuple[list[str], list[list[str]]]:
    """One matrix per track, detector x task: AUROC (memorization) or MAE (LID) of the measured rows
    on each task's first instance (:meth:`Board.instances`: the test instance when there is one).

    Rows are grouped (:data:`GROUP_ORDER`) and ordered within a group by mean within-group rank
    (:func:`_mean_ranks`), with the number of tasks that mean covers; ``shortcut`` selects the
    shortcut group alone (rendered apart). The last rows give the task's C_T (memorization) and
    the instance each column uses."""
    tasks = [t for _, tr, ts in board.tables() if tr == track for t in ts if board.rows_for(t, ("measured",))]
    chosen = {(t.name, t.version): board.instances(t)[0] for t in tasks}
    rows = {k: [r for r in board.rows_for(board.tasks[k], ("measured",), chosen[k].data_hash)
                if (r.group == "shortcut") == shortcut] for k in chosen}
    tasks = [t for t in tasks if rows[(t.name, t.version)]]
    if not tasks:
        return _overview_heads(track, []), []
    cells: dict[str, dict[tuple[str, str], str]] = defaultdict(dict)
    group: dict[str, str] = {}
    for t in tasks:
        for r in rows[(t.name, t.version)]:
            group[r.detector] = r.group
            cells[r.detector][(t.name, t.version)] = _fmt(r.metrics.get("mae" if track == "lid" else "auroc")) \
                if r.status == "ok" else "failed"
    mean = _mean_ranks(track, tasks, rows)
    order = sorted(cells, key=lambda d: (_group_pos(group[d]), group[d], d not in mean,
                                         mean.get(d, (0.0, 0))[0], -mean.get(d, (0.0, 0))[1], d))
    out = [[group[d], d] + [cells[d].get((t.name, t.version), "n/a") for t in tasks]
           + ([f"{mean[d][0]:.2f}", f"{mean[d][1]} of {len(tasks)}"] if d in mean else ["–", "0"]) for d in order]
    if track != "lid" and not shortcut:
        out.append(["task", "C_T of the samples"]
                   + [(f"{v:+.2f}" if (v := _num(chosen[(t.name, t.version)].stats.get("data_copying_ct")))
                       is not None else "–") for t in tasks] + ["", ""])
    out.append(["task", "instance"] + [chosen[(t.name, t.version)].id for t in tasks] + ["", ""])
    return _overview_heads(track, tasks), out


def _overview_heads(track: str, tasks: list[TaskFacts]) -> list[str]:
    return (["group", "detector" if track != "lid" else "estimator"] + [t.name for t in tasks]
            + ["mean rank in group", "tasks ranked"])


OVERVIEW_RULE = ("Within each group, detectors are ordered by mean rank: on every task the group's "
                 "members with a value are ranked (1 = best in the group; ties share the average), "
                 "and each detector's ranks are averaged over the tasks it ran, whose number is shown "
                 "(a mean {metric} over different task sets is not shown: it would compare different "
                 "tasks). Each column uses the task's test instance when the store has one, else its "
                 "only instance (with several dev instances, the one with the most rows); the last row "
                 "names it.")
OVERVIEW_NOTE = {
    "memorization": ("AUROC per detector and task (n/a: not applicable, e.g. a conditional detector on "
                     "an unconditional task). " + OVERVIEW_RULE.format(metric="AUROC") + " The C_T row "
                     "is the task's C_T (Meehan et al. 2020): z-score of generated vs held-out "
                     "distances to the training set; negative means the samples sit closer to the "
                     "training set than fresh data."),
    "lid": ("MAE of the LID estimate per estimator and task (lower is better). "
            + OVERVIEW_RULE.format(metric="MAE")),
}
OVERVIEW_TITLE = {"memorization": "Overview: memorization", "lid": "Overview: LID estimation"}


def overviews(board: Board) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, note, headers, rows) of every track's non-empty overview, for both renderers; the
    shortcut group's matrix follows its track's, apart."""
    out = []
    for track in OVERVIEW_TITLE:
        for shortcut in (False, True):
            heads, rows = overview(board, track, shortcut=shortcut)
            if rows:
                title = OVERVIEW_TITLE[track] + (", shortcut baselines" if shortcut else "")
                out.append((title, GROUP_NOTE if shortcut else OVERVIEW_NOTE[track], heads, rows))
    return out


def _multi_instance_line(board: Board, t: TaskFacts) -> str:
    insts = board.instances(t)
    return (f"This task has {len(insts)} instances in the store ({', '.join(i.id for i in insts)}): "
            "they differ in data and model, so their rows are not comparable and are ranked apart, "
            f"never against each other. The overview uses {insts[0].id}.")

