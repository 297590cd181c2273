"""Rendering the leaderboard: ``README.md`` (Markdown via tabulate), ``index.html`` and PNG plots.

Three kinds of row, never mixed up:

- **measured**: results in the store (``leaderboard/results``), produced by the evaluator;
- **submission**: third-party entries under ``leaderboard/submissions/<name>/`` produced by
  ``mmh-bench submit`` with the same evaluator, marked *verified* only while a
  ``verification.json`` from ``mmh-bench verify`` matches every result file byte for byte;
- **reported**: numbers published in papers (``leaderboard/reported/*.json``), shown in their
  own section / table body marked "reported, not re-measured", never ranked with the others.

Rankings never cross two boundaries: the task *instance* (its data hash: a dev and a test build
of one task get a table each) and the detector *group* (:data:`GROUP_ORDER`). Numbers are printed
only where they mean something: a TPR@FPR the negatives cannot resolve and a subtype AUROC on
fewer than :data:`MIN_SUBTYPE_POS` positives are replaced by a marker whose reason is printed
under the table, and an interval has its point's precision.

Every file is validated first (:mod:`mmh_bench.schema`); a rejected file is logged and left out,
and never changes how the accepted ones render. Every string from a file is escaped: with
``html.escape`` in the page, and as text (HTML entities plus Markdown punctuation) in Markdown.
The page is one self-contained file: inline CSS and vanilla JS (no CDN), pinned by a
Content-Security-Policy hash, so it works offline and an injected script could not run.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import logging
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from scipy.stats import rankdata
from tabulate import tabulate

from .io import atomic_write_bytes, atomic_write_text, sha256_file
from .metrics import MIN_EXPECTED_FP, tpr_resolvable
from .provenance import hardware_label
from .results import (Rejected, TaskCatalog, group_of, instance_of, iter_json_files, known_tasks,
                      scan_results)
from .schema import (ReportedFile, SchemaError, SubmissionMeta, Verification, read_json,
                     validate_model)
from .spec import TaskSpec

log = logging.getLogger(__name__)

#: Table order and titles: one table per task family (the "track" a reader picks).
FAMILIES = {"synthetic": "Synthetic manifolds", "lid": "LID estimation", "image": "Real images",
            "text-to-image": "Text-to-image", "stable-diffusion": "Stable Diffusion"}
ACCESS_FLAGS = ("samples", "model", "model_cond", "train_data")
SUBTYPES = ("DD", "OD", "VM", "TM")
KIND_LABEL = {"measured": "measured", "submission": "submission",
              "reported": "reported, not re-measured"}
PLOTS_DIR = "plots"


# -- the board's content ------------------------------------------------------------------------
#: Display order of detector groups; a ranking never crosses a group. ``chance`` (the random
#: floor) is its own group, last in each table; ``shortcut`` rows render apart with GROUP_NOTE.
GROUP_ORDER = ("reference", "model-side", "sample-side", "training-set oracle", "shortcut", "chance")
GROUP_NOTE = ("Shortcut baselines exploit what the public spec says about a dev instance (for example "
              "where its duplicates are placed); they show what a test instance has to hide, and "
              "are ranked only among themselves.")
#: below this many positives of a subtype the board prints the count, not an AUROC
MIN_SUBTYPE_POS = 20


@dataclass
class Row:
    """One line of a table, whatever file it came from."""

    kind: str  # "measured" | "submission" | "reported"
    task: str
    version: str
    family: str
    track: str
    detector: str
    access: str | None
    reference: bool = False
    group: str = ""
    instance: str = ""  # the instance's data hash ("" for reported rows: not measured on one)
    status: str = "ok"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] | None = None
    roc: dict[str, list[float]] | None = None
    hardware: str = ""
    submission: str = ""
    authors: list[str] = field(default_factory=list)
    url: str = ""
    verified: bool = False
    citation: str = ""
    notes: str = ""
    model: str = ""
    detector_note: str = ""

    @property
    def flags(self) -> list[str]:
        return [] if self.access is None else self.access.split("+")

    @property
    def auroc(self) -> float | None:
        return _num(self.metrics.get("auroc"))


@dataclass
class InstanceFacts:
    """One built instance of a task (its data hash); its own sizes and task-level statistics."""

    id: str
    kind: str
    data_hash: str
    n_samples: int | None = None
    n_memorized: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # the results' task_stats (C_T, null copy rate)

    def fact_parts(self, with_id: bool = True) -> list[str]:
        parts = []
        if self.n_samples is not None:
            parts.append(f"{self.n_samples} samples")
        if self.n_memorized is not None:
            parts.append(f"{self.n_memorized} memorized")
        ct = _num(self.stats.get("data_copying_ct"))
        if ct is not None:
            parts.append(f"C_T {ct:+.2f} (held-out {self.stats.get('n_heldout')}, "
                         f"{self.stats.get('ct_cells_used')} cells; < 0: samples closer to the "
                         "training set than fresh data)")
        null = _num(self.stats.get("null_copy_rate"))
        if null is not None:
            parts.append(f"null copy rate {null:.1%}")
        return parts + ([f"instance {self.id} ({self.kind})"] if with_id else [])


@dataclass
class TaskFacts:
    name: str
    version: str
    family: str
    track: str
    hash: str = ""
    description: str = ""
    instances: dict[str, InstanceFacts] = field(default_factory=dict)  # data hash -> facts

    def fact_parts(self) -> list[str]:
        """The task's one-line facts as plain text (callers escape for Markdown or HTML)."""
        return [f"family {self.family}"] + ([f"spec hash {self.hash}"] if self.hash else [])


