"""The mitigation board's columns: one table (:data:`COLUMNS`), in the style of the detection
board's (:mod:`mmh_bench.leaderboard.board.columns`), that the Markdown and HTML tables both read.

A mitigation table has two kinds: the k-NN quality of the CPU tasks (``knn``) and MemBench's
scores of the Stable Diffusion tasks (``membench``); a column names the kind it belongs to (None:
both). Every number is printed at its column's precision, so a column never mixes 0.5 and 0.500.
Adding a column is adding one entry to :data:`COLUMNS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mmh_bench.leaderboard.board.columns import Column
from .result import MitigationMetrics, MitigationResult, Rate

KNN, MEMBENCH = "knn", "membench"


@dataclass(frozen=True)
class MitigationRow:
    """One ok result in its table: the result, and the unmitigated row's NFE the extra cost is
    counted from (None: the table has no unmitigated row)."""

    result: MitigationResult
    base_nfe: float | None = None

    @property
    def m(self) -> MitigationMetrics:
        assert self.result.metrics is not None
        return self.result.metrics


def fmt(v: float | None, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _rate_text(r: MitigationRow, v: float | None, esc: Callable[[str], str]) -> str:
    rate = r.m.memorization
    return f"{rate.rate:.3f} [{rate.ci[0]:.3f}, {rate.ci[1]:.3f}]"


def _subtypes(names: tuple[str, str]) -> Column:
    def rate(r: MitigationRow, k: str) -> float | None:
        sub: Rate | None = r.m.per_subtype.get(k)  # type: ignore[call-overload]
        return None if sub is None else sub.rate
    return Column("subtypes", " / ".join(names), lambda r: rate(r, names[0]),
                  lambda r, v, esc: " / ".join(fmt(rate(r, k)) for k in names), higher_is_better=False,
                  track=MEMBENCH if names[0] == "VM" else KNN)


def _number(key: str, name: str, get: Callable[[MitigationRow], float | None], track: str | None,
            digits: int = 3, higher_is_better: bool = True) -> Column:
    return Column(key, name, get, lambda r, v, esc: fmt(v, digits), digits=digits,
                  higher_is_better=higher_is_better, track=track)


def _extra_nfe(r: MitigationRow) -> float | None:
    cost = r.result.cost
    return None if r.base_nfe is None or cost is None else cost.nfe_per_sample - r.base_nfe


#: every column after (mitigator, setting), in display order
COLUMNS: tuple[Column, ...] = (
    Column("memorized", "memorized", lambda r: r.m.memorization.rate, _rate_text, ci=True,
           higher_is_better=False, track=KNN),
    Column("copied", "copied: max SSCD > 0.5", lambda r: r.m.memorization.rate, _rate_text, ci=True,
           higher_is_better=False, track=MEMBENCH),
    _subtypes(("DD", "OD")),
    _subtypes(("VM", "TM")),
    _number("precision", "precision", lambda r: r.m.precision, KNN),
    _number("recall", "recall", lambda r: r.m.recall, KNN),
    _number("condition_accuracy", "cond. accuracy", lambda r: r.m.condition_accuracy, KNN),
    _number("sscd_max_mean", "mean max SSCD", lambda r: r.m.membench and r.m.membench.sscd_max_mean, MEMBENCH,
            higher_is_better=False),
    _number("clip_score", "CLIP score", lambda r: r.m.membench and r.m.membench.clip_score, MEMBENCH, digits=2),
    _number("extra_nfe", "extra NFE/sample", _extra_nfe, None, digits=1, higher_is_better=False),
    _number("seconds", "seconds", lambda r: r.result.cost and r.result.cost.seconds, None, digits=2,
            higher_is_better=False),
)
#: the columns every table starts with: not numbers, not from the column table
LEAD = ("mitigator", "setting")


def kind_of(rows: list[MitigationResult]) -> str:
    """Whether the rows are a Stable Diffusion task's, scored by MemBench's protocol."""
    return MEMBENCH if any(r.metrics is not None and r.metrics.membench is not None for r in rows) else KNN


def columns(kind: str) -> list[Column]:
    return [c for c in COLUMNS if c.applies(kind)]
