"""The "reported, not re-measured" table under a task: published numbers, each with its source,
its TPR rule and how its protocol differs from the task's. These rows come from papers, under
their own protocols, so they get a table of their own and never enter a ranking, an overview or
a plot; both renderers take their columns and notes from here.

A source's citation and protocol note are shared by many rows (one published table), so the
table's "source" column holds a number and each distinct (source, link, protocol) is written
once below the table."""
from __future__ import annotations

from typing import Callable

from mmh_bench.leaderboard.schema import TPR_RULES, PublishedMetrics, ReportedMetrics
from .columns import fmt_percent
from .model import Row, finite_number

REPORTED_TITLE = "Reported, not re-measured"
REPORTED_NOTE = ("Numbers published elsewhere, each under its source's own protocol and TPR rule (the "
                 "notes under the table say how each protocol differs from this task's); shown for "
                 "context, never ranked and not comparable row for row with a measured table.")


def _tpr_keys(rows: list[Row]) -> list[str]:
    """The FPR targets any row gives, largest first (1% before 0.1%, as in the measured table)."""
    keys = {k for r in rows for k in _published(r).tpr_at_fpr}
    return sorted(keys, key=float, reverse=True)


def _has_mpe(rows: list[Row]) -> bool:
    """Whether any row gives a global-ID mean percentage error (a column only then)."""
    return any(_lid_numbers(_published(r))[2] is not None for r in rows)


def _published(r: Row) -> ReportedMetrics | PublishedMetrics:
    """A reported row's numbers: a store file's :class:`ReportedMetrics` or a shipped table's
    :class:`PublishedMetrics`."""
    assert isinstance(r.metrics, (ReportedMetrics, PublishedMetrics)), r.metrics
    return r.metrics


def _lid_numbers(m: ReportedMetrics | PublishedMetrics) -> tuple[float | None, float | None, float | None]:
    """(MAE, concordance, global-ID MPE): a store file can give the first two, a shipped table the MPE."""
    return (m.mae, m.concordance, None) if isinstance(m, ReportedMetrics) else (None, None, m.mpe)


def reported_heads(rows: list[Row], track: str) -> list[str]:
    if track == "lid":
        return (["method (as published)", "model", "MAE", "concordance"]
                + (["MPE % (global ID)"] if _has_mpe(rows) else []) + ["TPR rule", "source"])
    return (["method (as published)", "setting", "mmh-bench detector", "model", "negatives", "AUROC [95% CI]"]
            + [f"TPR@{fmt_percent(float(k))}FPR [95% CI]" for k in _tpr_keys(rows)] + ["TPR rule", "source"])


def source_notes(rows: list[Row]) -> tuple[list[int], list[Row]]:
    """Each row's source number (1-based) and, per number, the first row with that (source, link,
    protocol note): what the renderer writes once under the table."""
    keys: dict[tuple[str, str, str], int] = {}
    firsts, refs = [], []
    for r in rows:
        key = (r.citation, r.url, r.notes)
        if key not in keys:
            keys[key] = len(keys) + 1
            firsts.append(r)
        refs.append(keys[key])
    return refs, firsts


def published_number(v: object) -> str:
    """A published number with every digit the source gave, and at least three (0.98 -> 0.980,
    0.9759 stays 0.9759: the measured tables' rounding would drop a published digit)."""
    n = finite_number(v)
    if n is None:
        return "–"
    text = repr(n)
    places = len(text.split(".")[1]) if "." in text and "e" not in text else 3
    return f"{n:.{max(3, places)}f}"


def _pub_cell(value: object, ci: object) -> tuple[str, float | None]:
    ok = isinstance(ci, list) and len(ci) == 2 and all(finite_number(v) is not None for v in ci)
    ok = ok and finite_number(value) is not None
    text = published_number(value) + (f" [{published_number(ci[0])}, {published_number(ci[1])}]" if ok else "")
    return text, finite_number(value)


def reported_cells(r: Row, ref: int, rows: list[Row], track: str, esc: Callable[[str], str] = str
                   ) -> list[tuple[str, float | None]]:
    """(text, sort value) of a reported row's columns, ``ref`` its source number; ``esc`` escapes
    the strings the file supplies (Markdown; the page escapes whole cells itself)."""
    m = _published(r)
    rule = (esc(TPR_RULES.get(r.tpr_rule, TPR_RULES["unstated"])), None)
    source = (f"[{ref}]" if esc is str else esc(f"[{ref}]"), float(ref))
    if track == "lid":
        mae, concordance, mpe = _lid_numbers(m)
        return ([(esc(r.method or r.detector), None), (esc(r.model or "–"), None),
                _pub_cell(mae, None), _pub_cell(concordance, None)]
                + ([_pub_cell(mpe, None)] if _has_mpe(rows) else []) + [rule, source])
    text = [r.method or r.detector, r.setting or "–", r.detector or "–", r.model or "–", r.negatives or "–"]
    # a source gives some FPR targets (and intervals, only in shipped tables), not every one
    tpr_ci = m.tpr_at_fpr_ci if isinstance(m, PublishedMetrics) else {}
    return ([(esc(t), None) for t in text] + [_pub_cell(m.auroc, m.auroc_ci)]
            + [_pub_cell(m.tpr_at_fpr.get(k), tpr_ci.get(k)) for k in _tpr_keys(rows)] + [rule, source])


def note_text(r: Row) -> str:
    """What follows a source's number and citation under the table."""
    return f"how the protocol differs: {r.notes}" if r.notes else ""
