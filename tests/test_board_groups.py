"""Every detector group has its place on the board, its description in the board's introduction and
in the README's list of groups (the generation-time group once rendered after chance, undescribed)."""
from __future__ import annotations

from pathlib import Path

from mmh_bench.api.detector import GROUPS
from mmh_bench.leaderboard.board import GROUP_ORDER, INTRO

ROOT = Path(__file__).parent.parent


def test_every_group_is_ordered_and_described():
    assert set(GROUP_ORDER) == set(GROUPS)
    assert GROUP_ORDER[:2] == ("reference", "generation-time") and GROUP_ORDER[-1] == "chance"
    for g in GROUPS:
        assert f"*{g}*" in INTRO, g
    readme = " ".join((ROOT / "README.md").read_text().split())
    groups = readme.split("- **Groups.**")[1].split("- **")[0]
    for g in GROUPS:
        assert g.replace("training-set oracle", "training-set oracles").split()[0] in groups, g
    assert "generation-time detectors (read on the generation's own replayed trajectory" in groups
