"""The Markdown board (``README.md``): every string from a file is escaped as text."""
from __future__ import annotations

import html
import re
from typing import Any, Callable

from tabulate import tabulate

from .cells import INTRO, footnotes, ranked_groups
from .fidelity import AGREEMENT_NOTE, CAUSE_DOC, CAUSE_HREF, CPU_FAMILY, FIDELITY_NOTE, FIDELITY_TITLE, fidelity
from .gap import GAP_NOTE, gap_cells, gap_heads, gap_rows
from .columns import Columns
from .model import GROUP_NOTE, Board, InstanceFacts, Row, TaskFacts, board_from_results, kind_label, section_title
from .overview import multi_instance_line, overviews
from .plots import PLOT_KINDS, plot_slug, true_lid_text
from .replicates import ReplicateRow, ReplicateSummary, summarize
from .reported import REPORTED_NOTE, REPORTED_TITLE, note_text, reported_cells, reported_heads, source_notes

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


def _md_ranked(groups: list[tuple[str, list[tuple[int | None, Any]]]], heads: list[str],
               rest: Callable[[Any], list[str]]) -> str:
    """A ranked table: rank, group, detector, source and access of each item's row, then ``rest``."""
    out = []
    for group, ranked in groups:
        for rank, item in ranked:
            r = item.first if isinstance(item, ReplicateRow) else item
            out.append([str(rank) if rank else "–", md(group), md(r.detector), _source_md(r), md(r.access or "?")]
                       + rest(item))
    return tabulate(out, headers=heads, tablefmt="github", disable_numparse=True)


def _lead(track: str) -> list[str]:
    return ["#", "group", "detector" if track != "lid" else "estimator", "source", "access"]


def _md_measured(groups: list[tuple[str, list[tuple[int | None, Row]]]], cols: Columns) -> str:
    heads = _lead(cols.track) + cols.heads()

    def rest(r: Row) -> list[str]:
        if r.status != "ok":
            return ["failed: " + md(str(r.error)[:100])] + [""] * (len(heads) - 6)
        return [text for text, _ in cols.cells(r, md)]
    return _md_ranked(groups, heads, rest)


def _md_replicates(s: ReplicateSummary) -> list[str]:
    """The replicate summary of one kind: note, then the ranked table (shortcuts apart)."""
    lines = [f"#### Across the {len(s.instances)} {md(s.kind)} replicates", "", md(s.note()), ""]
    for cut in (False, True):
        groups = [g for g in s.groups if (g[0] == "shortcut") == cut]
        if groups:
            lines += ([f"*{md(GROUP_NOTE)}*", ""] if cut else []) + [
                _md_ranked(groups, _lead(s.track) + s.heads, lambda rep: [t for t, _ in rep.cells()]), ""]
    return lines


def _md_reported(rows: list[Row], track: str) -> list[str]:
    refs, firsts = source_notes(rows)
    table = tabulate([[text for text, _ in reported_cells(r, k, rows, track, md)] for r, k in zip(rows, refs)],
                     headers=reported_heads(rows, track), tablefmt="github", disable_numparse=True)
    notes = [md(f"[{k}] ") + (f"[{md(r.citation)}]({_md_url(r.url)})" if r.url else md(r.citation))
             + (f"; {md(note_text(r))}" if r.notes else "") for k, r in enumerate(firsts, 1)]
    return [table, "", "\\\n".join(notes), ""]


def _md_instance(board: Board, t: TaskFacts, inst: InstanceFacts, track: str) -> list[str]:
    rows = board.rows_for(t, ("measured", "submission"), inst.data_hash)
    if not rows:
        return []
    groups = ranked_groups(rows, track)
    cols = Columns.of(rows, track)
    truth = true_lid_text(rows) if track == "lid" else None
    lines = [md(f"True LID* of the query points (count): {truth}"), ""] if truth else []
    main = [g for g in groups if g[0] != "shortcut"]
    if main:
        lines += [_md_measured(main, cols), ""]
    cut = [g for g in groups if g[0] == "shortcut"]
    if cut:
        lines += [f"*{md(GROUP_NOTE)}*", "", _md_measured(cut, cols), ""]
    foot = footnotes(rows, track)
    if foot:
        lines += ["\\\n".join(md(f) for f in foot), ""]  # a trailing backslash breaks the line
    plots = board.plots.get((t.name, t.version, inst.data_hash), {})
    imgs = [f"![{label} on {md(t.name)}]({plots[k]})" for k, label in PLOT_KINDS if k in plots]
    if imgs:
        lines += [" ".join(imgs), ""]
    return lines


def _md_gap(board: Board, t: TaskFacts) -> list[str]:
    """Public beside held-out for the task's detectors with held-out results (none: nothing)."""
    gaps = gap_rows(board, t)
    if not gaps:
        return []
    rows = [[md(g.group), md(g.detector), _source_md(g.first), *[md(c) for c in gap_cells(g)]] for g in gaps]
    return ["#### Public and held-out", "", md(GAP_NOTE), "",
            tabulate(rows, headers=["group", "detector", "source", *[md(h) for h in gap_heads(t)]],
                     tablefmt="github", disable_numparse=True), ""]


