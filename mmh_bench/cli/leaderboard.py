"""``mmh-bench leaderboard``: render the board (Markdown, HTML, plots) from a results folder."""
from __future__ import annotations

import argparse
from typing import Any

from .options import DEFAULT_BOARD, DEFAULT_RESULTS


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from mmh_bench.leaderboard.board import render_board
    for path in render_board(args.results, args.out):
        print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("leaderboard", help="render the leaderboard from results",
                       description="Render the leaderboard from a results folder: README.md (Markdown), "
                                   "index.html (static, sortable, filterable) and ROC / cost plots.")
    s.add_argument("--results", default=DEFAULT_RESULTS, help=f"results folder (default: {DEFAULT_RESULTS})")
    s.add_argument("--out", default=DEFAULT_BOARD, help=f"output folder (default: {DEFAULT_BOARD})")
    s.set_defaults(func=_cmd_leaderboard)
