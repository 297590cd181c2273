"""What both renderers print around the columns (:mod:`.columns`): the notes under a table, the
within-group ranking of its rows, and the board's introduction."""
from __future__ import annotations

from collections import defaultdict

from mmh_bench.common.fpr import MIN_EXPECTED_FP
from .columns import Columns, rank_column, rank_key
from .model import GROUP_ORDER, MIN_SUBTYPE_POS, Row


def footnotes(rows: list[Row], track: str) -> list[str]:
    """Plain-text lines under a table: the columns' notes (:meth:`Columns.notes`), then each
    detector's note once."""
    ok = [r for r in rows if r.status == "ok"]
    notes = sorted({(r.detector, r.detector_note) for r in rows if r.detector_note})
    return Columns.of(rows, track).notes(ok) + [f"Note on {d}: {n}" for d, n in notes]


def group_position(group: str) -> int:
    return GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)


def _rank(rows: list[Row], track: str) -> list[Row]:
    """Ok rows best first by the track's rank column (missing values last), then failed rows."""
    col, key = rank_column(track), rank_key(track)
    ok = [r for r in rows if r.status == "ok"]
    ok.sort(key=lambda r: ((v := col.value(r)) is None, key(v), r.detector))
    return ok + sorted((r for r in rows if r.status != "ok"), key=lambda r: r.detector)


def ranked_groups(rows: list[Row], track: str) -> list[tuple[str, list[tuple[int | None, Row]]]]:
    """Rows split by group (display order), each ranked within its group; failed rows unranked, last."""
    by: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by[r.group].append(r)
    return [(g, [(i if r.status == "ok" else None, r) for i, r in enumerate(_rank(by[g], track), 1)])
            for g in sorted(by, key=lambda g: (group_position(g), g))]


INTRO = ("Measured by mmh-bench under one protocol; higher AUROC is better. Rows are ranked per task "
         "instance and within their group: *reference* (restatements of the labelling rule, which "
         "see the training set: they bound the others), *generation-time* (detectors read on the "
         "generation's own trajectory, replayed from its stored initial noise, as the published "
         "Stable Diffusion detectors are), *model-side*, *sample-side*, *training-set "
         "oracle* (detectors that read the training set's neighbours, as the labels do), *shortcut* "
         "(shown apart) and *chance* (the random floor). Rows of different instances of a task (a "
         "dev build, a test build) are never ranked together. TPR@x%FPR is the largest TPR whose FPR "
         "does not exceed x%, with a bootstrap 95% interval; it is hidden (n/r) when the negatives "
         f"cannot resolve x% (fewer than {MIN_EXPECTED_FP} expected false positives). A subtype "
         f"with fewer than {MIN_SUBTYPE_POS} positives shows its count (n=k), not an AUROC. NFE "
         "counts network forward passes and JVPs per sample. *closest-rule shift @1%* is what the "
         "closest-point rule (the ROC point whose FPR is nearest 1%, which may exceed it: the rule "
         "in Jeon et al.'s and Ren et al.'s code) would add to the strict TPR@1%FPR beside it. **source** says where a row comes "
         "from: *measured* (the results store), *submission* (run with `mmh-bench submit`; "
         "*verified* once `mmh-bench verify` reproduced every number), or *reported, not "
         "re-measured* (numbers published in papers, under their own protocols, listed separately "
         "for context and never ranked). The interactive page is `index.html`; how to add a "
         "detector: `docs/SUBMITTING.md`.")

