"""Cell text shared by the Markdown and HTML renderers: numbers at their precision, hidden
cells with their reasons, and the within-group ranking of a table's rows."""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from mmh_bench.evaluation.metrics import MIN_EXPECTED_FP, MIN_SOURCE_NEG, tpr_resolvable
from .model import GROUP_ORDER, MIN_SUBTYPE_POS, SUBTYPES, Row, finite_number


def fmt_number(v: Any, nd: int = 3) -> str:
    n = finite_number(v)
    return "–" if n is None else f"{n:.{nd}f}"


def _interval(ci: Any) -> str:
    """An interval at the point estimate's precision (never "0.999 [1.00, 1.00]")."""
    ok = isinstance(ci, list) and len(ci) == 2 and all(finite_number(v) is not None for v in ci)
    return f" [{fmt_number(ci[0])}, {fmt_number(ci[1])}]" if ok else ""


def fmt_percent(alpha: float) -> str:
    return f"{alpha * 100:g}%"


def tpr_hidden(m: dict[str, Any], key: str) -> bool:
    """True when the row's negatives cannot resolve the target (the rule in :mod:`mmh_bench.evaluation.metrics`)."""
    flags = m.get("tpr_at_fpr_resolvable") or {}
    if key in flags:
        return not flags[key]
    n_neg = m.get("n_neg")
    return isinstance(n_neg, int) and not tpr_resolvable(n_neg, float(key))


def _tpr_cell(m: dict[str, Any], key: str) -> tuple[str, float | None]:
    """(text, sort value) of a TPR@FPR cell: point and 95% interval, or "n/r" when not resolvable."""
    if tpr_hidden(m, key):
        return "n/r", None
    v = finite_number((m.get("tpr_at_fpr") or {}).get(key))
    return fmt_number(v) + (_interval((m.get("tpr_at_fpr_ci") or {}).get(key)) if v is not None else ""), v


def _sub_cell(m: dict[str, Any], name: str) -> tuple[str, float | None]:
    """(text, sort value) of a subtype's AUROC, or its positive count when too few to judge."""
    sub = (m.get("per_subtype") or {}).get(name) or {}
    n = sub.get("n_pos")
    if isinstance(n, int) and n < MIN_SUBTYPE_POS:
        return f"n={n}", None
    v = finite_number(sub.get("auroc"))
    return fmt_number(v), v


def _subtypes(rows: list[Row]) -> list[str]:
    present = {s for r in rows for s in (r.metrics.get("per_subtype") or {})}
    return [s for s in SUBTYPES if s in present]


#: the FPR target whose strict TPR gets the closest-rule shift beside it
SHIFT_KEY = "0.01"


def closest_shift(m: dict[str, Any], key: str = SHIFT_KEY) -> float | None:
    """Closest-point TPR minus strict TPR at ``key`` (>= 0: the closest ROC point may lie above
    the target FPR); None when either is missing or the target is not resolvable."""
    if tpr_hidden(m, key):
        return None
    strict = finite_number((m.get("tpr_at_fpr") or {}).get(key))
    closest = finite_number((m.get("tpr_at_fpr_closest") or {}).get(key))
    return None if strict is None or closest is None else closest - strict


def _shift_cell(m: dict[str, Any]) -> tuple[str, float | None]:
    if tpr_hidden(m, SHIFT_KEY):
        return "n/r", None
    d = closest_shift(m)
    return ("–" if d is None else "0.000" if abs(d) < 5e-4 else f"{d:+.3f}"), d


def _sources_cell(m: dict[str, Any], esc: Callable[[str], str]) -> tuple[str, float | None]:
    """Each negative source's AUROC in one cell ("coco 0.998 · laion 0.712"); sorts by the lowest.
    Source names come from the file: ``esc`` makes them text for the renderer."""
    by = m.get("auroc_by_source") or {}
    if not by:
        return "–", None
    vals = [v for v in map(finite_number, by.values()) if v is not None]
    text = " · ".join(f"{esc(k)} {fmt_number(v) if finite_number(v) is not None else f'n<{MIN_SOURCE_NEG}'}"
                      for k, v in by.items())
    return text, (min(vals) if vals else None)


@dataclass(frozen=True)
class Columns:
    """The metric columns of one table, decided by its rows: a column no row can fill is left out
    (so a table without closest-rule TPRs or negative sources renders as before they existed)."""

    track: str
    subtypes: tuple[str, ...] = ()
    shift: bool = False  # the closest-rule shift beside TPR@1%FPR
    sources: bool = False  # AUROC by negative source

    @classmethod
    def of(cls, rows: list[Row], track: str) -> "Columns":
        if track == "lid":
            return cls(track)
        ok = [r.metrics for r in rows if r.status == "ok"]
        return cls(track, tuple(_subtypes(rows)), any(m.get("tpr_at_fpr_closest") for m in ok),
                   any(m.get("auroc_by_source") for m in ok))

    def heads(self) -> list[str]:
        if self.track == "lid":
            return list(LID_METRICS)
        tpr = [f"TPR@{fmt_percent(float(k))}FPR [95% CI]" for k in TPR_SHOWN]
        shift = [SHIFT_HEAD] if self.shift else []
        return (MEM_METRICS[:2] + tpr[:1] + shift + tpr[1:] + [f"AUROC {s}" for s in self.subtypes]
                + (["AUROC by negative source"] if self.sources else []))

    def cells(self, r: Row, esc: Callable[[str], str] = str) -> list[tuple[str, float | None]]:
        """(text, sort value) of every metric column of an ok row, for both renderers; ``esc``
        escapes the strings a file supplies (Markdown; the page escapes whole cells itself)."""
        m = r.metrics
        if self.track == "lid":
            return [(fmt_number(m.get(k)), finite_number(m.get(k))) for k in ("mae", "mse", "concordance")]
        tpr = [_tpr_cell(m, k) for k in TPR_SHOWN]
        return ([(fmt_number(m.get("auroc")) + _interval(m.get("auroc_ci")), r.auroc), (fmt_number(m.get("ap")), finite_number(m.get("ap")))]
                + tpr[:1] + ([_shift_cell(m)] if self.shift else []) + tpr[1:]
                + [_sub_cell(m, s) for s in self.subtypes] + ([_sources_cell(m, esc)] if self.sources else []))


