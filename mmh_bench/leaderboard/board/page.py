"""The self-contained page (``index.html``): inline CSS and vanilla JS (``static/board.css`` and
``static/board.js``, package files) pinned by a Content-Security-Policy hash of their contents,
so it works offline and an injected script could not run; every string from a file goes through
:func:`h`."""
from __future__ import annotations

import base64
import hashlib
import html
import re
from importlib import resources
from typing import Any, Callable, Sequence

from .cells import INTRO, footnotes, ranked_groups
from .columns import Column, Columns, rank_column
from .model import (ACCESS_FLAGS, GROUP_NOTE, KIND_LABEL, Board, InstanceFacts, Row, TaskFacts, finite_number,
                    kind_label, section_title)
from .overview import multi_instance_line, overviews
from .plots import PLOT_KINDS, true_lid_text
from .fidelity import AGREEMENT_NOTE, CAUSE_DOC, CAUSE_HREF, CPU_FAMILY, FIDELITY_NOTE, FIDELITY_TITLE, fidelity
from .gap import GAP_NOTE, gap_cells, gap_heads, gap_rows
from .replicates import ReplicateSummary, summarize
from .reported import REPORTED_NOTE, REPORTED_TITLE, note_text, reported_cells, reported_heads, source_notes


def h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _static(name: str) -> str:
    """A file of the page's own (``static/``, package data), read as the page embeds it."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


#: the page's style sheet and script, inlined and pinned by their hashes in the page's policy
CSS = _static("board.css")
JS = _static("board.js")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def td(text: str, v: Any = None, cls: str = "", raw: bool = False) -> str:
    """A cell; ``v`` is its sort key (numbers sort numerically, missing values last)."""
    key = "" if v is None else (repr(float(v)) if isinstance(v, (int, float)) else str(v))
    body = text if raw else h(text)
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-v="{h(key)}">{body}</td>'


def _source_html(r: Row) -> str:
    if r.kind == "reported":
        cite = (f'<a href="{h(r.url)}" rel="noopener noreferrer">{h(r.citation)}</a>' if r.url
                else h(r.citation))
        return f'<span class="badge b-reported">{h(KIND_LABEL["reported"])}</span> {cite}'
    if r.kind == "submission":
        mark = ('<span class="badge b-verified">verified</span>' if r.verified
                else '<span class="badge">unverified</span>')
        return (f'<span class="badge b-submission">submission</span> '
                f'<a href="{h(r.url)}" rel="noopener noreferrer">{h(r.submission)}</a> {mark}'
                f'<br><span class="muted">{h(", ".join(r.authors))}</span>')
    hw = f' <span class="muted">{h(r.hardware)}</span>' if r.hardware else ""
    return f'<span class="badge b-measured">measured</span>{hw}'


def _html_row(r: Row, middle: list[str], rank: int | None) -> str:
    """A ranked row: rank, detector, access, the ``middle`` cells, source."""
    cells = ([td(str(rank) if rank else "–", rank), td(r.detector, r.detector.lower(), "t"),
              td(r.access or "?", r.access or "", "t")] + middle
             + [td(_source_html(r), KIND_LABEL[r.kind], "t", raw=True)])
    return (f'<tr class="entry kind-{r.kind}" data-task="{h(r.task)}" data-group="{h(r.group)}" '
            f'data-access="{h(" ".join(r.flags))}" data-kind="{r.kind}">' + "".join(cells) + "</tr>")


def shade(col: Column, v: float | None) -> str:
    """The colour class of an AUROC cell: ten bins from ``s0`` (0-0.1) to ``s9`` (0.9-1), white at
    chance (board.css); other columns carry none."""
    if col.key != "auroc" or v is None:
        return ""
    return f"s{min(9, max(0, int(v * 10)))}"


def _best(rows: list[Row], track: str) -> dict[str, float]:
    """Each group's best value of the track's rank column (AUROC: highest; MAE: lowest)."""
    col = rank_column(track)
    out: dict[str, float] = {}
    for r in rows:
        v = col.value(r) if r.status == "ok" else None
        if v is not None and r.group != "chance":
            cur = out.get(r.group)
            out[r.group] = v if cur is None else (max(cur, v) if col.higher_is_better else min(cur, v))
    return out


def _measured_cells(r: Row, cols: Columns, best: dict[str, float] | None = None) -> list[str]:
    """The metric cells of a row: AUROC shaded, the group's best value of the rank column starred."""
    n_metric = len(cols.cols)
    if r.status != "ok":
        return ([f'<td class="t failed" colspan="{n_metric}" data-v="">failed: {h(str(r.error)[:300])}</td>']
                + ['<td hidden data-v=""></td>'] * (n_metric - 1))
    rank = rank_column(cols.track)
    out = []
    for col, (text, v) in zip(cols.cols, cols.cells(r)):
        top = best is not None and col.key == rank.key and v is not None and best.get(r.group) == v
        cls = " ".join(c for c in (shade(col, v), "best" if top else "") if c)
        out.append(td(text, v, cls, raw=False) if not top else
                   td(f'<span title="best in the {h(r.group)} group">&#9733;</span> {h(text)}', v, cls, raw=True))
    return out