@dataclass
class Board:
    rows: list[Row] = field(default_factory=list)
    tasks: dict[tuple[str, str], TaskFacts] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    #: (task, version, instance data hash) -> {"roc": relative path, "pareto": relative path}
    plots: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)

    def tables(self) -> list[tuple[str, str, list[TaskFacts]]]:
        """(family, track, tasks) in display order; one section per family and track."""
        groups: dict[tuple[str, str], list[TaskFacts]] = defaultdict(list)
        for key in sorted(self.tasks):
            t = self.tasks[key]
            groups[(t.family, t.track)].append(t)
        order = list(FAMILIES)
        return [(fam, tr, ts) for (fam, tr), ts in
                sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order
                                                       else len(order), kv[0][0], kv[0][1]))]

    def rows_for(self, task: TaskFacts, kinds: Iterable[str], instance: str | None = None) -> list[Row]:
        """The task's rows of these kinds; with ``instance`` (a data hash), only that instance's."""
        kinds = set(kinds)
        return [r for r in self.rows if (r.task, r.version) == (task.name, task.version)
                and r.kind in kinds and (instance is None or r.instance == instance)]

    def instances(self, task: TaskFacts) -> list[InstanceFacts]:
        """The task's instances in display order: test first, then by rows measured, then id.
        The first is the one the overview uses."""
        count = defaultdict(int)
        for r in self.rows_for(task, ("measured",)):
            count[r.instance] += 1
        return sorted(task.instances.values(), key=lambda i: (i.kind != "test", -count[i.data_hash], i.id))

    def hardware(self) -> list[str]:
        return sorted({r.hardware for r in self.rows if r.hardware})


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _row_from_result(doc: dict[str, Any], kind: str) -> Row:
    hw = (doc.get("provenance") or {}).get("hardware")
    return Row(kind=kind, task=doc["task"], version=str(doc["task_version"]),
               family=doc.get("task_family", "synthetic"), track=doc.get("track", "memorization"),
               detector=doc["detector"], access=doc.get("access", "samples"),
               reference=bool(doc.get("reference")), group=group_of(doc),
               instance=instance_of(doc)["data_hash"], status=doc["status"], error=doc.get("error"),
               metrics=doc.get("metrics") or {}, cost=doc.get("cost"), roc=doc.get("roc"),
               hardware=hardware_label(hw) if hw else "", detector_note=doc.get("detector_note") or "")


def board_from_results(results: list[dict[str, Any]], tasks: TaskCatalog | None = None) -> Board:
    """A board of measured rows only, from result documents that were already validated."""
    board = Board()
    for doc in results:
        _add_result(board, doc, "measured", tasks or {})
    return board


def _add_result(board: Board, doc: dict[str, Any], kind: str, tasks: TaskCatalog) -> Row:
    row = _row_from_result(doc, kind)
    board.rows.append(row)
    key = (row.task, row.version)
    if key not in board.tasks:
        spec = tasks.get(row.task)
        board.tasks[key] = TaskFacts(row.task, row.version, row.family, row.track, doc.get("task_hash", ""),
                                     description=spec.description if spec is not None else "")
    known = board.tasks[key].instances
    if row.instance not in known or (known[row.instance].n_samples is None and doc.get("n_samples")):
        inst = instance_of(doc)
        known[row.instance] = InstanceFacts(inst["id"], inst["kind"], inst["data_hash"], doc.get("n_samples"),
                                            doc.get("n_memorized"), dict(doc.get("task_stats") or {}))
    return row


# -- collecting the store -----------------------------------------------------------------------
def _sha_tree(paths: Iterable[tuple[Path, Path]]) -> dict[str, str]:
    return {str(rel): sha256_file(p) for p, rel in paths}


def _load_submission(folder: Path, tasks: TaskCatalog, rejected: list[Rejected]
                     ) -> tuple[SubmissionMeta, list[dict[str, Any]], bool] | None:
    meta_path = folder / "metadata.json"
    try:
        meta = validate_model(SubmissionMeta, read_json(meta_path))
        if meta.name != folder.name:
            raise SchemaError(f"field 'name': {meta.name!r} differs from the folder name {folder.name!r}", "name")
    except SchemaError as exc:
        rejected.append(Rejected(meta_path, f"{exc} (the whole submission is left out)", exc.field))
        return None
    res_dir = folder / "results"
    if not res_dir.is_dir():
        rejected.append(Rejected(res_dir, "submission has no results folder"))
        return None
    scan = scan_results(res_dir, tasks=tasks)
    rejected += scan.rejected
    docs, files = [], []
    for path, doc in scan.accepted:
        if doc["detector"] != meta.detector:
            rejected.append(Rejected(path, f"field 'detector': {doc['detector']!r} is not the submission's "
                                           f"detector {meta.detector!r}", "detector"))
            continue
        docs.append(doc)
        files.append((path, path.relative_to(folder)))
    return meta, docs, _verified(folder, meta, files, rejected)


def _verified(folder: Path, meta: SubmissionMeta, files: list[tuple[Path, Path]],
              rejected: list[Rejected]) -> bool:
    """True while verification.json vouches for exactly these bytes (results and detector code)."""
    path = folder / "verification.json"
    if not path.exists():
        return False
    try:
        ver = validate_model(Verification, read_json(path))
    except SchemaError as exc:
        rejected.append(Rejected(path, str(exc), exc.field))
        return False
    code_sha = None
    target = meta.detector_ref.rsplit(":", 1)[0]
    if target.endswith(".py"):
        code = folder / target
        inside = code.resolve().parent == folder.resolve() and code.is_file() and not code.is_symlink()
        code_sha = sha256_file(code) if inside else "missing"
    return (ver.ok and ver.name == meta.name and ver.detector_sha256 == meta.detector_sha256 == code_sha
            and bool(files) and ver.files == _sha_tree(files))


