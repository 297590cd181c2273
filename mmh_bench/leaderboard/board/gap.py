"""Public beside held-out, per task: each detector's headline metric on the published (public) test
instances next to the same metric on fresh (held-out) instances that were never published, and a
flag where the public score exceeds the held-out one by more than the replicates' spread explains
(:func:`mmh_bench.leaderboard.heldout.compare`). A detector that read the published answers wins
only on the public instances; the flag is how a reader sees it."""
from __future__ import annotations

from dataclasses import dataclass

from mmh_bench.leaderboard.heldout import compare, mean_sd
from mmh_bench.leaderboard.schema import HeldOutGap

from .columns import rank_column
from .model import Board, Row, TaskFacts

#: instance kinds: published test instances (public answers) and fresh ones (held out)
PUBLIC, HELDOUT = "test", "fresh"
GAP_NOTE = ("Public: mean over the published test instances, whose samples and labels anyone can read, "
            "so a detector can have memorized them. Held out: mean ± standard deviation over fresh "
            "instances built from a secret drawn for the evaluation and never published. A detector that "
            "generalizes scores alike on both, within the replicates' spread; FLAGGED: the public score "
            "exceeds the held-out one beyond it (by more than 2 standard errors of the difference + 0.02).")


@dataclass
class GapRow:
    detector: str
    group: str
    first: Row  # a row of the detector (source, access)
    cmp: HeldOutGap


def gap_rows(board: Board, t: TaskFacts) -> list[GapRow]:
    """Per detector with a held-out result on the task: public and held-out values and the flag,
    ordered by held-out mean (best first) within the board's groups."""
    col = rank_column(t.track)
    by_kind = {i.data_hash: i.kind for i in t.instances.values()}
    values: dict[str, dict[str, list[float | None]]] = {}
    firsts: dict[str, Row] = {}
    for r in board.rows_for(t, ("measured", "submission")):
        kind = by_kind.get(r.instance)
        if kind not in (PUBLIC, HELDOUT):
            continue
        firsts.setdefault(r.detector, r)
        v = col.value(r) if r.status == "ok" else None
        values.setdefault(r.detector, {PUBLIC: [], HELDOUT: []})[kind].append(
            float(v) if isinstance(v, (int, float)) else None)
    higher = col.higher_is_better
    out = [GapRow(d, firsts[d].group, firsts[d], compare(v[PUBLIC], v[HELDOUT], higher_is_better=higher))
           for d, v in values.items() if v[HELDOUT]]
    return sorted(out, key=lambda g: (g.group, g.cmp.heldout_mean is None,
                                      -(g.cmp.heldout_mean or 0) if higher else (g.cmp.heldout_mean or 0),
                                      g.detector))


def gap_cells(g: GapRow) -> list[str]:
    """Plain-text cells: public, held out, gap, flag."""
    c = g.cmp
    return [mean_sd(c.public), mean_sd(c.heldout), "–" if c.gap is None else f"{c.gap:+.3f}",
            "FLAGGED" if c.flagged else "" if c.judged else "not judged (one replicate each)"]


def gap_heads(t: TaskFacts) -> list[str]:
    name = rank_column(t.track).name
    return [f"public {name} (n)", f"held-out {name} (n)", "gap (+: better on public)", "flag"]
