"""ROC and Pareto (AUROC against cost) PNGs, one pair per memorization task instance; one
estimate-against-truth PNG per LID task instance."""
from __future__ import annotations

import hashlib
import io
import math
import re
from pathlib import Path
from typing import Any

from mmh_bench.files import atomic_write_bytes
from mmh_bench.common.fpr import FPR_KEYS
from mmh_bench.leaderboard.schema import LIDMetrics, MemorizationMetrics, TrueLIDLevel
from .columns import fmt_number, fmt_percent
from .model import Board, Row, TaskFacts, finite_number

PLOTS_DIR = "plots"
#: the figures an instance may have, in display order, with their captions
PLOT_KINDS = (("roc", "ROC curves"), ("pareto", "AUROC against cost"), ("lid", "LID estimates against LID*"))


def true_lid_text(rows: list[Row]) -> str | None:
    """The true LID* values of a LID task's query points with their counts ("2 (500), 5 (501)")."""
    for r in rows:
        levels = _true_lid(r)
        if levels:
            return ", ".join(f"{fmt_number(v.lid).rstrip('0').rstrip('.') or '0'} ({v.n})" for v in levels)
    return None


def _true_lid(r: Row) -> list[TrueLIDLevel]:
    """An ok LID row's estimates per true LID* (none from results older than the field)."""
    m = r.metrics if r.status == "ok" else None
    return (m.by_true_lid or []) if isinstance(m, LIDMetrics) else []


# -- plots --------------------------------------------------------------------------------------
def plot_slug(task: str, version: str) -> str:
    """A file-name stem for a task version (a digest where the name is not a plain file name)."""
    base = f"{task}-v{version}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "task"
    if safe != base:
        safe += "-" + hashlib.sha256(base.encode()).hexdigest()[:8]
    return safe[:100]


#: how far a stored curve's TPR at a target FPR may sit from the stored metric before the plot
#: marks the metric's point (results written before the curve kept its low-FPR vertices)
ROC_TOLERANCE = 1e-3


def roc_gaps(r: Row) -> list[tuple[float, float, float]]:
    """(FPR target, TPR read off the stored curve, the stored TPR@FPR metric) where they differ by
    more than :data:`ROC_TOLERANCE`: a curve thinned by index before its low-FPR corner was kept.
    Such a result cannot be recomputed without re-running; its plot draws the metric's point."""
    if not r.roc or not isinstance(r.metrics, MemorizationMetrics):
        return []
    out = []
    for key in FPR_KEYS:
        want = finite_number(r.metrics.tpr_at_fpr.at(key))
        if want is None:
            continue
        got = max((t for f, t in zip(r.roc.fpr, r.roc.tpr) if f <= float(key) + 1e-12), default=0.0)
        if abs(got - want) > ROC_TOLERANCE:
            out.append((float(key), got, want))
    return out


def _plot_label(text: str) -> str:
    s = "".join(c if c.isprintable() else " " for c in text)[:40]
    return (" " + s if s.startswith("_") else s).replace("$", r"\$")