def _load_reported(reported_dir: Path, tasks: TaskCatalog, rejected: list[Rejected]) -> list[Row]:
    rows: list[Row] = []
    seen: dict[tuple[str, str, str, str], Path] = {}
    for path in iter_json_files(reported_dir):
        try:
            doc = validate_model(ReportedFile, read_json(path))
            for i, e in enumerate(doc.entries):
                if e.task not in tasks:
                    raise SchemaError(f"field 'entries.{i}.task': unknown task {e.task!r} "
                                      "(not in the task registry)", f"entries.{i}.task")
        except SchemaError as exc:
            rejected.append(Rejected(path, str(exc), exc.field))
            continue
        for i, e in enumerate(doc.entries):
            key = (e.task, e.detector, e.model or "", e.citation)
            if key in seen:
                rejected.append(Rejected(path, f"field 'entries.{i}': repeats an entry of {seen[key]} "
                                               "(kept there)", f"entries.{i}"))
                continue
            seen[key] = path
            spec = tasks[e.task]
            rows.append(Row(kind="reported", task=e.task, version=spec.version, family=spec.family,
                            track=spec.track, detector=e.detector, access=e.access,
                            metrics=e.metrics.model_dump(by_alias=True, exclude_none=True),
                            citation=e.citation, url=e.url, notes=e.protocol_notes, model=e.model or ""))
    return rows


