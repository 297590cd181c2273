"""The board's columns: one table (:data:`COLUMNS`) that the Markdown and HTML renderers, the
replicate summary and the overview all read.

A column is one :class:`Column` entry: its key, its header, how to get its number from a row,
how to print it, whether higher is better (the first sort direction on the page, and the
direction of every ranking by it), which track it belongs to and which views show it. Every
column appears in the per-instance tables; ``views`` adds the replicate summary (mean ± sd over
replicates) and the overview, whose column is also the one each table of its track ranks by.
A column that no row of a table can fill (``shown``) is left out of that table, so a table
without closest-rule TPRs or negative sources renders as before they existed.

Adding a column is adding one entry to :data:`COLUMNS`.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable

from mmh_bench.common.fpr import FPR_KEYS, MIN_EXPECTED_FP, MIN_SOURCE_NEG, tpr_resolvable
from mmh_bench.leaderboard.schema import DetectionMetrics, MemorizationMetrics
from .model import MIN_SUBTYPE_POS, SUBTYPES, Row, finite_number

Esc = Callable[[str], str]
#: what a column's ``hidden`` and ``shown`` tests read: an ok row's metrics (only memorization
#: columns have such tests)
Metrics = MemorizationMetrics

#: views besides the per-instance table (which shows every column of its track)
REPLICATES, OVERVIEW = "replicates", "overview"


def fmt_number(v: Any, nd: int = 3) -> str:
    n = finite_number(v)
    return "–" if n is None else f"{n:.{nd}f}"


def fmt_percent(alpha: float) -> str:
    return f"{alpha * 100:g}%"


def _interval(ci: Any) -> str:
    """An interval at the point estimate's precision (never "0.999 [1.00, 1.00]")."""
    ok = isinstance(ci, list) and len(ci) == 2 and all(finite_number(v) is not None for v in ci)
    return f" [{fmt_number(ci[0])}, {fmt_number(ci[1])}]" if ok else ""


def tpr_hidden(m: Metrics, key: str) -> bool:
    """True when the row's negatives cannot resolve the target (the rule in :mod:`mmh_bench.evaluation.metrics`)."""
    flags = m.tpr_at_fpr_resolvable  # absent from results older than the flags
    return not (tpr_resolvable(m.n_neg, float(key)) if flags is None else flags.at(key))


#: the FPR targets the tables show, largest first: those of the metrics at or below 1%
TPR_SHOWN = tuple(k for k in reversed(FPR_KEYS) if float(k) <= 0.01)
#: the FPR target whose strict TPR gets the closest-rule shift beside it
SHIFT_KEY = TPR_SHOWN[0]
SHIFT_HEAD = f"closest-rule shift @{fmt_percent(float(SHIFT_KEY))}"


def closest_shift(m: Metrics, key: str = SHIFT_KEY) -> float | None:
    """Closest-point TPR minus strict TPR at ``key`` (>= 0: the closest ROC point may lie above
    the target FPR); None when either is missing or the target is not resolvable."""
    if tpr_hidden(m, key):
        return None
    strict = finite_number(m.tpr_at_fpr.at(key))
    closest = None if m.tpr_at_fpr_closest is None else finite_number(m.tpr_at_fpr_closest.at(key))
    return None if strict is None or closest is None else closest - strict


def shift_summary(ok: list[Row]) -> list[str]:
    """One line on how far the closest-point rule moves the table's TPR@1%FPR (none: no row has it)."""
    shifts = [(d, r.detector) for r in ok if (d := closest_shift(_mem(r))) is not None]
    if not shifts:
        return []
    top, who = max(((abs(d), who) for d, who in shifts), key=lambda p: (p[0], p[1]))
    med = statistics.median(abs(d) for d, _ in shifts)
    head = (f"{SHIFT_HEAD} (closest-point TPR minus strict TPR@{fmt_percent(float(SHIFT_KEY))}FPR) over the "
            f"{len(shifts)} rows that have both: ")
    return [head + ("no row moves." if top < 5e-4 else f"largest {top:.3f} ({who}), median {med:.3f}.")]