def _html_heads(track: str, numbers: list[tuple[str, bool]]) -> list[tuple[str, str, str]]:
    """(label, type, first direction) of a ranked table: rank, detector, access, the ``numbers``
    (label, higher is better: the better end sorts first), source."""
    return ([("#", "num", "ascending"), ("detector" if track != "lid" else "estimator", "text", "ascending"),
             ("access", "text", "ascending")]
            + [(label, "num", "descending" if higher else "ascending") for label, higher in numbers]
            + [("source", "text", "ascending")])


def _html_bodies(groups: list[tuple[str, list[tuple[int | None, Any]]]], n_cols: int,
                 row: Callable[[Any, int | None], str]) -> str:
    """A body per group (sorting stays inside it), the shortcut group's body marked apart."""
    bodies = ""
    for group, ranked in groups:
        cut = group == "shortcut"
        label = f"{group}: {GROUP_NOTE}" if cut else group
        bodies += (f'<tbody class="measured{" shortcut" if cut else ""}" data-group="{h(group)}">'
                   f'<tr><th class="divider" colspan="{n_cols}">{h(label)}</th></tr>'
                   + "".join(row(item, rank) for rank, item in ranked) + "</tbody>")
    return bodies


def _html_replicates(s: ReplicateSummary, tid: str) -> str:
    """The replicate summary of one kind: a ranked table of mean ± sd per detector."""
    heads = _html_heads(s.track, s.directions)
    bodies = _html_bodies(s.groups, len(heads), lambda rep, rank: _html_row(
        rep.first, [td(text, v) for text, v in rep.cells()], rank))
    return (f'<h4>Across the {len(s.instances)} {h(s.kind)} replicates</h4><p class="facts">{h(s.note())}</p>'
            f'<p class="muted" id="{tid}-count"></p>'
            f'<table class="board" id="{tid}" data-track="{h(s.track)}" data-instance="{h(s.kind)}-replicates">'
            f'<thead><tr>{sort_heads(heads)}</tr></thead>{bodies}</table>')


def sort_heads(heads: list[tuple[str, str, str]]) -> str:
    """Sortable header cells: (label, "num" | "text", first sort direction)."""
    return "".join(f'<th class="{"t" if typ == "text" else ""}" data-type="{typ}" data-first="{first}" '
                   f'title="sort by {h(label)}">{h(label)}</th>' for label, typ, first in heads)


def _html_instance(board: Board, t: TaskFacts, inst: InstanceFacts, track: str, tid: str) -> str:
    """One table per instance: a body per group (sorting stays inside it), the shortcut group's
    body marked apart."""
    rows = board.rows_for(t, ("measured", "submission"), inst.data_hash)
    cols = Columns.of(rows, track)
    heads = _html_heads(track, [(c.head, c.higher_is_better) for c in cols.cols])
    best = _best(rows, track)
    bodies = _html_bodies(ranked_groups(rows, track), len(heads),
                          lambda r, rank: _html_row(r, _measured_cells(r, cols, best), rank))
    foot = "".join(f'<p class="foot muted">{h(f)}</p>' for f in footnotes(rows, track))
    figs = ""
    for k, label in PLOT_KINDS:
        p = board.plots.get((t.name, t.version, inst.data_hash), {}).get(k)
        if p:
            figs += (f'<figure><img src="{h(p)}" alt="{h(label)} on {h(t.name)}" loading="lazy">'
                     f'<figcaption>{h(label)}: {h(t.name)} v{h(t.version)}, {h(inst.id)}</figcaption></figure>')
    truth = true_lid_text(rows) if track == "lid" else None
    lead = f'<p>True LID* of the query points (count): {h(truth)}</p>' if truth else ""
    return (f'{lead}<p class="muted" id="{tid}-count"></p>'
            f'<table class="board" id="{tid}" data-track="{h(track)}" data-instance="{h(inst.id)}">'
            f'<thead><tr>{sort_heads(heads)}</tr></thead>{bodies}</table>{foot}{figs}')


