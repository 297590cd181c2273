"""The fidelity table of the text-to-image section: every published Stable Diffusion number the board
carries, beside the same mmh-bench detector at the same protocol (n generations, the first k steps,
the layer its spec names) on each CPU text-to-image task's published test instance, and Kendall's
tau between each task's order and the published table's.

A CPU task stands in for Stable Diffusion only as far as it orders detectors as the papers do, so
this is where a reader sees how far that is. A protocol a task has no result for is shown not
comparable, with the reason, never matched to a neighbouring configuration; a disagreement points
to its measured cause. Built from the board's rows alone, so both renderers show the same numbers.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import kendalltau

from mmh_bench.registry import RegistryError, format_ref, parse_ref
from mmh_bench.leaderboard.schema import DetectionMetrics, MemorizationMetrics
from .model import MIN_SUBTYPE_POS, Board, InstanceFacts, Row, TaskFacts, finite_number
from .reported import published_number

#: whose published numbers are compared, and on which tasks
PUBLISHED_FAMILY = "stable-diffusion"
CPU_FAMILY = "text-to-image"
#: the measured cause of a disagreement (repository path; the link is relative to the board's folder)
CAUSE_DOC = "docs/T2I_FIDELITY.md"
CAUSE_HREF = "../docs/T2I_FIDELITY.md"
FIDELITY_TITLE = "Fidelity to the published Stable Diffusion numbers"
FIDELITY_NOTE = (
    "Each published number beside the same mmh-bench detector at the same protocol on each text-to-image "
    "task's published test instance: n generations per prompt averaged (the detector's generations parameter; "
    "on a task, the sample's own generation and n - 1 more of its caption), the statistic averaged over the "
    "first k sampling steps (n_steps), and the layer the detector spec names. A published row without such a "
    "result is not comparable, with the reason, never matched to another protocol (mmh-bench run skips a "
    "protocol the task's model cannot serve, such as a layer it lacks, and prints why). \"all memorized\": "
    "every memorized sample against the non-memorized ones; the verbatim column: the task's verbatim copies "
    "only (VM where the task has them, else its duplicated-image copies, DD); the published numbers are on "
    "verbatim and template memorized prompts. AUROCs below 0.5 are marked below chance.")
AGREEMENT_NOTE = (
    "Kendall's tau-b between a published table's AUROCs and a task's, over the rows measured on both (a "
    "detector at several settings counts once per setting); with fewer than two detectors among them the "
    "order is not compared. A task disagrees where tau < 0 or where the detector at the setting the paper "
    "found best scores below chance on it.")

#: the published protocols' sampler (DDIM, 50 steps): "steps 50" is the whole trajectory there
SD_STEPS = 50
_SETTING = re.compile(r"n = (\d+), (?:steps (\d+)|first (?:DDIM )?step)")
_MISSING = object()


def protocol_params(setting: str) -> dict[str, int] | None:
    """A published setting as the generation-time detectors' parameters: ``"n = 4, steps 5"`` ->
    ``{"generations": 4, "n_steps": 5}`` (``"first step"`` is steps 1); None for any other wording,
    which no configuration matches."""
    m = _SETTING.fullmatch(setting.strip())
    if m is None:
        return None
    return {"generations": int(m.group(1)), "n_steps": int(m.group(2) or 1)}


def wanted(r: Row) -> tuple[str, dict[str, Any]] | str:
    """The detector configuration (name, parameters) a published row asks for, or why there is none."""
    if not r.detector:
        return "no mmh-bench detector"
    params = protocol_params(r.setting)
    if params is None:
        return "setting not given as n and steps"
    try:
        name, own = parse_ref(r.detector)
    except RegistryError:
        return "detector spec not readable"
    return name, {**own, **params}


def _explicit(r: Row) -> tuple[str, dict[str, Any]] | None:
    """A measured row's detector name and the parameters its name spells out (its non-default ones)."""
    try:
        return parse_ref(r.detector)
    except RegistryError:
        return None


def matches(r: Row, name: str, params: dict[str, Any]) -> bool:
    """Whether a measured row ran exactly this configuration: the asked parameters hold in what it
    recorded, and it set no parameter the published protocol does not name."""
    got = _explicit(r)
    if got is None or got[0] != name:
        return False
    return (all(r.params.get(k, _MISSING) == v for k, v in params.items())
            and all(params.get(k, _MISSING) == v for k, v in got[1].items()))


@dataclass
class CpuTask:
    """A text-to-image task as the table reads it: its published test instance and rows there."""

    task: TaskFacts
    instance: InstanceFacts
    verbatim: str  # "VM" where the task has verbatim copies, else "DD"
    rows: list[Row]

    @property
    def label(self) -> str:
        return self.task.name


