"""``mmh-bench show TASK``: what a task contains, printed and drawn.

Builds the task (or loads it from the cache), prints its summary (sizes, label balance per
subtype, spec hash, null copy rate, and the table of positives by designed source and subtype)
and, with ``--out``, writes a PNG: the samples in 2-D (raw coordinates when
D = 2, else a PCA projection fitted on training set and samples) coloured by label and subtype,
next to the histogram of LID* per label. ``--export DIR`` also saves the training set and the
labelled samples as an Arrow ``DatasetDict`` (``datasets.load_from_disk(DIR)``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmh_bench.task.subtypes import SUBTYPES
from .options import add_options

import numpy as np

_COLOURS = {0: "#4C72B0", 1: "#C44E52", 2: "#DD8452", 3: "#8172B3", 4: "#937860"}
#: subtype code -> (legend name, colour)
STYLE = {code: ("not memorized" if code == 0 else f"{name} copy", _COLOURS[code]) for code, name in SUBTYPES.items()}
MAX_POINTS = 20000  # per layer drawn; larger sets are subsampled deterministically


def task_summary(inst: Any) -> dict[str, Any]:
    """The instance summary plus the figures only some builds carry (null copy rate, C_T)."""
    out = dict(inst.summary())
    out["instance"] = inst.instance_info()
    for key in ("null_copy_rate", "labelling", "composition", "copying", "n_classes", "sampler",
                "source", "manifolds"):
        if key in inst.meta:
            out[key] = inst.meta[key]
    lid = inst.lid_star
    if lid is not None and inst.labels is None:
        vals, counts = np.unique(lid, return_counts=True)
        out["lid_star_counts"] = {f"{v:g}": int(c) for v, c in zip(vals, counts)}
    return out


def _project(inst: Any) -> tuple[np.ndarray, np.ndarray | None, str]:
    """2-D coordinates of samples and training points: raw when D <= 2, else PCA.

    The PCA is fitted on the training set when there is one, so a few wild samples cannot turn
    the picture.
    """
    x = inst.samples.reshape(len(inst.samples), -1)
    train = inst.arrays.get("train")
    train = train.reshape(len(train), -1) if train is not None else None
    if x.shape[1] == 2:
        return x, train, "x1 / x2"
    if x.shape[1] == 1:
        pad = np.zeros((len(x), 1), dtype=x.dtype)
        return (np.hstack([x, pad]), None if train is None else
                np.hstack([train, np.zeros((len(train), 1), dtype=x.dtype)]), "x1")
    from sklearn.decomposition import PCA
    pool = x if train is None else train
    pca = PCA(n_components=2, random_state=0).fit(pool[_thin(len(pool))])
    ev = pca.explained_variance_ratio_
    return (pca.transform(x), None if train is None else pca.transform(train),
            f"PCA 1 / PCA 2 of the {'training set' if train is not None else 'samples'} "
            f"({100 * ev[0]:.0f}% + {100 * ev[1]:.0f}% of variance)")


def _view(xy: np.ndarray, train_xy: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Axis limits covering the training set (or the bulk of the samples) with a margin."""
    ref = train_xy if train_xy is not None else xy
    lo, hi = np.quantile(ref, 0.0 if train_xy is not None else 0.005, axis=0), \
        np.quantile(ref, 1.0 if train_xy is not None else 0.995, axis=0)
    pad = 0.15 * np.maximum(hi - lo, 1e-6)
    return lo - pad, hi + pad


def _thin(n: int) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, MAX_POINTS, replace=False))