def _html_reported(rows: list[Row], track: str, tid: str) -> str:
    """The task's published numbers in a table of their own (never ranked; sortable, unnumbered),
    each source with its protocol note once below it."""
    refs, firsts = source_notes(rows)
    labels = reported_heads(rows, track)
    numeric = {i for i, label in enumerate(labels)
               if label.startswith(("AUROC", "TPR@", "MAE", "concordance", "source"))}
    heads = [(label, "num" if i in numeric else "text",
              "descending" if i in numeric and label not in ("MAE", "source") else "ascending")
             for i, label in enumerate(labels)]
    body = ""
    for r, k in zip(rows, refs):
        cells = [td(text, v) if i in numeric else td(text, text.lower(), "t")
                 for i, (text, v) in enumerate(reported_cells(r, k, rows, track))]
        cells[-1] = td(f'<a href="#{tid}-s{k}">[{k}]</a>', k, raw=True)
        body += (f'<tr class="entry kind-reported" data-task="{h(r.task)}" data-group="" '
                 f'data-access="{h(" ".join(r.flags))}" data-kind="reported">' + "".join(cells) + "</tr>")
    notes = "".join(f'<p class="foot" id="{tid}-s{k}">[{k}] {_source_html(r)}'
                    + (f"; {h(note_text(r))}" if r.notes else "") + "</p>" for k, r in enumerate(firsts, 1))
    return (f'<h4 class="reported">{h(REPORTED_TITLE)}</h4><p class="muted">{h(REPORTED_NOTE)}</p>'
            f'<p class="muted" id="{tid}-count"></p>'
            f'<table class="board reported" id="{tid}" data-track="{h(track)}" data-instance="">'
            f'<thead><tr>{sort_heads(heads)}</tr></thead><tbody class="reported">{body}</tbody></table>{notes}')


def _html_gap(board: Board, t: TaskFacts) -> str:
    """Public beside held-out for the task's detectors with held-out results (none: nothing)."""
    gaps = gap_rows(board, t)
    if not gaps:
        return ""
    heads = "".join(f"<th>{h(x)}</th>" for x in ["group", "detector", "source", *gap_heads(t)])
    body = "".join("<tr>" + f"<td>{h(g.group)}</td><td>{h(g.detector)}</td><td>{_source_html(g.first)}</td>"
                   + "".join(f'<td class="{"flag" if c == "FLAGGED" else ""}">{h(c)}</td>' for c in gap_cells(g))
                   + "</tr>" for g in gaps)
    return (f'<h4>Public and held-out</h4><p class="muted">{h(GAP_NOTE)}</p>'
            f'<table class="gap"><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>')


def _html_fidelity(board: Board) -> str:
    """The published Stable Diffusion numbers beside each text-to-image task's (none: nothing);
    AUROC cells shaded as in the measured tables."""
    fid = fidelity(board)
    if fid is None:
        return ""
    auroc = rank_column("memorization")
    heads = "".join(f"<th>{h(x)}</th>" for x in fid.heads())
    body = "".join("<tr>" + "".join(f'<td class="{shade(auroc, v)}">{h(text)}</td>' if v is not None
                                    else f"<td>{h(text)}</td>" for text, v in fid.cells(fr)) + "</tr>"
                   for fr in fid.rows)
    notes = "".join(f'<p class="foot muted">{h(line)}</p>' for line in
                    [fid.table_line(k) for k in range(1, len(fid.tables) + 1)] + fid.task_lines())
    cause = f' <a href="{h(CAUSE_HREF)}">{h(CAUSE_DOC)}</a>'
    pairs = "".join("<tr>" + "".join(f"<td>{h(c)}</td>" for c in fid.agreement_cells(a)[:-1])
                    + (f'<td class="flag">{h(a.verdict())}{cause}</td>' if a.disagrees else f"<td>{h(a.verdict())}</td>")
                    + "</tr>" for a in fid.agreements)
    agree_heads = "".join(f"<th>{h(x)}</th>" for x in fid.agreement_heads())
    return (f'<h3 id="fidelity">{h(FIDELITY_TITLE)}</h3><p class="muted">{h(FIDELITY_NOTE)}</p>'
            f'<table class="fidelity"><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>{notes}'
            f'<p class="muted">{h(AGREEMENT_NOTE)}</p>'
            f'<table class="fidelity"><thead><tr>{agree_heads}</tr></thead><tbody>{pairs}</tbody></table>')