@dataclass
class Cell:
    """One published row on one task: the matched row's AUROCs, or why there is none."""

    row: Row | None = None
    reason: str = ""
    auroc: float | None = None
    verbatim: float | None = None
    verbatim_text: str = "–"  # the verbatim AUROC, or n=k below MIN_SUBTYPE_POS positives


@dataclass
class FidelityRow:
    """A published row and, per task, what the same configuration measured there."""

    published: Row
    table: int  # the published table's number (1-based)
    config: str  # the configuration asked, in --detectors syntax ("" when none)
    name: str  # its detector name ("" when none)
    cells: list[Cell]


@dataclass
class Agreement:
    """One published table against one task."""

    table: int
    task: CpuTask
    n_rows: int
    n_detectors: int
    tau: float | None
    tau_verbatim: float | None
    best_below: list[str] = field(default_factory=list)  # the paper's best configurations below chance here

    @property
    def compared(self) -> bool:
        return self.n_detectors >= 2

    @property
    def disagrees(self) -> bool:
        return self.compared and (bool(self.best_below) or any(t is not None and t < 0
                                                                for t in (self.tau, self.tau_verbatim)))

    def verdict(self) -> str:
        """Plain text; a renderer adds the link to :data:`CAUSE_DOC` where :attr:`disagrees`."""
        if not self.compared:
            return "not enough shared detectors"
        if self.disagrees:
            parts = [f"order reversed on {what} (tau {t:+.2f})" for what, t in
                     (("all memorized", self.tau), (self.task.verbatim, self.tau_verbatim)) if t is not None and t < 0]
            if self.best_below:
                parts.append(f"the paper's best ({', '.join(self.best_below)}) below chance here")
            return "disagrees: " + "; ".join(parts) + "; measured cause:"
        if self.tau is None:
            return "tau undefined (tied AUROCs)"
        return "agrees in order" if self.tau > 0 else "no common order (tau 0)"


@dataclass
class Fidelity:
    """What both renderers print: the rows with their plain-text cells, the notes under them, and
    the agreement of each (published table, task) pair."""

    tasks: list[CpuTask]
    tables: list[Row]  # the first row of each published table, by number
    rows: list[FidelityRow]
    agreements: list[Agreement]
    unmeasured: list[TaskFacts]  # text-to-image tasks without a published test instance on the board

    def heads(self) -> list[str]:
        return (["table", "method (as published)", "model", "setting", "mmh-bench detector at this protocol",
                 "published AUROC"]
                + [h for t in self.tasks for h in (f"{t.label}: all memorized", f"{t.label}: verbatim ({t.verbatim})")])

    def cells(self, fr: FidelityRow) -> list[tuple[str, float | None]]:
        """(text, AUROC or None) of a row's columns."""
        p = fr.published
        auroc = p.auroc
        out: list[tuple[str, float | None]] = [
            (f"[{fr.table}]", None), (p.method or p.detector, None), (p.model or "–", None),
            (_setting(p), None), (fr.config or "–", None), (published_number(auroc), finite_number(auroc))]
        for c in fr.cells:
            if c.row is None:
                out += [(f"not comparable: {c.reason}", None), ("–", None)]
            else:
                out += [(_auroc(c.auroc), c.auroc), (_auroc(c.verbatim) if c.verbatim is not None
                                                     else c.verbatim_text, c.verbatim)]
        return out

    def agreement_heads(self) -> list[str]:
        return ["table", "task (instance)", "rows on both", "detectors", "Kendall's tau (all memorized)",
                "Kendall's tau (verbatim)", "verdict"]

    def agreement_cells(self, a: Agreement) -> list[str]:
        tau = lambda t: "–" if t is None else f"{t:+.2f}"  # noqa: E731
        return [f"[{a.table}]", f"{a.task.label} ({a.task.instance.id})", str(a.n_rows), str(a.n_detectors),
                tau(a.tau) if a.compared else "–",
                f"{tau(a.tau_verbatim)} ({a.task.verbatim})" if a.compared else "–", a.verdict()]

    def table_line(self, k: int) -> str:
        """What follows a published table's number under the table."""
        r = self.tables[k - 1]
        return f"[{k}] {r.task} ({r.model}): {r.citation}"

    def task_lines(self) -> list[str]:
        """Per task, what its protocol cannot match by construction (its sampler's length)."""
        out = []
        for t in self.tasks:
            steps = t.task.sampler_steps
            if steps is not None and steps != SD_STEPS:
                out.append(f"{t.label} samples with {steps} steps (Stable Diffusion: {SD_STEPS} DDIM steps), so "
                           f"\"steps k\" reads the first k of its {steps}.")
        out += [f"{t.name}: no result on a published test instance yet, so no column." for t in self.unmeasured]
        return out