@dataclass(frozen=True)
class Column:
    """One column of the board (see the module docstring)."""

    key: str  # a stable name; a column of the overview is also its stand-in rows' metrics key
    name: str  # short label (the replicate summary's "<name> mean ± sd", the notes)
    value: Callable[[Row], float | None]  # the number of an ok row (the sort value); None: missing
    fmt: Callable[[Row, float | None, Esc], str] | None = None  # the cell text; None: the value at ``digits``
    digits: int = 3
    higher_is_better: bool = True
    track: str | None = "memorization"  # None: every track
    views: tuple[str, ...] = ()
    ci: bool = False  # the cell carries a bootstrap 95% interval (said in the header)
    hidden: Callable[[Metrics], bool] | None = None  # "n/r": the negatives cannot resolve it
    shown: Callable[[list[Metrics]], bool] | None = None  # only where an ok row fills it
    marker_note: Callable[[list[Row]], list[str]] | None = None  # why cells are hidden (first under a table)
    note: Callable[[list[Row]], list[str]] | None = None  # what the column tells (after the markers)

    @property
    def head(self) -> str:
        return self.name + (" [95% CI]" if self.ci else "")

    def applies(self, track: str, view: str | None = None) -> bool:
        return self.track in (None, track) and (view is None or view in self.views)

    def text(self, v: float | None) -> str:
        return fmt_number(v, self.digits)

    def cell(self, r: Row, esc: Esc = str) -> tuple[str, float | None]:
        """(text, sort value) of an ok row; ``esc`` escapes strings a file supplies (Markdown;
        the page escapes whole cells itself)."""
        if self.hidden is not None and self.hidden(r.metrics):
            return "n/r", None
        v = self.value(r)
        return (self.text(v) if self.fmt is None else self.fmt(r, v, esc)), v


def metric(key: str) -> Callable[[Row], float | None]:
    """The value getter of the metrics field ``key`` (a field of the track's metrics model in
    :mod:`mmh_bench.leaderboard.schema`; a typo fails loudly rather than printing a blank)."""
    return lambda r: finite_number(getattr(r.metrics, key))


def _mem(r: Row) -> MemorizationMetrics:
    """An ok memorization row's metrics, as the memorization columns read them."""
    assert isinstance(r.metrics, MemorizationMetrics), r.metrics
    return r.metrics


def _cost(key: str) -> Callable[[Row], float | None]:
    """The value getter of the result's ``cost.<key>`` (a field of :class:`~mmh_bench.leaderboard.schema.Cost`)."""
    return lambda r: None if r.cost is None else finite_number(getattr(r.cost, key))


def _tpr_column(key: str, views: tuple[str, ...] = ()) -> Column:
    def not_resolvable(ok: list[Row]) -> list[str]:
        alpha, lines = float(key), []
        for n_neg in sorted({_mem(r).n_neg for r in ok if tpr_hidden(_mem(r), key)}):
            one = f"; a single false positive is already {1 / n_neg:.2%} FPR" if 0 < n_neg * alpha < 1 else ""
            lines.append(f"n/r: TPR@{fmt_percent(alpha)}FPR not resolvable with {n_neg} negatives "
                         f"({n_neg} x {fmt_percent(alpha)} = {n_neg * alpha:.3g} expected false positives, "
                         f"fewer than {MIN_EXPECTED_FP}{one}); hidden.")
        return lines

    def text(r: Row, v: float | None, esc: Esc) -> str:
        ci = _mem(r).tpr_at_fpr_ci  # absent from results older than the intervals
        return fmt_number(v) + (_interval(ci.at(key)) if v is not None and ci is not None else "")
    return Column(key, f"TPR@{fmt_percent(float(key))}FPR",
                  lambda r: finite_number(_mem(r).tpr_at_fpr.at(key)), text,
                  views=views, ci=True, hidden=lambda m: tpr_hidden(m, key), marker_note=not_resolvable)


def _subtype_column(name: str) -> Column:
    def stats(r: Row) -> DetectionMetrics | None:
        return _mem(r).per_subtype.get(name)  # a task without this subtype has no entry

    def too_few(r: Row) -> int | None:
        sub = stats(r)
        return sub.n_pos if sub is not None and sub.n_pos < MIN_SUBTYPE_POS else None

    def value(r: Row) -> float | None:
        sub = stats(r)
        return None if sub is None or too_few(r) is not None else finite_number(sub.auroc)
    return Column(f"subtype.{name}", f"AUROC {name}", value,
                  lambda r, v, esc: f"n={n}" if (n := too_few(r)) is not None else fmt_number(v),
                  shown=lambda ms: any(name in m.per_subtype for m in ms),
                  marker_note=lambda ok: [f"n=k: only k positives of that subtype (fewer than {MIN_SUBTYPE_POS}); "
                                          "no AUROC is printed on so few."]
                  if any(too_few(r) is not None for r in ok) else [])


def _shift_text(r: Row, d: float | None, esc: Esc) -> str:
    return "–" if d is None else "0.000" if abs(d) < 5e-4 else f"{d:+.3f}"


