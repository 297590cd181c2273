"""``mmh-bench leaderboard``: render the board (Markdown, HTML, plots) from a results folder."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import DEFAULT_BOARD, DEFAULT_RESULTS


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from mmh_bench.leaderboard.board import render_board
    from mmh_bench.mitigation.board import page_section
    mitigation = Path(args.results).parent / "mitigation-results" if args.mitigation is None else Path(args.mitigation)
    section = page_section(mitigation, Path(args.out) / "plots") if mitigation.is_dir() else None
    for path in render_board(args.results, args.out, sections=[section] if section else []):
        print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("leaderboard", help="render the leaderboard from results",
                       description="Render the leaderboard from a results folder: README.md (the overviews, "
                                   "linking a page per task under tasks/), index.html (static, sortable, "
                                   "filterable; with the mitigation track) and ROC / cost plots.")
    s.add_argument("--results", default=DEFAULT_RESULTS, help=f"results folder (default: {DEFAULT_RESULTS})")
    s.add_argument("--mitigation", default=None, metavar="DIR",
                   help="mitigation results shown on the page's mitigation track (default: mitigation-results "
                        "beside --results, where it exists)")
    s.add_argument("--out", default=DEFAULT_BOARD, help=f"output folder (default: {DEFAULT_BOARD})")
    s.set_defaults(func=_cmd_leaderboard)
