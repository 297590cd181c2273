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

Every file is validated first (:mod:`mmh_bench.leaderboard.schema`); a rejected file is logged and left out,
and never changes how the accepted ones render. Every string from a file is escaped: with
``html.escape`` in the page, and as text (HTML entities plus Markdown punctuation) in Markdown.
The page is one self-contained file: inline CSS and vanilla JS (no CDN; ``static/``), pinned by a
Content-Security-Policy hash of their contents.

Every number the tables show comes from one column table, :data:`.columns.COLUMNS`: both
renderers, the replicate summary and the overview read it, so a new column is one entry there.

Modules: :mod:`.model` (rows and facts), :mod:`.collect` (reading the store), :mod:`.columns`
(the column table and cell text), :mod:`.cells` (notes under a table and the ranking, shared by
both renderers), :mod:`.overview`, :mod:`.replicates`, :mod:`.reported`, :mod:`.fidelity` (the
published Stable Diffusion numbers beside the text-to-image tasks'), :mod:`.markdown`,
:mod:`.page` (HTML) and :mod:`.plots`; the names imported here are the public ones.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from mmh_bench.files import atomic_write_text
from mmh_bench.leaderboard.store import TaskCatalog
from mmh_bench.task.spec import TaskSpec
from .cells import INTRO
from .columns import COLUMNS, LID_METRICS, MEM_METRICS, TPR_SHOWN, Column, Columns
from .collect import collect_board
from .markdown import FIDELITY_PAGE, TASKS_DIR, markdown_pages, md, render_markdown, task_page
from .model import (ACCESS_FLAGS, FAMILIES, GROUP_NOTE, GROUP_ORDER, KIND_LABEL, MIN_SUBTYPE_POS, SUBTYPES,
                    Board, InstanceFacts, Row, TaskFacts, board_from_results)
from .overview import OVERVIEW_NOTE, OVERVIEW_TITLE, overview, overviews
from .page import CSS, JS, PageSection, h, render_html
from .plots import PLOTS_DIR, pareto_front, render_plots

log = logging.getLogger(__name__)


def render_board(results_dir: str | Path, out_dir: str | Path, *,
                 submissions_dir: str | Path | None = None, reported_dir: str | Path | None = None,
                 tasks: TaskCatalog | Iterable[TaskSpec | str | Path] | None = None,
                 plots: bool = True, shipped_reported: bool = True,
                 sections: Sequence[PageSection] = ()) -> list[Path]:
    """Validate the store and write ``README.md`` (the overviews), ``tasks/<task>.md`` (each task's
    tables), ``fidelity.md``, ``index.html`` and ``plots/*.png`` into ``out_dir``; pages and plots
    of tasks no longer on the board are removed.

    Rejected files are logged as warnings (``mmh-bench validate`` lists them) and left out.
    ``shipped_reported``: also show the published numbers of :mod:`mmh_bench.leaderboard.reported`.
    ``sections``: other tracks' parts of the page (the mitigation track's), rendered by their caller.
    Returns the files written.
    """
    board = collect_board(results_dir, submissions_dir=submissions_dir, reported_dir=reported_dir,
                          tasks=tasks, shipped_reported=shipped_reported)
    for bad in board.rejected:
        log.warning("left out %s", bad)
    out = Path(out_dir)
    written = render_plots(board, out) if plots else []
    pages = {out / rel: text for rel, text in markdown_pages(board).items()}
    pages[out / "index.html"] = render_html(board, sections)
    for path, text in pages.items():
        atomic_write_text(path, text)
    for stale in (out / TASKS_DIR).glob("*.md") if (out / TASKS_DIR).is_dir() else ():
        if stale not in pages:
            stale.unlink()
    if (out / FIDELITY_PAGE) not in pages and (out / FIDELITY_PAGE).is_file():
        (out / FIDELITY_PAGE).unlink()
    return list(pages) + written


__all__ = ["ACCESS_FLAGS", "Board", "COLUMNS", "CSS", "Column", "Columns", "FAMILIES", "GROUP_NOTE", "GROUP_ORDER", "INTRO", "InstanceFacts",
           "JS", "KIND_LABEL", "LID_METRICS", "MEM_METRICS", "MIN_SUBTYPE_POS", "OVERVIEW_NOTE", "OVERVIEW_TITLE", "PageSection",
           "PLOTS_DIR", "Row", "SUBTYPES", "TPR_SHOWN", "TaskFacts", "board_from_results", "collect_board", "h",
           "markdown_pages", "md", "overview", "overviews", "pareto_front", "render_board", "render_html", "render_markdown",
           "render_plots", "task_page"]