def _sources_value(r: Row) -> float | None:
    vals = [v for v in map(finite_number, (_mem(r).auroc_by_source or {}).values()) if v is not None]
    return min(vals) if vals else None


def _sources_text(r: Row, v: float | None, esc: Esc) -> str:
    """Each negative source's AUROC in one cell ("coco 0.998 · laion 0.712"); sorts by the lowest."""
    by = _mem(r).auroc_by_source or {}  # absent where the task names no negative sources
    return " · ".join(f"{esc(k)} {fmt_number(x) if finite_number(x) is not None else f'n<{MIN_SOURCE_NEG}'}"
                      for k, x in by.items()) if by else "–"


#: every column, in display order; a track's tables show its columns in this order
COLUMNS: tuple[Column, ...] = (
    Column("auroc", "AUROC", lambda r: r.auroc, lambda r, v, esc: fmt_number(v) + _interval(_mem(r).auroc_ci),
           ci=True, views=(REPLICATES, OVERVIEW)),
    Column("ap", "AP", metric("ap")),
    _tpr_column(TPR_SHOWN[0], views=(REPLICATES,)),
    # largest first: the rows the closest-point rule moves most
    Column("shift", SHIFT_HEAD, lambda r: closest_shift(_mem(r)), _shift_text,
           hidden=lambda m: tpr_hidden(m, SHIFT_KEY), shown=lambda ms: any(m.tpr_at_fpr_closest is not None for m in ms),
           note=shift_summary),
    *(_tpr_column(k) for k in TPR_SHOWN[1:]),
    *(_subtype_column(s) for s in SUBTYPES),
    Column("sources", "AUROC by negative source", _sources_value, _sources_text,
           shown=lambda ms: any(m.auroc_by_source for m in ms),
           note=lambda ok: [f"AUROC by negative source: every positive against one source's negatives at a "
                            f"time (n<{MIN_SOURCE_NEG}: too few negatives of that source); a detector that "
                            "separates only the easy sources shows it here."]),
    Column("mae", "MAE", metric("mae"), higher_is_better=False, track="lid", views=(REPLICATES, OVERVIEW)),
    Column("mse", "MSE", metric("mse"), higher_is_better=False, track="lid"),
    Column("concordance", "concordance", metric("concordance"), track="lid", views=(REPLICATES,)),
    Column("nfe_per_sample", "NFE/sample", _cost("nfe_per_sample"), digits=1, higher_is_better=False, track=None),
    Column("seconds", "seconds", _cost("seconds"), digits=2, higher_is_better=False, track=None),
)


def columns(track: str, view: str | None = None) -> list[Column]:
    """The track's columns (of one view: :data:`REPLICATES`, :data:`OVERVIEW`; None: all), in order."""
    return [c for c in COLUMNS if c.applies(track, view)]


def rank_column(track: str) -> Column:
    """The column the overview shows and every table of ``track`` ranks by."""
    return columns(track, OVERVIEW)[0]


def rank_key(track: str) -> Callable[[float | None], float]:
    """Sort key of a rank column's value, best first (missing values are the caller's to place)."""
    sign = -1.0 if rank_column(track).higher_is_better else 1.0
    return lambda v: sign * (v or 0.0)


@dataclass(frozen=True)
class Columns:
    """The columns of one per-instance table, decided by its rows."""

    track: str
    cols: tuple[Column, ...]

    @classmethod
    def of(cls, rows: list[Row], track: str) -> "Columns":
        ok = [r.metrics for r in rows if r.status == "ok"]
        return cls(track, tuple(c for c in columns(track) if c.shown is None or c.shown(ok)))

    def heads(self) -> list[str]:
        return [c.head for c in self.cols]

    def cells(self, r: Row, esc: Esc = str) -> list[tuple[str, float | None]]:
        """(text, sort value) of every column of an ok row, for both renderers."""
        return [c.cell(r, esc) for c in self.cols]

    def notes(self, ok: list[Row]) -> list[str]:
        """Lines under the table: why cells are hidden, then what columns tell; each line once."""
        lines = [line for c in self.cols if c.marker_note for line in c.marker_note(ok)]
        lines += [line for c in self.cols if c.note for line in c.note(ok)]
        return list(dict.fromkeys(lines))


#: the headers of the columns every table of a track shows (public names of the board)
MEM_METRICS = [c.head for c in columns("memorization") if c.shown is None and c.track]
LID_METRICS = [c.head for c in columns("lid") if c.track]