def _table_id(*parts: str) -> str:
    return "t-" + re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def _html_task(board: Board, t: TaskFacts, track: str) -> str:
    insts = board.instances(t)
    reported = board.rows_for(t, ("reported",))
    desc = (f'<details class="desc"><summary>task description</summary><p class="muted">{h(t.description)}</p>'
            '</details>' if t.description else "")
    tid = _table_id(t.name, "v" + t.version)
    head = (f'<h3 id="{tid}-task">{h(t.name)} <span class="muted">v{h(t.version)}</span> '
            '<a class="up" href="#top" title="back to the overview">&#8593; overview</a></h3>')
    tail = _html_reported(reported, track, f"{tid}-reported") if reported else ""
    if len(insts) <= 1:
        facts = t.fact_parts() + (insts[0].fact_parts() if insts else [])
        body = _html_instance(board, t, insts[0], track, tid) if insts else ""
        return f'{head}<p class="facts">{h(", ".join(facts))}</p>{desc}{body}{tail}'
    out = (f'{head}<p class="facts">{h(", ".join(t.fact_parts()))}</p>{desc}'
           f'<p class="instances"><b>{h(multi_instance_line(board, t))}</b></p>' + _html_gap(board, t))
    for kind, reps in board.replicates(t).items():
        out += _html_replicates(summarize(board, t, reps), f"{tid}-{kind}-replicates")
    for inst in insts:
        out += (f'<h4>Instance {h(inst.id)} ({h(kind_label(inst.kind))})</h4><p class="facts">{h(", ".join(inst.fact_parts(with_id=False)))}</p>'
                + _html_instance(board, t, inst, track, f"{tid}-{inst.id}"))
    return out + tail


def _html_section(board: Board, family: str, track: str, tasks: list[TaskFacts]) -> str:
    title = section_title(family, track)
    lead = _html_fidelity(board) if family == CPU_FAMILY and track == "memorization" else ""
    return (f'<section id="{_table_id(family, track)}-section"><h2>{h(title)}</h2>{lead}'
            + "".join(_html_task(board, t, track) for t in tasks) + "</section>")


def _nav(board: Board, sections: Sequence[PageSection] = ()) -> str:
    """The page's navigation: the overviews, each track and family, each task (one click to its
    tables), then the other tracks' sections."""
    items = ['<li><a href="#overview">overview</a></li>', '<li><a href="#definitions">definitions</a></li>']
    for fam, tr, ts in board.tables():
        tasks = "".join(f'<a href="#{_table_id(t.name, "v" + t.version)}-task">{h(t.name)}</a>' for t in ts)
        items.append(f'<li><a href="#{_table_id(fam, tr)}-section">{h(section_title(fam, tr))}</a>'
                     f'<span class="tasks">{tasks}</span></li>')
    items += [f'<li><a href="#{h(anchor)}">{h(title)}</a></li>' for anchor, title, _ in sections]
    return f'<nav id="toc"><ul>{"".join(items)}</ul></nav>'


def _overview_best(rows: list[list[str]], heads: list[str], links: dict[str, str], higher: bool) -> set[tuple[int, int]]:
    """(row, column) of each group's best value in each task column (not the chance group's)."""
    best: dict[tuple[str, int], float] = {}
    for r in rows:
        for i, c in enumerate(r):
            v = finite_number(_number(c)) if heads[i] in links and r[0] not in ("task", "chance") else None
            if v is not None:
                cur = best.get((r[0], i))
                best[(r[0], i)] = v if cur is None else (max(cur, v) if higher else min(cur, v))
    return {(k, i) for k, r in enumerate(rows) for i, c in enumerate(r)
            if heads[i] in links and (r[0], i) in best and _number(c) == best[(r[0], i)]}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _overview_cell(c: str, i: int, head: str, links: dict[str, str], shaded: bool, top: bool) -> str:
    if i < 2:
        return td(c, c.lower(), "t")
    v = _number(c)  # a task's value, the mean rank; "n/a" and "3 of 10" sort last
    cls = shade(rank_column("memorization"), v) if shaded and head in links and v is not None and 0.0 <= v <= 1.0 else ""
    if top:
        return td(f'<span title="best in its group on {h(head)}">&#9733;</span> {h(c)}', v, f"{cls} best".strip(),
                  raw=True)
    return td(c, v, cls)