def draw(inst: Any, path: str | Path) -> Path:
    """Write the task's picture (scatter/projection + LID* histogram) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(11, 4.6), dpi=110)
    FigureCanvasAgg(fig)
    ax, hx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    xy, train_xy, axis_name = _project(inst)
    if train_xy is not None:
        keep = _thin(len(train_xy))
        ax.scatter(train_xy[keep, 0], train_xy[keep, 1], s=3, c="#BBBBBB", marker="x", lw=0.5,
                   label="training points", zorder=1)
    lid = inst.lid_star
    if inst.labels is not None:
        sub = inst.subtype if inst.subtype is not None else inst.labels.astype(np.int8)
        for code, (name, colour) in STYLE.items():
            rows = np.flatnonzero(sub == code)
            if len(rows) == 0:
                continue
            rows = rows[_thin(len(rows))]
            ax.scatter(xy[rows, 0], xy[rows, 1], s=4 if code == 0 else 10, c=colour, alpha=0.6 if code == 0 else 0.9,
                       label=f"{name} ({int((sub == code).sum())})", zorder=2 + (code > 0))
        if lid is not None:
            codes = [c for c in STYLE if (sub == c).any()]
            top = float(np.nanmax(lid)) if len(lid) else 1.0
            hx.hist([lid[sub == c] for c in codes], bins=np.arange(-0.5, top + 1.5, 1.0),
                    color=[STYLE[c][1] for c in codes],
                    label=[f"{STYLE[c][0]} ({int((sub == c).sum())})" for c in codes])
            hx.set_yscale("log")
            hx.legend(fontsize=8)
        hx.set_title("LID* of the nearest training point, per label and subtype", fontsize=10)
    elif lid is not None:
        keep = _thin(len(xy))
        pts = ax.scatter(xy[keep, 0], xy[keep, 1], s=4, c=lid[keep], cmap="viridis", zorder=2)
        fig.colorbar(pts, ax=ax, label="LID*")
        top = float(np.nanmax(lid)) if len(lid) else 1.0
        hx.hist(lid, bins=np.arange(-0.5, top + 1.5, 1.0), color=STYLE[0][1])
        hx.set_title("LID* of the query points", fontsize=10)
    hx.set_xlabel("LID*")
    hx.set_ylabel("count")
    lo, hi = _view(xy, train_xy)
    outside = int((~((xy >= lo) & (xy <= hi)).all(axis=1)).sum())
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel(axis_name + (f"; {outside} samples outside the view" if outside else ""), fontsize=9)
    ax.legend(fontsize=7, markerscale=2, loc="best")
    title = f"{inst.spec.name} v{inst.spec.version}  (spec {inst.spec.hash})"
    if "null_copy_rate" in inst.meta:
        title += f"  null copy rate {inst.meta['null_copy_rate']:.3%}"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def composition_table(rows: list[dict[str, Any]]) -> str:
    """Positives by designed source x subtype: anyone can audit what the labels count."""
    from tabulate import tabulate
    head = {"source": "source (designed role)", "samples_nearest": "samples nearest", "DD": "DD",
            "OD": "OD", "chance_copies": "chance copies (label 0)"}
    return tabulate([[r[k] for k in head] for r in rows], headers=list(head.values()), tablefmt="simple")


def _format(summary: dict[str, Any]) -> str:
    lines = []
    table = summary.pop("composition", None)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        lines.append(f"{key:>22}: {value}")
    if table:
        lines += ["", "positives by source and subtype (nearest training point's source):",
                  composition_table(table)]
    return "\n".join(lines)


def _cmd_show(args: argparse.Namespace) -> int:
    from mmh_bench.task.build import build_task
    from mmh_bench.registry import get_task

    spec = get_task(args.task)
    inst = build_task(spec, args.cache, progress=not args.quiet)
    summary = task_summary(inst)
    if args.out:  # a picture only when asked for: the command writes nothing else
        summary["picture"] = str(draw(inst, Path(args.out)))
    if args.export:
        from mmh_bench.task.data.export import save_instance
        summary["export"] = str(save_instance(inst, args.export))
    print(json.dumps(summary, indent=2) if args.json else _format(summary))
    return 0


def register(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "show", help="print a task's summary and draw its samples",
        description="Build (or load) a task, print its summary (sizes, label balance per subtype, "
                    "spec hash, null copy rate, positives by designed source and subtype) and, with "
                    "--out, write a PNG: samples coloured by label and "
                    "subtype (2-D scatter or PCA projection) and the histogram of LID* per label.")
    s.add_argument("task", help="task name or path to a .toml spec")
    s.add_argument("--out", default=None, metavar="PNG", help="also draw the samples into this PNG file")
    s.add_argument("--export", default=None, metavar="DIR",
                   help="also save the training set and labelled samples as an Arrow DatasetDict in DIR")
    add_options(s, "cache")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_options(s, "quiet")
    s.set_defaults(func=_cmd_show)