def _roc_png(task: TaskFacts, rows: list[Row]) -> bytes | None:
    from matplotlib.figure import Figure
    curves = [r for r in rows if r.status == "ok" and r.roc]
    if not curves:
        return None
    fig = Figure(figsize=(10, 4.2), dpi=100)
    axes = fig.subplots(1, 2)
    for i, r in enumerate(sorted(curves, key=lambda r: -(r.auroc or 0.0))):
        label = _plot_label(r.detector) + (" [sub]" if r.kind == "submission" else "") + f" ({fmt_number(r.auroc)})"
        # ten colours, then the same colours dashed, dotted: no two curves look alike
        style = {"color": f"C{i % 10}", "ls": ("-", "--", "-.", ":")[(i // 10) % 4]}
        for ax in axes:
            ax.plot(r.roc.fpr, r.roc.tpr, lw=1.4, label=label, drawstyle="steps-post", **style)
        gaps = roc_gaps(r)
        if gaps:  # the stored curve lost its low-FPR corner: draw what the metric says, and say so
            axes[1].scatter([a for a, _, _ in gaps], [w for _, _, w in gaps], marker="x", s=40, zorder=5,
                            color=style["color"], label=_plot_label(r.detector) + " TPR@"
                            + "/".join(fmt_percent(a) for a, _, _ in gaps) + " (stored metric; curve thinned)")
    for ax, log in zip(axes, (False, True)):
        grid = [1e-3, 1] if log else [0, 1]
        ax.plot(grid, grid, ls=":", color="grey", lw=1)
        ax.set_xlabel("false positive rate" + (" (log)" if log else ""))
        ax.set_ylabel("true positive rate")
        if log:
            ax.set_xscale("log")
            ax.set_xlim(1e-3, 1)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    if any(roc_gaps(r) for r in curves):
        axes[1].legend(handles=list(axes[1].collections), fontsize=7, loc="upper left")
    fig.suptitle(_plot_label(f"ROC curves: {task.name} v{task.version}"))
    fig.tight_layout()
    return _png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower cost and higher AUROC (cost order)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _pareto_png(task: TaskFacts, rows: list[Row]) -> bytes | None:
    from matplotlib.figure import Figure
    pts = [r for r in rows if r.status == "ok" and r.auroc is not None and r.cost]
    if not pts:
        return None
    fig = Figure(figsize=(10, 4.2), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, key, xlabel in ((axes[0], "nfe_per_sample", "network evaluations per sample"),
                            (axes[1], "seconds", "wall seconds (whole task)")):
        xy = [(max(finite_number(getattr(r.cost, key)) or 0.0, 0.0), r.auroc or 0.0) for r in pts]
        for (x, y), r in zip(xy, pts):
            color = "grey" if r.reference else "tab:green" if r.kind == "submission" else "tab:blue"
            ax.scatter([x], [y], s=28, marker="s" if r.kind == "submission" else "o", color=color, zorder=3)
            ax.annotate(_plot_label(r.detector) + (" (ref)" if r.reference else ""), (x, y), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        # reference rows restate the labelling rule and shortcuts exploit a dev instance: neither is on the front
        cand = [i for i, r in enumerate(pts) if not r.reference and r.group != "shortcut"]
        front = [cand[j] for j in pareto_front([xy[i] for i in cand])]
        if front:
            fx = [xy[i][0] for i in front] + [max(x for x, _ in xy)]
            fy = [xy[i][1] for i in front] + [xy[front[-1]][1]]
            ax.plot(fx, fy, color="tab:red", lw=1, drawstyle="steps-post", label="Pareto front")
            ax.scatter(fx[:-1], fy[:-1], s=90, facecolors="none", edgecolors="tab:red", zorder=4)
            ax.legend(fontsize=7, loc="lower right")
        lin = 1.0 if key == "nfe_per_sample" else 0.01
        ax.set_xscale("symlog", linthresh=lin)
        top = max(x for x, _ in xy)
        ax.set_xlim(-0.05 * lin, max(top * 3, lin * 2))
        ax.set_xlabel(xlabel + " (lower is cheaper)")
        ax.set_ylabel("AUROC")
        ax.set_ylim(0, 1.08)
        ax.grid(alpha=0.3)
    fig.suptitle(_plot_label(f"AUROC against cost: {task.name} v{task.version}"))
    fig.tight_layout()
    return _png(fig)


def _lid_png(task: TaskFacts, rows: list[Row]) -> bytes | None:
    """Each estimator's estimates against the true LID*: mean and 10th-90th percentile per true
    value, beside the diagonal; where an estimator's line leaves the diagonal is where its MAE
    comes from."""
    from matplotlib.figure import Figure
    lines = [r for r in rows if _true_lid(r)]  # ok LID rows: their metrics are LIDMetrics
    if not lines:
        return None
    fig = Figure(figsize=(6.4, 4.6), dpi=100)
    ax = fig.subplots()
    top = high = 0.0
    order = sorted(lines, key=lambda r: finite_number(r.metrics.mae) or math.inf)
    for i, r in enumerate(order):
        lv = _true_lid(r)
        x = [float(v.lid) + (i - (len(order) - 1) / 2) * 0.04 * max(1.0, float(lv[-1].lid)) / 10 for v in lv]
        y = [float(v.mean) for v in lv]
        err = [[max(0.0, m - float(v.q10)) for m, v in zip(y, lv)], [max(0.0, float(v.q90) - m) for m, v in zip(y, lv)]]
        label = _plot_label(r.detector) + f" (MAE {fmt_number(r.metrics.mae)})"
        ax.errorbar(x, y, yerr=err, fmt="o-" if len(lv) > 1 else "o", ms=4, lw=1.2, capsize=2,
                    color=f"C{i % 10}", label=label)
        top = max(top, max(float(v.lid) for v in lv))
        high = max(high, max(float(v.q90) for v in lv))
    ax.plot([0, top], [0, top], ls=":", color="grey", lw=1, label="estimate = LID*")
    # the truth's range sets the scale; an estimator far above it is drawn off-scale, and said so
    limit = 1.5 * top + 1.0
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), min(ax.get_ylim()[1], limit))
    if high > limit:
        ax.text(0.99, 0.99, f"off-scale above {limit:g}", transform=ax.transAxes, ha="right", va="top", fontsize=7)
    ax.set_xlabel("true LID* of the query points")
    ax.set_ylabel("estimate (mean; bars: 10th-90th percentile)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.suptitle(_plot_label(f"LID estimates: {task.name} v{task.version}"))
    fig.tight_layout()
    return _png(fig)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def render_plots(board: Board, out_dir: str | Path) -> list[Path]:
    """ROC and Pareto PNGs per memorization task instance, an estimate-against-truth PNG per LID
    task instance; records their paths on the board."""
    out = Path(out_dir)
    written: list[Path] = []
    for _, track, tasks in board.tables():
        makers = (("lid", _lid_png),) if track == "lid" else (("roc", _roc_png), ("pareto", _pareto_png))
        for t in tasks:
            insts = board.instances(t)
            for inst in insts:  # one figure per instance: curves of different instances never share axes
                rows = board.rows_for(t, ("measured", "submission"), inst.data_hash)
                slug = plot_slug(t.name, t.version) + (f"-{inst.id}" if len(insts) > 1 else "")
                for kind, maker in makers:
                    data = maker(t, rows)
                    if data is None:
                        continue
                    rel = f"{PLOTS_DIR}/{kind}-{slug}.png"
                    atomic_write_bytes(out / rel, data)
                    board.plots.setdefault((t.name, t.version, inst.data_hash), {})[kind] = rel
                    written.append(out / rel)
    stale = [p for p in (out / PLOTS_DIR).glob("*.png")
             if p not in written and re.match(r"^(roc|pareto|lid)-.*\.png$", p.name)] if (out / PLOTS_DIR).is_dir() else []
    for p in stale:
        p.unlink()
    return written