def _overview_html(board: Board) -> str:
    """The overview matrices, sortable (a body per group: sorting stays inside it), each task's
    column head a link to its tables, AUROC cells shaded, each group's best per task starred."""
    out = ""
    for title, note, heads, rows in overviews(board):
        track = "lid" if "estimator" in heads[:2] else "memorization"
        links = {t.name: f"#{_table_id(t.name, 'v' + t.version)}-task" for _, tr, ts in board.tables()
                 if tr == track for t in ts}
        higher = rank_column(track).higher_is_better
        head = "".join(
            f'<th data-type="{"text" if i < 2 else "num"}" data-first="{"descending" if c in links and higher else "ascending"}"'
            f' class="{"t" if i < 2 else ""}" title="sort by {h(c)}">'
            + (f'<a href="{links[c]}">{h(c)}</a>' if c in links else h(c)) + "</th>" for i, c in enumerate(heads))
        best = _overview_best(rows, heads, links, higher)
        bodies: list[tuple[str, str]] = []
        for k, r in enumerate(rows):
            cells = "".join(_overview_cell(c, i, heads[i], links, track != "lid", (k, i) in best)
                            for i, c in enumerate(r))
            tr = f'<tr class="{"entry" if r[0] != "task" else "task"}">{cells}</tr>'
            if bodies and bodies[-1][0] == r[0]:
                bodies[-1] = (r[0], bodies[-1][1] + tr)
            else:
                bodies.append((r[0], tr))
        body = "".join(f'<tbody data-group="{h(g)}">{b}</tbody>' for g, b in bodies)
        out += (f'<section class="overview"><h2>{h(title)}</h2><details class="desc"><summary>how this '
                f'overview is built</summary><p class="muted">{h(note)}</p></details>'
                f'<table class="overview sortable"><thead><tr>{head}</tr></thead>{body}</table></section>')
    return out


#: a section of the page beside the detection board's (anchor, navigation title, HTML), e.g. the
#: mitigation track's, which the caller renders (:func:`mmh_bench.mitigation.board.page_section`)
PageSection = tuple[str, str, str]


def render_html(board: Board, sections: Sequence[PageSection] = ()) -> str:
    """The self-contained page (``index.html``): navigation, overviews linked to each task's
    tables, definitions folded away, sortable and filterable tables, plots; then ``sections``
    (other tracks), each in the navigation."""
    boxes = "".join(f'<label><input type="checkbox" class="access-filter" value="{f}" checked> '
                    f'{f}</label>' for f in ACCESS_FLAGS)
    hw = board.hardware()
    tables = "".join(_html_section(board, fam, tr, ts) for fam, tr, ts in board.tables())
    tables += "".join(f'<section id="{h(anchor)}"><h2>{h(title)}</h2>{body}</section>'
                      for anchor, title, body in sections)
    over = _overview_html(board)
    csp = (f"default-src 'none'; img-src 'self' file: data:; style-src {_csp_hash(CSS)}; "
           f"script-src {_csp_hash(JS)}; base-uri 'none'; form-action 'none'")
    intro = h(INTRO).replace("**", "").replace("`", "").replace("*", "")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{h(csp)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>mmh-bench leaderboard</title><style>{CSS}</style></head><body>"
            f'<h1 id="top">mmh-bench leaderboard</h1>' + _nav(board, sections)
            + f'<details id="definitions"><summary>How to read this board (groups, metrics, sources)</summary>'
              f"<p>{intro}</p></details>"
            + (f'<p class="muted">Hardware: {h("; ".join(hw))}</p>' if hw else "")
            + '<fieldset id="access-filters"><legend>Show detectors whose access needs only</legend>'
            + boxes + "</fieldset>"
            + f'<div id="overview">{over}</div>' + (tables or "<p>No results yet: run <code>mmh-bench run</code>.</p>")
            + f"<script>{JS}</script></body></html>\n")

