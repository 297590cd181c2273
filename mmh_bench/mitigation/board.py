"""The mitigation section of the board: per task, a table and a memorization-vs-quality Pareto plot.

Each mitigator contributes one curve over the settings of its sweep; the unmitigated generation
is the reference point. Rows are read from ``<results>/<task>/v<ver>/<instance>/*.json``
(each validated as :class:`MitigationResult` before it is shown); only one instance's rows share a
table, as on the detection board. Submitted mitigators (``leaderboard/submissions/<entry>/``, kind
mitigator) join their task's table and plot, marked submitted and verified or not. Stable
Diffusion tasks' tables carry MemBench's scores instead of the k-NN quality (copied share, mean
max SSCD, CLIP score as the quality axis). The published
mitigation protocols have no single numbers to set beside ours; they are listed as "reported
protocol" notes.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from mmh_bench.common.paths import canonical_relpath
from .columns import LEAD, MEMBENCH, MitigationRow, columns, kind_of
from .result import MitigationResult, read_mitigation_result

#: the papers' protocols (../shared/data/published/README.md, section G), as notes beside the tables
REPORTED_PROTOCOLS = [
    ("MemBench (Hong, Oh, Sung)", "10 images per prompt, 50 DDIM steps, guidance 7.5; max SSCD to the "
     "ground-truth images, share above 0.5, CLIP and aesthetic scores; no leaderboard"),
    ("Jeon et al., ICML 2025 (SAIL)", "454 (v1.4) / 202 (v2.0) prompts with retrievable training images, "
     "5 generations per prompt, SSCD and CLIP; random tokens {1,2,4,6,8}, Ren's C {1.1,1.2,1.25,1.3,1.5}, "
     "Wen's target loss 1-5; curves, not single numbers"),
    ("Wen et al., ICLR 2024", "prompt embedding optimised to lower ||eps_c - eps_u|| (target loss 3 in "
     "their README)"),
    ("Ross et al., ICLR 2025 (MMH)", "prompt embedding optimised at DDIM step 40 of 50 to raise FLIPD "
     "(lr 0.05, 20 iterations), or at step 0 to lower the CFG norm; then regenerated"),
]


def scan(results: str | Path) -> tuple[list[tuple[Path, MitigationResult]], list[tuple[Path, str]]]:
    """Every ``<task>/v<version>/<instance>/*.json`` under ``results``: (path, result) of the valid
    ones, (path, reason) of the rejected."""
    accepted, rejected = [], []
    for path in sorted(Path(results).glob(str(canonical_relpath("*", "*", "*", "*")))):
        try:
            accepted.append((path, read_mitigation_result(path)))
        except ValueError as exc:
            rejected.append((path, str(exc)))
    return accepted, rejected


def submitted(submissions: str | Path) -> tuple[list[MitigationResult], list[tuple[Path, str]]]:
    """The results of every mitigator entry under ``submissions`` (``mmh-bench submit --kind
    mitigator``), each renamed ``<mitigator> [submitted: <entry>, verified|unverified]`` so its
    curve stands apart from a shipped one of the same name; and the rejected files. An entry is
    *verified* while its verification.json vouches for these very bytes, as on the detection board."""
    from mmh_bench.leaderboard.board.collect import entry_verified
    from mmh_bench.leaderboard.schema import SchemaError, SubmissionMeta, read_json, validate_model
    out: list[MitigationResult] = []
    rejected: list[tuple[Path, str]] = []
    root = Path(submissions)
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []:
        try:
            meta = validate_model(SubmissionMeta, read_json(folder / "metadata.json"))
        except SchemaError as exc:
            rejected.append((folder / "metadata.json", str(exc)))
            continue
        if meta.kind != "mitigator" or meta.name != folder.name or folder.is_symlink():
            continue  # a detector's entry (the detection board's), or one the detection board rejects
        accepted, bad = scan(folder / "results")
        rejected += bad
        mine = [(p, r) for p, r in accepted if r.mitigator == meta.detector]
        rejected += [(p, f"mitigator {r.mitigator!r} is not the entry's {meta.detector!r}")
                     for p, r in accepted if r.mitigator != meta.detector]
        verified = entry_verified(folder, meta, [(p, p.relative_to(folder)) for p, _ in mine], [])
        tag = f" [submitted: {meta.name}, {'verified' if verified else 'unverified'}]"
        out += [r.model_copy(update={"mitigator": r.mitigator + tag}) for _, r in mine]
    return out, rejected


def collect(results: str | Path, submissions: str | Path | None = None
            ) -> tuple[dict[tuple[str, str, str], list[MitigationResult]], list[str]]:
    """Valid mitigation results, the measured ones and the submitted ones (``submissions``, by
    default ``submissions/`` beside the results folder), grouped by (task, version, instance id);
    and the rejected files."""
    groups: dict[tuple[str, str, str], list[MitigationResult]] = defaultdict(list)
    accepted, rejected = scan(results)
    subs, bad = submitted(Path(results).parent / "submissions" if submissions is None else submissions)
    for res in [r for _, r in accepted] + subs:
        groups[(res.task, res.task_version, res.instance.id)].append(res)
    return dict(groups), [f"{path}: {why}" for path, why in rejected + bad]


def _quality(res: MitigationResult) -> float | None:
    """The quality axis: precision (share on the data manifold) times condition accuracy; on
    Stable Diffusion tasks, the CLIP score."""
    m = res.metrics
    if m is not None and m.membench is not None:
        return m.membench.clip_score
    if m is None or m.precision is None:
        return None
    return m.precision * (m.condition_accuracy if m.condition_accuracy is not None else 1.0)


def _membench(rows: list[MitigationResult]) -> bool:
    """Whether the rows are a Stable Diffusion task's, scored by MemBench's protocol."""
    return kind_of(rows) == MEMBENCH


def _setting_key(r: MitigationResult) -> tuple:
    """Settings in numeric order (1, 2, 5, 10, not 1, 10, 2, 5); the unswept row first."""
    v = r.setting
    if v is None:
        return (0, 0.0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, float(v), "")
    return (2, 0.0, str(v))


def _row_order(r: MitigationResult) -> tuple:
    return (r.mitigator != "none", r.mitigator, _setting_key(r))


def setting_labels(rows: list[MitigationResult]) -> dict[int, str]:
    """``swept=value`` for each row (by ``id``); a sweep with float settings prints them all to the
    same number of decimals (0.25, 0.50, 1.00), an integer sweep as integers."""
    import numpy as np
    decimals: dict[str, int] = {}
    for r in rows:
        if isinstance(r.setting, float):
            frac = np.format_float_positional(r.setting, trim="0").partition(".")[2]
            decimals[r.mitigator] = max(decimals.get(r.mitigator, 1), len(frac))

    def text(r: MitigationResult) -> str:
        v = r.setting
        if r.mitigator in decimals and isinstance(v, (int, float)) and not isinstance(v, bool):
            return f"{float(v):.{decimals[r.mitigator]}f}"
        return str(v)
    return {id(r): "" if r.setting is None else f"{r.swept}={text(r)}" for r in rows}


Cell = tuple[str, "float | None"]


def table_cells(rows: list[MitigationResult]) -> list[tuple[MitigationResult, list[Cell]]]:
    """One row per (mitigator, setting), in board order: each result with its (text, sort value)
    cells under :func:`headers` (rate with interval, rates per subtype, quality, cost; a failed
    row says so and its error)."""
    base = next((r for r in rows if r.mitigator == "none" and r.metrics is not None), None)
    base_nfe = base.cost.nfe_per_sample if base and base.cost else None
    cols = columns(kind_of(rows))
    labels = setting_labels(rows)
    out = []
    for r in sorted(rows, key=_row_order):
        lead: list[Cell] = [(r.mitigator, None), (labels[id(r)], _setting_key(r)[1])]
        if r.status != "ok" or r.metrics is None or r.cost is None:
            out.append((r, lead + [("failed", None), *[("", None)] * (len(cols) - 2), ((r.error or "")[:80], None)]))
            continue
        row = MitigationRow(r, base_nfe)
        out.append((r, lead + [c.cell(row) for c in cols]))
    return out


def table_rows(rows: list[MitigationResult]) -> list[list[str]]:
    """The cells' text of :func:`table_cells`."""
    return [[text for text, _ in cells] for _, cells in table_cells(rows)]


def headers(rows: list[MitigationResult]) -> list[str]:
    return [*LEAD, *(c.head for c in columns(kind_of(rows)))]


#: what the section says of Stable Diffusion tasks, when it has any
MEMBENCH_NOTE = ("On Stable Diffusion tasks (MemBench's protocol) the memorized prompts' generations are "
                 "decoded and compared by SSCD with the prompts' ground-truth training images: \"copied\" is "
                 "the share whose largest similarity exceeds 0.5, and quality is the CLIP score of image and "
                 "prompt (100 x cosine, clipped at 0).")


#: what the section says first, in MITIGATION.md and on the board's page
INTRO = ("Each task's generations regenerated under each mitigator from the same conditions and "
         "initial noises, labelled by the task's own copy rule. Quality: precision and recall "
         "against held-out draws (k-NN manifolds), and the share a k-NN classifier on the training "
         "set assigns to the class the condition asks for. Lower memorized and higher quality is "
         "better; curves run over each mitigator's settings.")


def render_markdown(results: str | Path, plots_dir: Path | None = None) -> str:
    """The mitigation section as Markdown (with a Pareto plot per task when ``plots_dir`` is given)."""
    from tabulate import tabulate
    groups, rejected = collect(results)
    if not groups:
        return ""
    lines = ["## Mitigation", "", INTRO, ""]
    if any(_membench(rows) for rows in groups.values()):
        lines += [MEMBENCH_NOTE, ""]
    written: set[Path] = set()
    for (task, version, inst), rows in sorted(groups.items()):
        lines += [f"### {task} v{version} ({inst})", ""]
        if plots_dir is not None:
            png = pareto_plot(rows, Path(plots_dir) / plot_name(task, inst), title=f"{task} ({inst})")
            if png is not None:
                written.add(png)
                lines += [f"![memorization vs quality, {task}]({Path(plots_dir).name}/{png.name})", ""]
        heads = headers(rows)  # cells are formatted here (uniform decimals); tabulate only aligns them
        lines += [tabulate(table_rows(rows), headers=heads, tablefmt="github", disable_numparse=True,
                           colalign=("left", "left", *["right"] * (len(heads) - 2))), ""]
    if plots_dir is not None and Path(plots_dir).is_dir():  # plots of instances no longer in the store
        for stale in Path(plots_dir).glob("mitigation-*.png"):
            if stale not in written:
                stale.unlink()
    lines += ["Reported protocols (no single published numbers exist to set beside these):", ""]
    lines += [f"- {name}: {text}" for name, text in REPORTED_PROTOCOLS]
    if rejected:
        lines += ["", f"{len(rejected)} mitigation file(s) rejected: " + "; ".join(rejected[:5])]
    return "\n".join(lines) + "\n"


def plot_name(task: str, inst: str) -> str:
    """The file name of an instance's Pareto plot in the board's plots folder."""
    return f"mitigation-{task}-{inst}.png"


def render_html(results: str | Path, plots_dir: str | Path | None = None) -> str:
    """The same tables as HTML, sortable on the board's page (a body per mitigator: sorting by a
    column orders a mitigator's settings; every value escaped), each with its Pareto plot where
    ``plots_dir`` (the page's ``plots/``) holds one."""
    from mmh_bench.leaderboard.board.page import h, sort_heads, td
    groups, _ = collect(results)
    parts = []
    for (task, version, inst), rows in sorted(groups.items()):
        cols = columns(kind_of(rows))
        heads = sort_heads([(LEAD[0], "text", "ascending"), (LEAD[1], "num", "ascending")]
                           + [(c.head, "num", "descending" if c.higher_is_better else "ascending") for c in cols])
        bodies: dict[str, str] = {}
        for r, cells in table_cells(rows):
            tds = "".join(td(text, v, "t" if i == 0 else "") for i, (text, v) in enumerate(cells))
            bodies[r.mitigator] = bodies.get(r.mitigator, "") + (
                f'<tr class="entry" data-access="{h(r.access.replace("+", " "))}">{tds}</tr>')
        body = "".join(f'<tbody class="measured" data-group="{h(name)}">{b}</tbody>' for name, b in bodies.items())
        anchor = "m-" + re.sub(r"[^a-z0-9-]+", "-", f"{task}-v{version}-{inst}".lower()).strip("-")
        png = Path(plots_dir) / plot_name(task, inst) if plots_dir is not None else None
        fig = (f'<figure><img src="{h(png.parent.name)}/{h(png.name)}" alt="memorization against quality on '
               f'{h(task)}" loading="lazy"><figcaption>memorization against quality: {h(task)} ({h(inst)})'
               "</figcaption></figure>" if png is not None and png.is_file() else "")
        parts.append(f'<h3 id="{h(anchor)}">{h(task)} v{h(version)} ({h(inst)})</h3>'
                     f'<table class="board mitigation" id="{h(anchor)}-table" data-track="mitigation">'
                     f"<thead><tr>{heads}</tr></thead>{body}</table>{fig}")
    return "\n".join(parts)


def page_section(results: str | Path, plots_dir: str | Path | None = None) -> tuple[str, str, str] | None:
    """The mitigation track as a section of the board's page (anchor, title, HTML); None without
    results. The plots are the ones ``mmh-bench mitigate`` wrote into ``plots_dir``."""
    from mmh_bench.leaderboard.board.page import h
    tables = render_html(results, plots_dir)
    if not tables:
        return None
    return ("mitigation", "Mitigation track", f'<p class="muted">{h(INTRO)} Plots and the published '
            f'protocols: <a href="MITIGATION.md">MITIGATION.md</a>.</p>{tables}')


def pareto_plot(rows: list[MitigationResult], out: Path, title: str = "") -> Path | None:
    """Memorized share (x) against quality (y), one curve per mitigator over its settings."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curves: dict[str, list[tuple[float, float, Any]]] = defaultdict(list)
    for r in rows:
        q = _quality(r)
        if r.status == "ok" and r.metrics is not None and q is not None:
            curves[r.mitigator].append((r.metrics.memorization.rate, q, _setting_key(r)))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, pts in sorted(curves.items()):
        pts.sort(key=lambda p: p[2])
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if name == "none":
            ax.scatter(xs, ys, marker="*", s=160, color="black", zorder=5, label="none (unmitigated)")
        else:
            ax.plot(xs, ys, marker="o", label=name)
    membench = _membench(rows)
    ax.set_xlabel(("copied share (max SSCD > 0.5)" if membench else "memorized share of generations")
                  + " (lower is better)")
    ax.set_ylabel(("CLIP score" if membench else "precision x condition accuracy") + " (higher is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary_json(results: str | Path) -> list[dict[str, Any]]:
    """Every valid row as plain JSON (for benchmarks and notes)."""
    groups, _ = collect(results)
    return [json.loads(r.model_dump_json()) for rows in groups.values() for r in rows]