def _setting(p: Row) -> str:
    """A published row's setting; where it states none, its negatives (what tells a table's rows apart)."""
    return p.setting or (f"negatives: {p.negatives}" if p.negatives else "–")


def _auroc(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" + (" (below chance)" if v < 0.5 else "")


def _subtype(r: Row, sub: str) -> tuple[float | None, str]:
    """A row's AUROC on one subtype, or its positives' count where they are too few to judge."""
    m = _subtypes(r).get(sub)
    if m is None:
        return None, "–"
    if m.n_pos < MIN_SUBTYPE_POS:
        return None, f"n={m.n_pos}"
    return finite_number(m.auroc), "–"


def _subtypes(r: Row) -> dict[str, DetectionMetrics]:
    """A measured row's metrics per subtype (none where it failed)."""
    return r.metrics.per_subtype if isinstance(r.metrics, MemorizationMetrics) else {}


def _cell(rows: list[Row], want: tuple[str, dict[str, Any]] | str, verbatim: str, inst: InstanceFacts) -> Cell:
    if isinstance(want, str):
        return Cell(reason=want)
    row = next((r for r in rows if matches(r, *want)), None)
    if row is None:
        return Cell(reason=f"no result at this protocol on {inst.id}")
    if row.status != "ok":
        return Cell(reason=f"failed on {inst.id}")
    v, text = _subtype(row, verbatim)
    return Cell(row=row, auroc=row.auroc, verbatim=v, verbatim_text=text)


def cpu_tasks(board: Board) -> tuple[list[CpuTask], list[TaskFacts]]:
    """The text-to-image tasks with a published test instance (the first, where there are
    replicates), and those without one."""
    found, missing = [], []
    for family, track, tasks in board.tables():
        if family != CPU_FAMILY or track != "memorization":
            continue
        for t in tasks:
            test = [i for i in board.instances(t) if i.kind == "test"]
            if not test:
                missing.append(t)
                continue
            rows = board.rows_for(t, ("measured", "submission"), test[0].data_hash)
            has_vm = any("VM" in _subtypes(r) for r in rows)
            found.append(CpuTask(t, test[0], "VM" if has_vm else "DD", rows))
    return found, missing


def published_rows(board: Board) -> list[Row]:
    """The board's reported Stable Diffusion rows of the memorization track, in the order it carries them."""
    return [r for r in board.rows if r.kind == "reported" and r.family == PUBLISHED_FAMILY
            and r.track == "memorization"]


def _tau(x: list[float], y: list[float]) -> float | None:
    if len(x) < 2:
        return None
    t = float(kendalltau(x, y).statistic)
    return None if math.isnan(t) else t


def agreement(table: int, task: CpuTask, col: int, rows: list[FidelityRow]) -> Agreement:
    """Tau between a published table and a task over the rows measured on both; the configurations
    the paper found best (highest published AUROC among them) that score below chance on the task."""
    both = [(fr, fr.cells[col]) for fr in rows if fr.table == table and fr.cells[col].auroc is not None
            and fr.published.auroc is not None]
    pub = [fr.published.auroc for fr, _ in both]
    n_det = len({fr.name for fr, _ in both})
    verb = [(p, c.verbatim) for p, (_, c) in zip(pub, both) if c.verbatim is not None]
    top = max(pub, default=None)
    below = sorted({fr.config for p, (fr, c) in zip(pub, both) if p == top
                    and any(v is not None and v < 0.5 for v in (c.auroc, c.verbatim))})
    enough = n_det >= 2
    return Agreement(table, task, len(both), n_det,
                     _tau(pub, [c.auroc for _, c in both]) if enough else None,
                     _tau([p for p, _ in verb], [v for _, v in verb]) if enough else None,
                     below if enough else [])


def fidelity(board: Board) -> Fidelity | None:
    """The table, or None where the board has no published Stable Diffusion row or no text-to-image task."""
    published = published_rows(board)
    tasks, missing = cpu_tasks(board)
    if not published or not (tasks or missing):
        return None
    numbers: dict[tuple[str, str, str, str], int] = {}
    firsts: list[Row] = []
    rows = []
    for p in published:
        key = (p.task, p.citation, p.url, p.notes)
        if key not in numbers:
            numbers[key] = len(numbers) + 1
            firsts.append(p)
        want = wanted(p)
        name, config = ("", "") if isinstance(want, str) else (want[0], format_ref(*want))
        rows.append(FidelityRow(p, numbers[key], config, name,
                                [_cell(t.rows, want, t.verbatim, t.instance) for t in tasks]))
    agreements = [agreement(k, t, i, rows) for k in range(1, len(firsts) + 1) for i, t in enumerate(tasks)]
    return Fidelity(tasks, firsts, rows, agreements, missing)
