"""Board columns that appear only when rows carry them: the closest-rule TPR shift and AUROC by
negative source (results edited from the tiny store's real ones)."""
from __future__ import annotations

import html

from board_store import dump, load, with_negatives
from test_board import _at, _md_tables, _render, _task_part, catalog, store  # noqa: F401 (fixtures)

SHIFT = "closest-rule shift @1%"
TPR1 = "TPR@1%FPR [95% CI]"
SOURCES = "AUROC by negative source"


def _edit(store, det: str, n_neg: int = 600, **metrics) -> None:
    """``det``'s result with ``n_neg`` negatives (600 resolve 1% FPR) and metrics fields replaced
    (a value of None deletes the field)."""
    doc = with_negatives(load(_at(store, det)), n_neg)
    for key, value in metrics.items():
        if value is None:
            doc["metrics"].pop(key, None)
        else:
            doc["metrics"][key] = value
    dump(_at(store, det), doc)


def _tpr(strict: float, closest: float) -> dict:
    return {"tpr_at_fpr": {"0.001": 0.0, "0.01": strict, "0.05": max(strict, closest)},
            "tpr_at_fpr_closest": {"0.001": 0.0, "0.01": closest, "0.05": max(strict, closest)}}


def _table(readme: str) -> tuple[list[str], dict[str, list[str]]]:
    heads, *rows = _md_tables(_task_part(readme))[0]
    return heads, {r[heads.index("detector")]: r for r in rows}


def test_closest_rule_shift_beside_strict_tpr(store, catalog):
    _edit(store, "norm", **_tpr(0.41, 0.48))
    _edit(store, "eps-norm", **_tpr(0.2, 0.2))
    _edit(store, "random", **_tpr(0.1, 0.13))
    _edit(store, "nn-ratio", tpr_at_fpr_closest=None)  # a result older than the closest-point field
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    heads, rows = _table(readme)
    assert heads.index(SHIFT) == heads.index(TPR1) + 1
    assert {d: r[heads.index(SHIFT)] for d, r in rows.items()} == {
        "norm": "+0.070", "eps-norm": "0.000", "random": "+0.030", "nn-ratio": "–"}
    assert rows["norm"][heads.index(TPR1)].startswith("0.410")  # the strict number stays the one shown
    line = ("closest-rule shift @1% (closest-point TPR minus strict TPR@1%FPR) over the 3 rows that "
            "have both: largest 0.070 (norm), median 0.030.")
    assert line in readme and html.escape(line) in page
    assert f">{SHIFT}</th>" in page and '<td data-v="0.07' in page  # sortable by the signed shift


def test_shift_hidden_where_one_percent_is_not_resolvable(store, catalog):
    for det in ("norm", "eps-norm", "random", "nn-ratio"):
        _edit(store, det, n_neg=200, **_tpr(0.3, 0.5))
    readme, _, _ = _render(store, catalog)
    heads, rows = _table(readme)
    assert {r[heads.index(SHIFT)] for r in rows.values()} == {"n/r"}
    assert "closest-point TPR minus strict" not in readme  # no row to summarise


def test_no_shift_column_without_closest_values(store, catalog):
    for det in ("norm", "eps-norm", "random", "nn-ratio"):
        _edit(store, det, tpr_at_fpr_closest=None)
    readme, page, _ = _render(store, catalog)
    assert SHIFT not in _table(readme)[0] and f"{SHIFT}</th>" not in page


def test_auroc_by_negative_source_column(store, catalog):
    _edit(store, "norm", auroc_by_source={"coco": 0.99, "laion": 0.61, "tux<b>|": None})
    _edit(store, "random", auroc_by_source={"coco": 0.5, "laion": 0.52})
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    heads, rows = _table(readme)
    col = heads.index(SOURCES)
    assert rows["norm"][col] == "coco 0.990 · laion 0.610 · tux&lt;b&gt;\\| n<2"
    assert rows["random"][col] == "coco 0.500 · laion 0.520" and rows["eps-norm"][col] == "–"
    assert "AUROC by negative source: every positive against one source" in readme
    # the page escapes the file's source name and sorts the cell by its hardest source
    assert '<td data-v="0.61">coco 0.990 · laion 0.610 · tux&lt;b&gt;| n&lt;2</td>' in page
    assert "tux<b>" not in page and f">{SOURCES}</th>" in page


def test_no_source_column_without_sources(store, catalog):
    readme, page, _ = _render(store, catalog)
    assert SOURCES not in _table(readme)[0] and f"{SOURCES}</th>" not in page


def test_bad_source_auroc_is_rejected(store, catalog):
    _edit(store, "norm", auroc_by_source={"coco": 1.5})
    _, _, rejected = _render(store, catalog)
    assert len(rejected) == 1 and rejected[0].field.startswith("metrics.auroc_by_source")
