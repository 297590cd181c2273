"""The mitigation board reads one column table (mmh_bench.mitigation.columns), as the detection
board reads its own: headers, cells and sort values come from it, at one precision per column."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmh_bench.mitigation import board, columns as mcols
from mmh_bench.mitigation.columns import COLUMNS, KNN, MEMBENCH, Column, MitigationRow

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "leaderboard" / "mitigation-results"


@pytest.fixture(scope="module")
def groups():
    got, rejected = board.collect(RESULTS, submissions=ROOT / "no-such-folder")
    assert got and not rejected
    return got


def test_headers_and_cells_come_from_the_column_table(groups, monkeypatch):
    rows = next(iter(groups.values()))
    assert board.headers(rows) == ["mitigator", "setting", "memorized [95% CI]", "DD / OD", "precision", "recall",
                                   "cond. accuracy", "extra NFE/sample", "seconds"]
    extra = Column("unchanged", "unchanged share", lambda r: r.m.unchanged_share, track=None)
    monkeypatch.setattr(mcols, "COLUMNS", COLUMNS + (extra,))
    assert board.headers(rows)[-1] == "unchanged share"
    table = board.table_cells(rows)
    res, cells = next((r, cells) for r, cells in table if r.mitigator == "none")
    assert cells[-1] == (f"{res.metrics.unchanged_share:.3f}", res.metrics.unchanged_share)
    assert all(len(cells) == len(board.headers(rows)) for _, cells in table)


def test_membench_tables_have_their_own_columns():
    heads = [c.head for c in mcols.columns(MEMBENCH)]
    assert heads == ["copied: max SSCD > 0.5 [95% CI]", "VM / TM", "mean max SSCD", "CLIP score",
                     "extra NFE/sample", "seconds"]
    assert "precision" in [c.head for c in mcols.columns(KNN)]


def test_every_column_prints_one_precision_and_settings_sort_by_value(groups):
    for rows in groups.values():
        heads = board.headers(rows)
        table = board.table_cells(rows)
        for i, head in enumerate(heads[2:], 2):
            texts = [cells[i][0] for r, cells in table if r.status == "ok"]
            decimals = {len(x.split(".")[1]) for t in texts for x in re.findall(r"\d+\.\d+", t)}
            assert len(decimals) <= 1, (head, texts)
        for name in {r.mitigator for r, _ in table}:
            keys = [cells[1][1] for r, cells in table if r.mitigator == name]
            assert keys == sorted(keys), name


def test_extra_nfe_counts_from_the_unmitigated_row(groups):
    rows = next(iter(groups.values()))
    res = next(r for r in rows if r.mitigator != "none" and r.status == "ok")
    assert MitigationRow(res).result is res
    assert mcols._extra_nfe(MitigationRow(res)) is None  # no unmitigated row: no extra cost
    assert mcols._extra_nfe(MitigationRow(res, 2.0)) == res.cost.nfe_per_sample - 2.0
    failed = res.model_copy(update={"status": "failed", "metrics": None, "cost": None, "error": "boom"})
    [(_, cells)] = board.table_cells([failed])
    assert [t for t, _ in cells][2] == "failed" and cells[-1][0] == "boom"


def test_the_committed_board_is_what_the_results_render(groups):
    """MITIGATION.md's tables are what the committed results render (the column table changed how
    they are built, not a number)."""
    text = board.render_markdown(RESULTS)
    committed = (ROOT / "leaderboard" / "MITIGATION.md").read_text()
    assert [x for x in text.splitlines() if x.startswith("|")] == \
        [x for x in committed.splitlines() if x.startswith("|")]


def test_the_page_section_escapes_what_a_file_says(groups, tmp_path):
    """A failed result's error (free text from a file) stays text on the page."""
    from mmh_bench.mitigation.board import page_section
    from mmh_bench.mitigation.result import write_result
    rows = next(iter(groups.values()))
    res = next(r for r in rows if r.mitigator != "none")
    bad = res.model_copy(update={"status": "failed", "metrics": None, "cost": None,
                                 "error": "</td><script>alert(1)</script>"})
    path = tmp_path / "res" / res.task / f"v{res.task_version}" / res.instance.id / "x.json"
    path.parent.mkdir(parents=True)
    write_result(path, bad)
    anchor, title, body = page_section(tmp_path / "res")
    assert anchor == "mitigation" and "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert page_section(tmp_path / "empty") is None


def test_the_page_section_shows_the_pareto_plots_mitigate_wrote(tmp_path):
    from mmh_bench.mitigation.board import page_section, plot_name
    (tmp_path / "plots").mkdir()
    groups, _ = board.collect(RESULTS, submissions=ROOT / "no-such-folder")
    (task, _, inst), *_ = sorted(groups)
    (tmp_path / "plots" / plot_name(task, inst)).write_bytes(b"png")
    _, _, body = page_section(RESULTS, tmp_path / "plots")
    assert body.count("<figure>") == 1 and f'src="plots/{plot_name(task, inst)}"' in body


def test_committed_mitigation_results_are_on_published_instances():
    """The mitigation board measures the instances users pull: a result on an instance that is no
    longer published would make `make bench` re-measure and rewrite the board on a fresh clone."""
    published = ROOT / "leaderboard" / "instances"
    measured = {(p.parts[-3], p.name) for p in RESULTS.glob("*/v*/*") if p.is_dir()}
    assert measured
    stale = sorted((task, inst) for task, inst in measured if not (published / task / inst).is_dir())
    assert stale == [], f"mitigation results on unpublished instances: {stale}"
