"""Cell text shared by the Markdown and HTML renderers: numbers at their precision, hidden
cells with their reasons, and the within-group ranking of a table's rows."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..metrics import MIN_EXPECTED_FP, tpr_resolvable
from .model import GROUP_ORDER, MIN_SUBTYPE_POS, SUBTYPES, Row, _num

def _fmt(v: Any, nd: int = 3) -> str:
    n = _num(v)
    return "–" if n is None else f"{n:.{nd}f}"


def _interval(ci: Any) -> str:
    """An interval at the point estimate's precision (never "0.999 [1.00, 1.00]")."""
    ok = isinstance(ci, list) and len(ci) == 2 and all(_num(v) is not None for v in ci)
    return f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ok else ""


def _pct(alpha: float) -> str:
    return f"{alpha * 100:g}%"


def _tpr_hidden(m: dict[str, Any], key: str) -> bool:
    """True when the row's negatives cannot resolve the target (the rule in :mod:`mmh_bench.metrics`)."""
    flags = m.get("tpr_at_fpr_resolvable") or {}
    if key in flags:
        return not flags[key]
    n_neg = m.get("n_neg")
    return isinstance(n_neg, int) and not tpr_resolvable(n_neg, float(key))


def _tpr_cell(m: dict[str, Any], key: str) -> tuple[str, float | None]:
    """(text, sort value) of a TPR@FPR cell: point and 95% interval, or "n/r" when not resolvable."""
    if _tpr_hidden(m, key):
        return "n/r", None
    v = _num((m.get("tpr_at_fpr") or {}).get(key))
    return _fmt(v) + (_interval((m.get("tpr_at_fpr_ci") or {}).get(key)) if v is not None else ""), v


def _sub_cell(m: dict[str, Any], name: str) -> tuple[str, float | None]:
    """(text, sort value) of a subtype's AUROC, or its positive count when too few to judge."""
    sub = (m.get("per_subtype") or {}).get(name) or {}
    n = sub.get("n_pos")
    if isinstance(n, int) and n < MIN_SUBTYPE_POS:
        return f"n={n}", None
    v = _num(sub.get("auroc"))
    return _fmt(v), v


def _subtypes(rows: list[Row]) -> list[str]:
    present = {s for r in rows for s in (r.metrics.get("per_subtype") or {})}
    return [s for s in SUBTYPES if s in present]


def _metric_cells(r: Row, track: str, subtypes: list[str]) -> list[tuple[str, float | None]]:
    """(text, sort value) of every metric column of an ok row, for both renderers."""
    m = r.metrics
    if track == "lid":
        return [(_fmt(m.get(k)), _num(m.get(k))) for k in ("mae", "mse", "concordance")]
    return ([(_fmt(m.get("auroc")) + _interval(m.get("auroc_ci")), r.auroc), (_fmt(m.get("ap")), _num(m.get("ap")))]
            + [_tpr_cell(m, k) for k in TPR_SHOWN] + [_sub_cell(m, s) for s in subtypes])


def _footnotes(rows: list[Row], track: str) -> list[str]:
    """Plain-text lines under a table: why cells are hidden, and each detector's note once."""
    ok = [r for r in rows if r.status == "ok"]
    lines = []
    if track != "lid":
        for key in TPR_SHOWN:
            alpha = float(key)
            for n_neg in sorted({r.metrics.get("n_neg") for r in ok if _tpr_hidden(r.metrics, key)}):
                one = (f"; a single false positive is already {1 / n_neg:.2%} FPR" if 0 < n_neg * alpha < 1 else "")
                lines.append(f"n/r: TPR@{_pct(alpha)}FPR not resolvable with {n_neg} negatives "
                             f"({n_neg} x {_pct(alpha)} = {n_neg * alpha:.3g} expected false positives, "
                             f"fewer than {MIN_EXPECTED_FP}{one}); hidden.")
        if any(_sub_cell(r.metrics, s)[0].startswith("n=") for r in ok for s in SUBTYPES):
            lines.append(f"n=k: only k positives of that subtype (fewer than {MIN_SUBTYPE_POS}); "
                         "no AUROC is printed on so few.")
    notes = sorted({(r.detector, r.detector_note) for r in rows if r.detector_note})
    lines += [f"Note on {d}: {n}" for d, n in notes]
    return lines


def _group_pos(group: str) -> int:
    return GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)


def _rank(rows: list[Row], track: str) -> list[Row]:
    ok = [r for r in rows if r.status == "ok"]
    if track == "lid":
        ok.sort(key=lambda r: (_num(r.metrics.get("mae")) is None, _num(r.metrics.get("mae")) or 0.0, r.detector))
    else:
        ok.sort(key=lambda r: (r.auroc is None, -(r.auroc or 0.0), r.detector))
    return ok + sorted((r for r in rows if r.status != "ok"), key=lambda r: r.detector)


def _ranked(rows: list[Row], track: str) -> list[tuple[str, list[tuple[int | None, Row]]]]:
    """Rows split by group (display order), each ranked within its group; failed rows unranked, last."""
    by: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by[r.group].append(r)
    return [(g, [(i if r.status == "ok" else None, r) for i, r in enumerate(_rank(by[g], track), 1)])
            for g in sorted(by, key=lambda g: (_group_pos(g), g))]



TPR_SHOWN = ("0.01", "0.001")
MEM_METRICS = ["AUROC [95% CI]", "AP"] + [f"TPR@{_pct(float(k))}FPR [95% CI]" for k in TPR_SHOWN]
LID_METRICS = ["MAE", "MSE", "concordance"]
COST_HEADERS = ["NFE/sample", "seconds"]


def _metric_heads(track: str, subtypes: list[str]) -> list[str]:
    return LID_METRICS if track == "lid" else MEM_METRICS + [f"AUROC {s}" for s in subtypes]

INTRO = ("Measured by mmh-bench under one protocol; higher AUROC is better. Rows are ranked per task "
         "instance and within their group: *reference* (restatements of the labelling rule, which "
         "see the training set: they bound the others), *model-side*, *sample-side*, *training-set "
         "oracle* (detectors that read the training set's neighbours, as the labels do), *shortcut* "
         "(shown apart) and *chance* (the random floor). Rows of different instances of a task (a "
         "dev build, a test build) are never ranked together. TPR@x%FPR is the largest TPR whose FPR "
         "does not exceed x%, with a bootstrap 95% interval; it is hidden (n/r) when the negatives "
         f"cannot resolve x% (fewer than {MIN_EXPECTED_FP} expected false positives). A subtype "
         f"with fewer than {MIN_SUBTYPE_POS} positives shows its count (n=k), not an AUROC. NFE "
         "counts network forward passes and JVPs per sample. **source** says where a row comes "
         "from: *measured* (the results store), *submission* (run with `mmh-bench submit`; "
         "*verified* once `mmh-bench verify` reproduced every number), or *reported, not "
         "re-measured* (numbers published in papers, under their own protocols, listed separately "
         "for context and never ranked). The interactive page is `index.html`; how to add a "
         "detector: `docs/SUBMITTING.md`.")