def shift_summary(rows: list[Row]) -> str | None:
    """One line on how far the closest-point rule moves the table's TPR@1%FPR (None: no row has it)."""
    shifts = [(d, r.detector) for r in rows if r.status == "ok" and (d := closest_shift(r.metrics)) is not None]
    if not shifts:
        return None
    top, who = max(((abs(d), who) for d, who in shifts), key=lambda p: (p[0], p[1]))
    med = statistics.median(abs(d) for d, _ in shifts)
    head = (f"{SHIFT_HEAD} (closest-point TPR minus strict TPR@{fmt_percent(float(SHIFT_KEY))}FPR) over the "
            f"{len(shifts)} rows that have both: ")
    if top < 5e-4:
        return head + "no row moves."
    return head + f"largest {top:.3f} ({who}), median {med:.3f}."


def footnotes(rows: list[Row], track: str) -> list[str]:
    """Plain-text lines under a table: why cells are hidden, and each detector's note once."""
    ok = [r for r in rows if r.status == "ok"]
    lines = []
    if track != "lid":
        for key in TPR_SHOWN:
            alpha = float(key)
            for n_neg in sorted({r.metrics.get("n_neg") for r in ok if tpr_hidden(r.metrics, key)}):
                one = (f"; a single false positive is already {1 / n_neg:.2%} FPR" if 0 < n_neg * alpha < 1 else "")
                lines.append(f"n/r: TPR@{fmt_percent(alpha)}FPR not resolvable with {n_neg} negatives "
                             f"({n_neg} x {fmt_percent(alpha)} = {n_neg * alpha:.3g} expected false positives, "
                             f"fewer than {MIN_EXPECTED_FP}{one}); hidden.")
        if any(_sub_cell(r.metrics, s)[0].startswith("n=") for r in ok for s in SUBTYPES):
            lines.append(f"n=k: only k positives of that subtype (fewer than {MIN_SUBTYPE_POS}); "
                         "no AUROC is printed on so few.")
        shift = shift_summary(rows)
        if shift:
            lines.append(shift)
        if any(r.metrics.get("auroc_by_source") for r in ok):
            lines.append("AUROC by negative source: every positive against one source's negatives at a "
                         f"time (n<{MIN_SOURCE_NEG}: too few negatives of that source); a detector that "
                         "separates only the easy sources shows it here.")
    notes = sorted({(r.detector, r.detector_note) for r in rows if r.detector_note})
    lines += [f"Note on {d}: {n}" for d, n in notes]
    return lines


def group_position(group: str) -> int:
    return GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)


def _rank(rows: list[Row], track: str) -> list[Row]:
    ok = [r for r in rows if r.status == "ok"]
    if track == "lid":
        ok.sort(key=lambda r: (finite_number(r.metrics.get("mae")) is None, finite_number(r.metrics.get("mae")) or 0.0, r.detector))
    else:
        ok.sort(key=lambda r: (r.auroc is None, -(r.auroc or 0.0), r.detector))
    return ok + sorted((r for r in rows if r.status != "ok"), key=lambda r: r.detector)


def ranked_groups(rows: list[Row], track: str) -> list[tuple[str, list[tuple[int | None, Row]]]]:
    """Rows split by group (display order), each ranked within its group; failed rows unranked, last."""
    by: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by[r.group].append(r)
    return [(g, [(i if r.status == "ok" else None, r) for i, r in enumerate(_rank(by[g], track), 1)])
            for g in sorted(by, key=lambda g: (group_position(g), g))]


TPR_SHOWN = ("0.01", "0.001")
MEM_METRICS = ["AUROC [95% CI]", "AP"] + [f"TPR@{fmt_percent(float(k))}FPR [95% CI]" for k in TPR_SHOWN]
LID_METRICS = ["MAE", "MSE", "concordance"]
COST_HEADERS = ["NFE/sample", "seconds"]
SHIFT_HEAD = f"closest-rule shift @{fmt_percent(float(SHIFT_KEY))}"

INTRO = ("Measured by mmh-bench under one protocol; higher AUROC is better. Rows are ranked per task "
         "instance and within their group: *reference* (restatements of the labelling rule, which "
         "see the training set: they bound the others), *model-side*, *sample-side*, *training-set "
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