def _md_fidelity(board: Board) -> list[str]:
    """The published Stable Diffusion numbers beside each text-to-image task's (none: nothing)."""
    fid = fidelity(board)
    if fid is None:
        return []
    rows = [[md(text) for text, _ in fid.cells(fr)] for fr in fid.rows]
    cause = f" [{md(CAUSE_DOC)}]({_md_url(CAUSE_HREF)})"
    pairs = [[md(c) for c in fid.agreement_cells(a)[:-1]] + [md(a.verdict()) + (cause if a.disagrees else "")]
             for a in fid.agreements]
    notes = [md(fid.table_line(k)) for k in range(1, len(fid.tables) + 1)] + [md(line) for line in fid.task_lines()]
    return [f"### {md(FIDELITY_TITLE)}", "", md(FIDELITY_NOTE), "",
            tabulate(rows, headers=[md(h) for h in fid.heads()], tablefmt="github", disable_numparse=True), "",
            "\\\n".join(notes), "", md(AGREEMENT_NOTE), "",
            tabulate(pairs, headers=[md(h) for h in fid.agreement_heads()], tablefmt="github",
                     disable_numparse=True), ""]


def _md_head(board: Board) -> list[str]:
    """Title, introduction, hardware and the overviews."""
    lines = ["# mmh-bench leaderboard", "", INTRO, ""]
    hw = board.hardware()
    if hw:
        lines += ["Hardware: " + "; ".join(md(h) for h in hw), ""]
    for title, note, heads, rows in overviews(board):
        lines += [f"## {title}", "", md(note), "",
                  tabulate([[md(c) for c in r] for r in rows], headers=[md(c) for c in heads],
                           tablefmt="github", disable_numparse=True), ""]
    return lines


def _md_task(board: Board, t: TaskFacts, track: str) -> list[str]:
    """A task's part: facts, the public/held-out gap, replicate summaries, a table per instance,
    published numbers."""
    lines = [f"### {md(t.name)} (v{md(t.version)})", ""]
    insts = board.instances(t)
    if len(insts) == 1:
        lines += [", ".join(md(p) for p in t.fact_parts() + insts[0].fact_parts()), ""]
        lines += _md_instance(board, t, insts[0], track)
    else:
        lines += [", ".join(md(p) for p in t.fact_parts()), ""]
        if insts:
            lines += [f"**{md(multi_instance_line(board, t))}**", ""]
        lines += _md_gap(board, t)
        for reps in board.replicates(t).values():
            lines += _md_replicates(summarize(board, t, reps))
        for inst in insts:
            lines += [f"#### Instance {md(inst.id)} ({md(kind_label(inst.kind))})", "",
                      ", ".join(md(p) for p in inst.fact_parts(with_id=False)), ""]
            lines += _md_instance(board, t, inst, track)
    reported = board.rows_for(t, ("reported",))
    if reported:
        lines += [f"#### {REPORTED_TITLE}", "", md(REPORTED_NOTE), ""] + _md_reported(reported, track)
    return lines


def _with_fidelity(family: str, track: str) -> bool:
    return family == CPU_FAMILY and track == "memorization"


def render_markdown(results: list[dict[str, Any]] | Board) -> str:
    """The whole board as one Markdown document (every task's tables in it), from a
    :class:`Board` or validated result documents; :func:`markdown_pages` splits it for the store."""
    board = results if isinstance(results, Board) else board_from_results(results)
    lines = _md_head(board)
    for family, track, tasks in board.tables():
        lines += [f"## {md(section_title(family, track))}", ""]
        if _with_fidelity(family, track):
            lines += _md_fidelity(board)
        for t in tasks:
            lines += _md_task(board, t, track)
    return "\n".join(lines)


#: the folder of the per-task pages, and the fidelity page, beside README.md
TASKS_DIR = "tasks"
FIDELITY_PAGE = "fidelity.md"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def task_page(board: Board, t: TaskFacts) -> str:
    """The task's page, relative to README.md: ``tasks/<task>.md`` (with the version where the
    board holds several, and a digest where the name is not a plain file name)."""
    versions = sum(1 for name, _ in board.tasks if name == t.name)
    stem = t.name if versions == 1 and _SAFE_NAME.fullmatch(t.name) else plot_slug(t.name, t.version)
    return f"{TASKS_DIR}/{stem}.md"


def _up(lines: list[str]) -> list[str]:
    """A page below README.md: its plots' paths climb one folder."""
    return [re.sub(r"\]\((plots/)", r"](../\1", x) if x.startswith("![") else x for x in lines]


def markdown_pages(board: Board) -> dict[str, str]:
    """The Markdown board as the store keeps it: ``README.md`` (introduction, overviews and a link to
    each task's page), ``tasks/<task>.md`` per task, ``fidelity.md`` where the text-to-image
    fidelity table is shown. The same parts as :func:`render_markdown`, none repeated."""
    head = _md_head(board)  # the introduction folded away: the overviews come first
    lines = head[:2] + ["<details><summary>How to read this board</summary>", "", INTRO, "", "</details>", ""] + head[4:]
    pages: dict[str, str] = {}
    lines += ["## Tasks", "", "Each task's page holds its tables (a table per instance, the replicate summaries, "
              "public beside held-out), notes and plots. The interactive page is [index.html](index.html); "
              "the mitigation track is in [MITIGATION.md](MITIGATION.md).", ""]
    for family, track, tasks in board.tables():
        title = md(section_title(family, track))
        links = [f"[{md(t.name)}]({task_page(board, t)})" for t in tasks]
        if _with_fidelity(family, track) and fidelity(board) is not None:
            links.append(f"[{md(FIDELITY_TITLE)}]({FIDELITY_PAGE})")
            pages[FIDELITY_PAGE] = "\n".join([f"# {md(FIDELITY_TITLE)}", "", "[leaderboard](README.md)", ""]
                                             + _md_fidelity(board)[2:])
        lines += [f"- **{title}**: " + " · ".join(links)]
        for t in tasks:
            body = _up(_md_task(board, t, track))
            pages[task_page(board, t)] = "\n".join(
                [f"# {md(t.name)} (v{md(t.version)})", "", f"[leaderboard](../README.md) · {title}", ""] + body[2:])
    return {"README.md": "\n".join(lines + [""]), **pages}