def _claim(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    return doc["task"], str(doc["task_version"]), instance_of(doc)["data_hash"], doc["detector"]


def collect_board(results_dir: str | Path, *, submissions_dir: str | Path | None = None,
                  reported_dir: str | Path | None = None,
                  tasks: TaskCatalog | Iterable[TaskSpec | str | Path] | None = None) -> Board:
    """Validate the whole store and gather what the board shows.

    ``submissions_dir`` / ``reported_dir`` default to ``submissions`` / ``reported`` beside
    ``results_dir`` (the store is ``leaderboard/{results,submissions,reported}``).
    ``tasks``: extra task specs accepted besides the registry's (or a full catalog mapping).
    Precedence when two entries claim the same (task, version, instance, detector): the results
    store first (a file in its instance's folder before one at the older flat place), then
    submissions by submission date and name; the later claim is rejected. Entries on different
    instances of a task are all kept, and never ranked together.
    """
    results_dir = Path(results_dir)
    catalog: TaskCatalog = tasks if isinstance(tasks, Mapping) else known_tasks(tasks or ())
    subs = Path(submissions_dir) if submissions_dir is not None else results_dir.parent / "submissions"
    reps = Path(reported_dir) if reported_dir is not None else results_dir.parent / "reported"
    board = Board()
    scan = scan_results(results_dir, tasks=catalog)
    board.rejected += scan.rejected
    claimed: dict[tuple[str, str, str, str], str] = {}
    for path, doc in sorted(scan.accepted, key=lambda pd: (pd[0].parent.name != instance_of(pd[1])["id"],
                                                           str(pd[0]))):
        key = _claim(doc)
        if key in claimed:
            board.rejected.append(Rejected(path, f"field 'detector': {doc['detector']!r} on {doc['task']!r} "
                                                 f"instance {instance_of(doc)['id']} is already on the board "
                                                 f"from {claimed[key]} (kept there)", "detector"))
            continue
        _add_result(board, doc, "measured", catalog)
        claimed[key] = str(path)
    if subs.is_dir():
        loaded = []
        for folder in sorted(p for p in subs.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.is_symlink():
                board.rejected.append(Rejected(folder, "submission folder is a symbolic link"))
                continue
            got = _load_submission(folder, catalog, board.rejected)
            if got is not None:
                loaded.append(got)
        for meta, docs, verified in sorted(loaded, key=lambda m: (m[0].submitted, m[0].name)):
            for doc in docs:
                key = _claim(doc)
                if key in claimed:
                    board.rejected.append(Rejected(
                        subs / meta.name, f"field 'detector': {doc['detector']!r} on {doc['task']!r} is "
                                          f"already on the board from {claimed[key]} (kept there)", "detector"))
                    continue
                claimed[key] = str(subs / meta.name)
                row = _add_result(board, doc, "submission", catalog)
                row.submission, row.authors, row.url, row.verified = (meta.name, list(meta.authors),
                                                                      meta.url, verified)
    if reps.is_dir():
        for row in _load_reported(reps, catalog, board.rejected):
            board.rows.append(row)
            key = (row.task, row.version)
            if key not in board.tasks:
                spec = catalog[row.task]
                board.tasks[key] = TaskFacts(row.task, row.version, row.family, row.track, spec.hash,
                                             description=spec.description)
    return board


# -- formatting ---------------------------------------------------------------------------------
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


_MD_SPECIAL = re.compile(r"([\\`*\[\]|~])")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md(text: Any) -> str:
    """Plain text for a Markdown table cell: no HTML, no markup, no line breaks, no pipes."""
    s = "".join(" " if (ord(c) < 32 or c in "\u2028\u2029\x7f") else c for c in str(text))
    s = html.escape(s, quote=False)  # & < > become entities, shown as text
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return _MD_UNDERSCORE.sub(r"\\_", s)


def _md_url(url: str) -> str:
    return url.replace("(", "%28").replace(")", "%29").replace("|", "%7C").replace(" ", "%20")


def _source_md(r: Row) -> str:
    if r.kind == "submission":
        mark = "verified" if r.verified else "unverified"
        return f"submission [{md(r.submission)}]({_md_url(r.url)}) ({mark})"
    return "measured"


TPR_SHOWN = ("0.01", "0.001")
MEM_METRICS = ["AUROC [95% CI]", "AP"] + [f"TPR@{_pct(float(k))}FPR [95% CI]" for k in TPR_SHOWN]
LID_METRICS = ["MAE", "MSE", "concordance"]
COST_HEADERS = ["NFE/sample", "seconds"]


def _metric_heads(track: str, subtypes: list[str]) -> list[str]:
    return LID_METRICS if track == "lid" else MEM_METRICS + [f"AUROC {s}" for s in subtypes]


def _md_measured(groups: list[tuple[str, list[tuple[int | None, Row]]]], track: str, subtypes: list[str]) -> str:
    heads = (["#", "group", "detector" if track != "lid" else "estimator", "source", "access"]
             + _metric_heads(track, subtypes) + COST_HEADERS)
    out = []
    for group, ranked in groups:
        for rank, r in ranked:
            lead = [str(rank) if rank else "–", md(group), md(r.detector), _source_md(r), md(r.access or "?")]
            if r.status != "ok":
                out.append(lead + ["failed: " + md(str(r.error)[:100])] + [""] * (len(heads) - len(lead) - 1))
                continue
            c = r.cost or {}
            out.append(lead + [text for text, _ in _metric_cells(r, track, subtypes)]
                       + [_fmt(c.get("nfe_per_sample"), 1), _fmt(c.get("seconds"), 2)])
    return tabulate(out, headers=heads, tablefmt="github", disable_numparse=True)


def _md_reported(rows: list[Row], track: str) -> str:
    out = []
    for r in sorted(rows, key=lambda r: (r.detector, r.model, r.citation)):
        m = r.metrics
        vals = ([_fmt(m.get("mae")), _fmt(m.get("concordance"))] if track == "lid" else
                [_fmt(m.get("auroc")) + _interval(m.get("auroc_ci"))] + [_tpr_cell(m, k)[0] for k in TPR_SHOWN])
        out.append([md(r.detector), md(r.model or "–"), md(r.access or "?")] + vals +
                   [f"[{md(r.citation)}]({_md_url(r.url)})", md(r.notes or "–")])
    heads = (["detector", "model", "access"] +
             (["MAE", "concordance"] if track == "lid" else ["AUROC"] + [f"TPR@{_pct(float(k))}FPR" for k in TPR_SHOWN]) +
             ["source", "protocol notes"])
    return tabulate(out, headers=heads, tablefmt="github", disable_numparse=True)


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


def _mean_ranks(track: str, tasks: list[TaskFacts], rows: dict[tuple[str, str], list[Row]]
                ) -> dict[str, tuple[float, int]]:
    """detector -> (mean within-group rank, tasks ranked): on each task, the group's members with a
    value are ranked (1 = best, ties share the average rank); the mean runs over the tasks the
    detector has a rank on, so a detector's own task set never changes another's scale."""
    key, sign = ("mae", 1.0) if track == "lid" else ("auroc", -1.0)
    ranks: dict[str, list[float]] = defaultdict(list)
    for t in tasks:
        by: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for r in rows[(t.name, t.version)]:
            v = _num(r.metrics.get(key)) if r.status == "ok" else None
            if v is not None:
                by[r.group].append((r.detector, sign * v))
        for members in by.values():
            for (d, _), rk in zip(members, rankdata([v for _, v in members])):
                ranks[d].append(float(rk))
    return {d: (sum(v) / len(v), len(v)) for d, v in ranks.items()}


def overview(board: Board, track: str, *, shortcut: bool = False) -> tuple[list[str], list[list[str]]]:
    """One matrix per track, detector x task: AUROC (memorization) or MAE (LID) of the measured rows
    on each task's first instance (:meth:`Board.instances`: the test instance when there is one).

    Rows are grouped (:data:`GROUP_ORDER`) and ordered within a group by mean within-group rank
    (:func:`_mean_ranks`), with the number of tasks that mean covers; ``shortcut`` selects the
    shortcut group alone (rendered apart). The last rows give the task's C_T (memorization) and
    the instance each column uses."""
    tasks = [t for _, tr, ts in board.tables() if tr == track for t in ts if board.rows_for(t, ("measured",))]
    chosen = {(t.name, t.version): board.instances(t)[0] for t in tasks}
    rows = {k: [r for r in board.rows_for(board.tasks[k], ("measured",), chosen[k].data_hash)
                if (r.group == "shortcut") == shortcut] for k in chosen}
    tasks = [t for t in tasks if rows[(t.name, t.version)]]
    if not tasks:
        return _overview_heads(track, []), []
    cells: dict[str, dict[tuple[str, str], str]] = defaultdict(dict)
    group: dict[str, str] = {}
    for t in tasks:
        for r in rows[(t.name, t.version)]:
            group[r.detector] = r.group
            cells[r.detector][(t.name, t.version)] = _fmt(r.metrics.get("mae" if track == "lid" else "auroc")) \
                if r.status == "ok" else "failed"
    mean = _mean_ranks(track, tasks, rows)
    order = sorted(cells, key=lambda d: (_group_pos(group[d]), group[d], d not in mean,
                                         mean.get(d, (0.0, 0))[0], -mean.get(d, (0.0, 0))[1], d))
    out = [[group[d], d] + [cells[d].get((t.name, t.version), "n/a") for t in tasks]
           + ([f"{mean[d][0]:.2f}", f"{mean[d][1]} of {len(tasks)}"] if d in mean else ["–", "0"]) for d in order]
    if track != "lid" and not shortcut:
        out.append(["task", "C_T of the samples"]
                   + [(f"{v:+.2f}" if (v := _num(chosen[(t.name, t.version)].stats.get("data_copying_ct")))
                       is not None else "–") for t in tasks] + ["", ""])
    out.append(["task", "instance"] + [chosen[(t.name, t.version)].id for t in tasks] + ["", ""])
    return _overview_heads(track, tasks), out


def _overview_heads(track: str, tasks: list[TaskFacts]) -> list[str]:
    return (["group", "detector" if track != "lid" else "estimator"] + [t.name for t in tasks]
            + ["mean rank in group", "tasks ranked"])


OVERVIEW_RULE = ("Within each group, detectors are ordered by mean rank: on every task the group's "
                 "members with a value are ranked (1 = best in the group; ties share the average), "
                 "and each detector's ranks are averaged over the tasks it ran, whose number is shown "
                 "(a mean {metric} over different task sets is not shown: it would compare different "
                 "tasks). Each column uses the task's test instance when the store has one, else its "
                 "only instance (with several dev instances, the one with the most rows); the last row "
                 "names it.")
OVERVIEW_NOTE = {
    "memorization": ("AUROC per detector and task (n/a: not applicable, e.g. a conditional detector on "
                     "an unconditional task). " + OVERVIEW_RULE.format(metric="AUROC") + " The C_T row "
                     "is the task's C_T (Meehan et al. 2020): z-score of generated vs held-out "
                     "distances to the training set; negative means the samples sit closer to the "
                     "training set than fresh data."),
    "lid": ("MAE of the LID estimate per estimator and task (lower is better). "
            + OVERVIEW_RULE.format(metric="MAE")),
}
OVERVIEW_TITLE = {"memorization": "Overview: memorization", "lid": "Overview: LID estimation"}


def overviews(board: Board) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, note, headers, rows) of every track's non-empty overview, for both renderers; the
    shortcut group's matrix follows its track's, apart."""
    out = []
    for track in OVERVIEW_TITLE:
        for shortcut in (False, True):
            heads, rows = overview(board, track, shortcut=shortcut)
            if rows:
                title = OVERVIEW_TITLE[track] + (", shortcut baselines" if shortcut else "")
                out.append((title, GROUP_NOTE if shortcut else OVERVIEW_NOTE[track], heads, rows))
    return out


def _multi_instance_line(board: Board, t: TaskFacts) -> str:
    insts = board.instances(t)
    return (f"This task has {len(insts)} instances in the store ({', '.join(i.id for i in insts)}): "
            "they differ in data and model, so their rows are not comparable and are ranked apart, "
            f"never against each other. The overview uses {insts[0].id}.")


def _md_instance(board: Board, t: TaskFacts, inst: InstanceFacts, track: str) -> list[str]:
    rows = board.rows_for(t, ("measured", "submission"), inst.data_hash)
    if not rows:
        return []
    groups = _ranked(rows, track)
    subtypes = _subtypes(rows)
    lines = []
    main = [g for g in groups if g[0] != "shortcut"]
    if main:
        lines += [_md_measured(main, track, subtypes), ""]
    cut = [g for g in groups if g[0] == "shortcut"]
    if cut:
        lines += [f"*{md(GROUP_NOTE)}*", "", _md_measured(cut, track, subtypes), ""]
    foot = _footnotes(rows, track)
    if foot:
        lines += ["\\\n".join(md(f) for f in foot), ""]  # a trailing backslash breaks the line
    plots = board.plots.get((t.name, t.version, inst.data_hash), {})
    imgs = [f"![{label} on {md(t.name)}]({plots[k]})" for k, label in
            (("roc", "ROC curves"), ("pareto", "AUROC against cost")) if k in plots]
    if imgs:
        lines += [" ".join(imgs), ""]
    return lines


def render_markdown(results: list[dict[str, Any]] | Board) -> str:
    """The Markdown board (``README.md``) from a :class:`Board` or validated result documents."""
    board = results if isinstance(results, Board) else board_from_results(results)
    lines = ["# mmh-bench leaderboard", "", INTRO, ""]
    hw = board.hardware()
    if hw:
        lines += ["Hardware: " + "; ".join(md(h) for h in hw), ""]
    for title, note, heads, rows in overviews(board):
        lines += [f"## {title}", "", md(note), "",
                  tabulate([[md(c) for c in r] for r in rows], headers=[md(c) for c in heads],
                           tablefmt="github", disable_numparse=True), ""]
    for family, track, tasks in board.tables():
        title = FAMILIES.get(family, family) + (" (LID track)" if track == "lid" and family != "lid" else "")
        lines += [f"## {md(title)}", ""]
        for t in tasks:
            lines += [f"### {md(t.name)} (v{md(t.version)})", ""]
            insts = board.instances(t)
            if len(insts) == 1:
                lines += [", ".join(md(p) for p in t.fact_parts() + insts[0].fact_parts()), ""]
                lines += _md_instance(board, t, insts[0], track)
            else:
                lines += [", ".join(md(p) for p in t.fact_parts()), ""]
                if insts:
                    lines += [f"**{md(_multi_instance_line(board, t))}**", ""]
                for inst in insts:
                    lines += [f"#### Instance {md(inst.id)} ({md(inst.kind)})", "",
                              ", ".join(md(p) for p in inst.fact_parts(with_id=False)), ""]
                    lines += _md_instance(board, t, inst, track)
            reported = board.rows_for(t, ("reported",))
            if reported:
                lines += ["**Reported in papers, not re-measured** (each under its own protocol; "
                          "not comparable row for row with the measured table):", "",
                          _md_reported(reported, track), ""]
    return "\n".join(lines)


# -- HTML ---------------------------------------------------------------------------------------
def h(text: Any) -> str:
    return html.escape(str(text), quote=True)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:88rem;padding:0 1rem;color:#1a1a1a;background:#fff}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:2px solid #ddd}
table.board{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
table.board th,table.board td{border:1px solid #ccc;padding:.25rem .45rem;text-align:right;vertical-align:top;white-space:nowrap}
table.board td.t{white-space:normal}
table.overview{border-collapse:collapse;margin:.5rem 0 1rem}table.overview th,table.overview td{border:1px solid #ccc;padding:.2rem .4rem;text-align:right}
table.overview td.t{text-align:left;white-space:nowrap}
table.board td.t,table.board th.t{text-align:left}
table.board thead th{background:#eef2f7;cursor:pointer;user-select:none;white-space:nowrap}
table.board thead th[aria-sort=ascending]::after{content:" \\25B2"}
table.board thead th[aria-sort=descending]::after{content:" \\25BC"}
tr.kind-submission td{background:#f6fbf4}
tbody.reported td{background:repeating-linear-gradient(135deg,#fff8e6,#fff8e6 6px,#fff1cc 6px,#fff1cc 12px);font-style:italic;color:#4a3b00}
tbody.reported th.divider{background:#ffe7a3;text-align:left;font-weight:bold;cursor:default}
tbody.measured th.divider{background:#f4f4f4;text-align:left;font-weight:bold;cursor:default;white-space:normal}
tbody.shortcut td{background:#f5f1fb}p.foot{margin:.1rem 0}p.instances{color:#7a3d00}
.badge{display:inline-block;border-radius:3px;padding:0 .3rem;font-size:.75rem;font-style:normal;border:1px solid #999}
.b-measured{background:#e6f0ff}.b-submission{background:#e3f6dc}.b-verified{background:#c9efbe}.b-reported{background:#ffe7a3;border-color:#b58900}
.failed{color:#a00}.muted{color:#666}
fieldset{border:1px solid #ccc;margin:.5rem 0}label{margin-right:1rem}
figure{display:inline-block;margin:.5rem 1rem .5rem 0}figure img{max-width:42rem;border:1px solid #ddd}
"""

JS = """
(function () {
  "use strict";
  function value(cell, type) {
    var v = cell ? cell.getAttribute("data-v") : null;
    if (v === null || v === "") return null;
    return type === "num" ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(table, col) {
    var heads = table.tHead.rows[0].cells, th = heads[col];
    var type = th.getAttribute("data-type") || "text";
    var now = th.getAttribute("aria-sort");
    var dir = now === "descending" ? "ascending" : now === "ascending" ? "descending"
            : (th.getAttribute("data-first") || "ascending");
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    Array.prototype.forEach.call(table.tBodies, function (body) {
      var rows = Array.prototype.filter.call(body.rows, function (r) { return r.classList.contains("entry"); });
      rows.sort(function (a, b) {
        var x = value(a.cells[col], type), y = value(b.cells[col], type);
        if (x === null && y === null) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return x < y ? -sign : x > y ? sign : 0;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  }
  function applyFilters() {
    var allowed = {};
    document.querySelectorAll("input.access-filter").forEach(function (box) { allowed[box.value] = box.checked; });
    document.querySelectorAll("table.board").forEach(function (table) {
      var shown = 0;
      table.querySelectorAll("tr.entry").forEach(function (r) {
        var flags = (r.getAttribute("data-access") || "").split(" ").filter(Boolean);
        var ok = flags.every(function (f) { return allowed[f] !== false; });
        r.hidden = !ok;
        if (ok) shown++;
      });
      var count = document.getElementById(table.id + "-count");
      if (count) count.textContent = shown + (shown === 1 ? " row" : " rows") + " shown";
    });
  }
  document.querySelectorAll("table.board").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, col); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, col); });
    });
  });
  document.querySelectorAll("input.access-filter").forEach(function (el) {
    el.addEventListener("change", applyFilters);
  });
  applyFilters();
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _td(text: str, v: Any = None, cls: str = "", raw: bool = False) -> str:
    """A cell; ``v`` is its sort key (numbers sort numerically, missing values last)."""
    key = "" if v is None else (repr(float(v)) if isinstance(v, (int, float)) else str(v))
    body = text if raw else h(text)
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-v="{h(key)}">{body}</td>'


def _cost_cells(r: Row) -> list[str]:
    c = r.cost or {}
    nfe, sec = _num(c.get("nfe_per_sample")), _num(c.get("seconds"))
    return [_td(_fmt(nfe, 1), nfe), _td(_fmt(sec, 2), sec)]


def _source_html(r: Row) -> str:
    if r.kind == "reported":
        notes = f'<br><span class="muted">{h(r.notes)}</span>' if r.notes else ""
        model = f" &middot; model: {h(r.model)}" if r.model else ""
        return (f'<span class="badge b-reported">{h(KIND_LABEL["reported"])}</span> '
                f'<a href="{h(r.url)}" rel="noopener noreferrer">{h(r.citation)}</a>{model}{notes}')
    if r.kind == "submission":
        mark = ('<span class="badge b-verified">verified</span>' if r.verified
                else '<span class="badge">unverified</span>')
        return (f'<span class="badge b-submission">submission</span> '
                f'<a href="{h(r.url)}" rel="noopener noreferrer">{h(r.submission)}</a> {mark}'
                f'<br><span class="muted">{h(", ".join(r.authors))}</span>')
    hw = f' <span class="muted">{h(r.hardware)}</span>' if r.hardware else ""
    return f'<span class="badge b-measured">measured</span>{hw}'


def _html_row(r: Row, track: str, subtypes: list[str], rank: int | None) -> str:
    cells = [_td(str(rank) if rank else "–", rank),
             _td(r.detector, r.detector.lower(), "t"),
             _td(r.access or "?", r.access or "", "t")]
    n_metric = len(_metric_heads(track, subtypes)) + len(COST_HEADERS)
    if r.status != "ok":
        cells.append(f'<td class="t failed" colspan="{n_metric}" data-v="">failed: {h(str(r.error)[:300])}</td>')
        cells += ['<td hidden data-v=""></td>'] * (n_metric - 1)
    else:
        cells += [_td(text, v) for text, v in _metric_cells(r, track, subtypes)] + _cost_cells(r)
    cells.append(_td(_source_html(r), KIND_LABEL[r.kind], "t", raw=True))
    flags = " ".join(r.flags)
    return (f'<tr class="entry kind-{r.kind}" data-task="{h(r.task)}" data-group="{h(r.group)}" '
            f'data-access="{h(flags)}" data-kind="{r.kind}">' + "".join(cells) + "</tr>")


def _html_instance(board: Board, t: TaskFacts, inst: InstanceFacts, track: str, tid: str,
                   reported: list[Row]) -> str:
    """One table per instance: a body per group (sorting stays inside it), the shortcut group's
    body marked apart, then the reported rows (only under the task's first instance)."""
    rows = board.rows_for(t, ("measured", "submission"), inst.data_hash)
    subtypes = _subtypes(rows + reported) if track != "lid" else []
    heads: list[tuple[str, str, str]] = [("#", "num", "ascending"),
                                         ("detector" if track != "lid" else "estimator", "text", "ascending"),
                                         ("access", "text", "ascending")]
    heads += [(label, "num", "ascending" if label in ("MAE", "MSE") else "descending")
              for label in _metric_heads(track, subtypes)]
    heads += [("NFE/sample", "num", "ascending"), ("seconds", "num", "ascending"), ("source", "text", "ascending")]
    th = "".join(f'<th class="{"t" if typ == "text" else ""}" data-type="{typ}" data-first="{first}" '
                 f'title="sort by {h(label)}">{h(label)}</th>' for label, typ, first in heads)
    bodies = ""
    for group, ranked in _ranked(rows, track):
        cut = group == "shortcut"
        label = f"{group}: {GROUP_NOTE}" if cut else group
        bodies += (f'<tbody class="measured{" shortcut" if cut else ""}" data-group="{h(group)}">'
                   f'<tr><th class="divider" colspan="{len(heads)}">{h(label)}</th></tr>'
                   + "".join(_html_row(r, track, subtypes, rank) for rank, r in ranked) + "</tbody>")
    if reported:
        bodies += (f'<tbody class="reported"><tr><th class="divider" colspan="{len(heads)}">Reported in '
                   'papers, not re-measured: numbers from each paper under its own protocol, shown for '
                   'context and never ranked with the rows above</th></tr>' +
                   "".join(_html_row(r, track, subtypes, None) for r in
                           sorted(reported, key=lambda r: (r.detector, r.model, r.citation))) + "</tbody>")
    foot = "".join(f'<p class="foot muted">{h(f)}</p>' for f in _footnotes(rows, track))
    figs = ""
    for k, label in (("roc", "ROC curves"), ("pareto", "AUROC against cost")):
        p = board.plots.get((t.name, t.version, inst.data_hash), {}).get(k)
        if p:
            figs += (f'<figure><img src="{h(p)}" alt="{h(label)} on {h(t.name)}" loading="lazy">'
                     f'<figcaption>{h(label)}: {h(t.name)} v{h(t.version)}, {h(inst.id)}</figcaption></figure>')
    return (f'<p class="muted" id="{tid}-count"></p>'
            f'<table class="board" id="{tid}" data-track="{h(track)}" data-instance="{h(inst.id)}">'
            f'<thead><tr>{th}</tr></thead>{bodies}</table>{foot}{figs}')


def _table_id(*parts: str) -> str:
    return "t-" + re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def _html_task(board: Board, t: TaskFacts, track: str) -> str:
    insts = board.instances(t)
    reported = board.rows_for(t, ("reported",))
    desc = f' <span class="muted">{h(t.description)}</span>' if t.description else ""
    head = f'<h3>{h(t.name)} <span class="muted">v{h(t.version)}</span></h3>'
    tid = _table_id(t.name, "v" + t.version)
    if len(insts) <= 1:
        facts = t.fact_parts() + (insts[0].fact_parts() if insts else [])
        # with no measured instance the table holds the reported rows only
        body = _html_instance(board, t, insts[0] if insts else InstanceFacts("", "", ""), track, tid, reported)
        return f'{head}<p class="facts">{h(", ".join(facts))}{desc}</p>{body}'
    out = (f'{head}<p class="facts">{h(", ".join(t.fact_parts()))}{desc}</p>'
           f'<p class="instances"><b>{h(_multi_instance_line(board, t))}</b></p>')
    for i, inst in enumerate(insts):
        out += (f'<h4>Instance {h(inst.id)} ({h(inst.kind)})</h4><p class="facts">{h(", ".join(inst.fact_parts(with_id=False)))}</p>'
                + _html_instance(board, t, inst, track, f"{tid}-{inst.id}", reported if i == 0 else []))
    return out


def _html_section(board: Board, family: str, track: str, tasks: list[TaskFacts]) -> str:
    title = FAMILIES.get(family, family) + (" (LID track)" if track == "lid" and family != "lid" else "")
    return (f'<section id="{_table_id(family, track)}-section"><h2>{h(title)}</h2>'
            + "".join(_html_task(board, t, track) for t in tasks) + "</section>")


def render_html(board: Board) -> str:
    """The self-contained page (``index.html``): tables, filters, sorting, plots."""
    boxes = "".join(f'<label><input type="checkbox" class="access-filter" value="{f}" checked> '
                    f'{f}</label>' for f in ACCESS_FLAGS)
    hw = board.hardware()
    tables = "".join(_html_section(board, fam, tr, ts) for fam, tr, ts in board.tables())
    over = "".join(
        f'<section class="overview"><h2>{h(title)}</h2><p class="muted">{h(note)}</p>'
        '<table class="overview"><thead><tr>' + "".join(f"<th>{h(c)}</th>" for c in heads)
        + "</tr></thead><tbody>" + "".join(
            "<tr>" + "".join((f'<td class="t">{h(c)}</td>' if i < 2 else f"<td>{h(c)}</td>")
                            for i, c in enumerate(r))
            + "</tr>" for r in rows) + "</tbody></table></section>"
        for title, note, heads, rows in overviews(board))
    csp = (f"default-src 'none'; img-src 'self' file: data:; style-src {_csp_hash(CSS)}; "
           f"script-src {_csp_hash(JS)}; base-uri 'none'; form-action 'none'")
    intro = h(INTRO).replace("**", "").replace("`", "").replace("*", "")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{h(csp)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>mmh-bench leaderboard</title><style>{CSS}</style></head><body>"
            f"<h1>mmh-bench leaderboard</h1><p>{intro}</p>"
            + (f'<p class="muted">Hardware: {h("; ".join(hw))}</p>' if hw else "")
            + '<fieldset id="access-filters"><legend>Show detectors whose access needs only</legend>'
            + boxes + "</fieldset>"
            + over + (tables or "<p>No results yet: run <code>mmh-bench run</code>.</p>")
            + f"<script>{JS}</script></body></html>\n")


# -- plots --------------------------------------------------------------------------------------
def _slug(task: str, version: str) -> str:
    base = f"{task}-v{version}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "task"
    if safe != base:
        safe += "-" + hashlib.sha256(base.encode()).hexdigest()[:8]
    return safe[:100]


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
        label = _plot_label(r.detector) + (" [sub]" if r.kind == "submission" else "") + f" ({_fmt(r.auroc)})"
        # ten colours, then the same colours dashed, dotted: no two curves look alike
        style = {"color": f"C{i % 10}", "ls": ("-", "--", "-.", ":")[(i // 10) % 4]}
        for ax in axes:
            ax.plot(r.roc["fpr"], r.roc["tpr"], lw=1.4, label=label, drawstyle="steps-post", **style)
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
        xy = [(max(_num(r.cost.get(key)) or 0.0, 0.0), r.auroc or 0.0) for r in pts]
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


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def render_plots(board: Board, out_dir: str | Path) -> list[Path]:
    """ROC and Pareto PNGs per memorization task instance; records their paths on the board."""
    out = Path(out_dir)
    written: list[Path] = []
    for _, track, tasks in board.tables():
        if track == "lid":
            continue
        for t in tasks:
            insts = board.instances(t)
            for inst in insts:  # one figure per instance: curves of different instances never share axes
                rows = board.rows_for(t, ("measured", "submission"), inst.data_hash)
                slug = _slug(t.name, t.version) + (f"-{inst.id}" if len(insts) > 1 else "")
                for kind, maker in (("roc", _roc_png), ("pareto", _pareto_png)):
                    data = maker(t, rows)
                    if data is None:
                        continue
                    rel = f"{PLOTS_DIR}/{kind}-{slug}.png"
                    atomic_write_bytes(out / rel, data)
                    board.plots.setdefault((t.name, t.version, inst.data_hash), {})[kind] = rel
                    written.append(out / rel)
    stale = [p for p in (out / PLOTS_DIR).glob("*.png")
             if p not in written and re.match(r"^(roc|pareto)-.*\.png$", p.name)] if (out / PLOTS_DIR).is_dir() else []
    for p in stale:
        p.unlink()
    return written


def render_board(results_dir: str | Path, out_dir: str | Path, *,
                 submissions_dir: str | Path | None = None, reported_dir: str | Path | None = None,
                 tasks: TaskCatalog | Iterable[TaskSpec | str | Path] | None = None,
                 plots: bool = True) -> list[Path]:
    """Validate the store and write ``README.md``, ``index.html`` and ``plots/*.png`` into ``out_dir``.

    Rejected files are logged as warnings (``mmh-bench validate`` lists them) and left out.
    Returns the files written.
    """
    board = collect_board(results_dir, submissions_dir=submissions_dir, reported_dir=reported_dir,
                          tasks=tasks)
    for bad in board.rejected:
        log.warning("left out %s", bad)
    out = Path(out_dir)
    written = render_plots(board, out) if plots else []
    readme, page = out / "README.md", out / "index.html"
    atomic_write_text(readme, render_markdown(board))
    atomic_write_text(page, render_html(board))
    return [readme, page] + written
