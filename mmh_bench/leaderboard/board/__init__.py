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
from typing import Iterable

from mmh_bench.files import atomic_write_text
from mmh_bench.leaderboard.store import TaskCatalog
from mmh_bench.task.spec import TaskSpec
from .cells import INTRO
from .columns import COLUMNS, LID_METRICS, MEM_METRICS, TPR_SHOWN, Column, Columns
from .collect import collect_board
from .markdown import md, render_markdown
from .model import (ACCESS_FLAGS, FAMILIES, GROUP_NOTE, GROUP_ORDER, KIND_LABEL, MIN_SUBTYPE_POS, SUBTYPES,
                    Board, InstanceFacts, Row, TaskFacts, board_from_results)
from .overview import OVERVIEW_NOTE, OVERVIEW_TITLE, overview, overviews
from .page import CSS, JS, h, render_html
from .plots import PLOTS_DIR, pareto_front, render_plots

log = logging.getLogger(__name__)


def render_board(results_dir: str | Path, out_dir: str | Path, *,
                 submissions_dir: str | Path | None = None, reported_dir: str | Path | None = None,
                 tasks: TaskCatalog | Iterable[TaskSpec | str | Path] | None = None,
                 plots: bool = True, shipped_reported: bool = True) -> list[Path]:
    """Validate the store and write ``README.md``, ``index.html`` and ``plots/*.png`` into ``out_dir``.

    Rejected files are logged as warnings (``mmh-bench validate`` lists them) and left out.
    ``shipped_reported``: also show the published numbers of :mod:`mmh_bench.leaderboard.reported`.
    Returns the files written.
    """
    board = collect_board(results_dir, submissions_dir=submissions_dir, reported_dir=reported_dir,
                          tasks=tasks, shipped_reported=shipped_reported)
    for bad in board.rejected:
        log.warning("left out %s", bad)
    out = Path(out_dir)
    written = render_plots(board, out) if plots else []
    readme, page = out / "README.md", out / "index.html"
    atomic_write_text(readme, render_markdown(board))
    atomic_write_text(page, render_html(board))
    return [readme, page] + written


__all__ = ["ACCESS_FLAGS", "Board", "COLUMNS", "CSS", "Column", "Columns", "FAMILIES", "GROUP_NOTE", "GROUP_ORDER", "INTRO", "InstanceFacts",
           "JS", "KIND_LABEL", "LID_METRICS", "MEM_METRICS", "MIN_SUBTYPE_POS", "OVERVIEW_NOTE", "OVERVIEW_TITLE",
           "PLOTS_DIR", "Row", "SUBTYPES", "TPR_SHOWN", "TaskFacts", "board_from_results", "collect_board", "h",
           "md", "overview", "overviews", "pareto_front", "render_board", "render_html", "render_markdown",
           "render_plots"]
