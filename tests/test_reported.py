"""Published numbers shipped with the package (mmh_bench/leaderboard/reported/*.toml): the file validates, bad
entries fail with a message naming file, table, row and field, and the board shows the rows in a
table of their own, escaped, never ranked."""
from __future__ import annotations

import html
from importlib import metadata
from pathlib import Path

import pytest

import mmh_bench.leaderboard.reported as reported
from mmh_bench.leaderboard.board import collect_board, render_html, render_markdown
from mmh_bench.leaderboard.reported import load_reported, reported_files
from mmh_bench.leaderboard.store import known_tasks
from mmh_bench.leaderboard.schema import ReportedMetrics, SchemaError
from mmh_bench.registry import make_detector, parse_ref
from test_board import _md_tables, _render, _task_part, catalog, store  # noqa: F401 (fixtures)


# -- the shipped file ----------------------------------------------------------------------------
def test_shipped_file_validates_against_the_registry():
    assert [p.name for p in reported_files()] == ["lid_benchmarks.toml", "stable_diffusion.toml"]
    rows = load_reported(tasks=known_tasks())
    by_task: dict[str, int] = {}
    for r in rows:
        by_task[r.task] = by_task.get(r.task, 0) + 1
    assert by_task == {"sd-v1-4-jeon": 23, "sd-v2": 22, "sd-v1-4": 7, "sd-v1-5": 5, "lid-skdim": 4}
    names = {ep.name for ep in metadata.entry_points(group="mmh_bench.detectors")}
    assert {parse_ref(r.detector)[0] for r in rows if r.detector} <= names  # every mapping names a real detector
    for ref in {r.detector for r in rows if r.detector}:
        make_detector(ref)  # ... with parameters its constructor takes


def test_ren_le_rows_resolve_to_layer_3_which_is_the_default():
    """Ren et al.'s LE reads cross-attention layer 3 at the first step: every LE row maps to
    exactly that configuration, and the bare detector is the same one (issue 24)."""
    le = [r for r in load_reported() if r.method.startswith("Ren et al. LE")]
    assert len(le) == 6 and {r.detector for r in le} == {"attention-entropy(layer=3)"}
    det = make_detector(le[0].detector)
    assert det.get_params() == make_detector("attention-entropy").get_params() == {
        "n_steps": 1, "generations": 1, "layer": 3}
    assert make_detector("attention-entropy(layer=null)").layer is None  # the all-layer mean, by parameter


def test_shipped_rows_keep_each_source_and_its_tpr_rule():
    rows = load_reported()
    jeon = [r for r in rows if r.source.startswith("Jeon, Kim, No")]
    assert len(jeon) == 44 and {r.tpr_rule for r in jeon} == {"closest-flip"}
    sharp = next(r for r in jeon if r.task == "sd-v1-4-jeon" and r.detector == "sharpness"
                 and r.setting == "n = 1, steps 1")
    assert (sharp.metrics.auroc, sharp.metrics.tpr_at_fpr) == (0.987, {"0.01": 0.908})
    notebook = next(r for r in rows if "det_mem_viz" in r.source)
    assert notebook.tpr_rule == "strict-lt" and notebook.metrics.auroc == 0.994
    assert {r.tpr_rule for r in rows if "icml-2026" in r.source} == {"strict-le"}
    huang = {r.detector: r.metrics.mpe for r in rows if r.source.startswith("Huang, Chen & Chung")}
    assert huang == {"twonn": 11.12, "mle": 18.84, "ess": 20.20, "lpca": 49.81}
    mixed = next(r for r in rows if r.negatives.startswith("Wen-style 2,000"))
    assert mixed.metrics.auroc_ci == [0.986, 0.993] and mixed.metrics.tpr_at_fpr_ci == {"0.01": [0.786, 0.882]}


# -- bad entries ---------------------------------------------------------------------------------
GOOD_TABLE = '''
[[table]]
task = "sd-v2"
source = "Doe et al. 2030, Table 9"
url = "https://example.org/doe"
model = "SD v2.0"
positives = "219 prompts"
negatives = "500 prompts"
tpr_rule = "closest"
protocol = "their own steps"
rows = [
  { method = "first", metrics = { auroc = 0.9, tpr_at_fpr = { "0.01" = 0.5 } } },
  { method = "second", metrics = { auroc = 0.8 } },
]
'''


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("change, message", [
    (('auroc = 0.8 }', 'auroc = 1.2 }'), "row 2 ('second'): field 'metrics.auroc': Input should be less than or equal to 1"),
    (('"0.01" = 0.5', '"1%" = 0.5'), "field 'metrics.tpr_at_fpr.1%.[key]': String should match pattern"),
    (('tpr_rule = "closest"', 'tpr_rule = "nearest"'), "field 'tpr_rule': Input should be 'strict-le'"),
    (('method = "second"', 'method = "second", steps = 5'), "field 'steps': Extra inputs are not permitted"),
    (('metrics = { auroc = 0.8 }', 'metrics = { }'), "a reported row needs an auroc, a tpr_at_fpr or an mpe"),
    (('method = "second"', 'method = "first"'), "row 2 ('first'): repeats bad.toml, table 1"),
    (('task = "sd-v2"', 'task = "sd-v9"'), "field 'task': unknown task 'sd-v9'"),
    (('url = "https://example.org/doe"', 'url = "javascript:alert(1)"'), "field 'url': must be an http"),
    (('rows = [', 'rowz = [1]\nrows = ['), "field 'rowz': Extra inputs are not permitted"),
    (('method = "second"', 'method = "second", detector = "cfg-norm(n_steps)"'),
     "field 'detector': detector reference 'cfg-norm(n_steps)': parameters are name=value"),
])
def test_bad_entry_fails_with_a_clear_message(tmp_path, change, message):
    path = _write(tmp_path, GOOD_TABLE.replace(*change))
    with pytest.raises(SchemaError) as err:
        load_reported(path, tasks=known_tasks())
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "table 1 ('Doe et al. 2030, Table 9')" in text, text
    assert message in text, text


def test_good_table_loads_and_file_level_errors(tmp_path):
    rows = load_reported(_write(tmp_path, GOOD_TABLE), tasks=known_tasks())
    assert [r.method for r in rows] == ["first", "second"] and rows[1].metrics.tpr_at_fpr == {}
    for text, message in (("[[table]]\ntask = 'sd-v2'\n", "needs 'rows'"), ("x = 1\n", "unknown top-level key 'x'"),
                          ("rows = [", "not readable TOML"), ("description = 'd'\n", r"at least one \[\[table\]\]")):
        with pytest.raises(SchemaError, match=message):
            load_reported(_write(tmp_path, text))


# -- on the board --------------------------------------------------------------------------------
HOSTILE = '<img src=x onerror="alert(1)">|*m*'


@pytest.fixture()
def tiny_reported(tmp_path, monkeypatch):
    """A shipped-style file with a row on the tiny task, better than every measured row."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "t.toml").write_text(GOOD_TABLE.replace('task = "sd-v2"', 'task = "tiny"')
                                   .replace('method = "first"', f"method = '{HOSTILE}', detector = \"norm\"")
                                   .replace("auroc = 0.9,", "auroc = 0.9999,"))
    monkeypatch.setattr(reported, "REPORTED_DIR", folder)
    return folder


def test_reported_rows_render_in_their_own_table_never_ranked(store, catalog, tiny_reported):
    plain = collect_board(store / "results", tasks=catalog, shipped_reported=False)
    board = collect_board(store / "results", tasks=catalog)
    assert not board.rejected
    readme, page = render_markdown(board), render_html(board)
    part = _task_part(readme)
    measured, rep = part.split("#### Reported, not re-measured")
    assert measured.rstrip() == _task_part(render_markdown(plain)).rstrip()  # the measured table as without them
    heads, *rows = _md_tables(rep)[0]
    assert heads[-2:] == ["TPR rule", "source"] and heads[0] == "method (as published)"
    assert rows[0][:3] == ["&lt;img src=x onerror=\"alert(1)\"&gt;\\|\\*m\\*", "–", "norm"]
    assert rows[0][heads.index("AUROC [95% CI]")] == "0.9999" and rows[0][-2:] == ["ROC point with FPR closest to x", "\\[1\\]"]
    assert "\\[1\\] [Doe et al. 2030, Table 9](https://example.org/doe); how the protocol differs: their own steps" in rep
    # never in an overview (0.9999 would top it) nor a rank column
    assert "0.9999" not in readme.split("## Synthetic")[0]
    # the page: a table of its own, escaped, linked to its source note
    assert "<img src=x" not in page and html.escape(HOSTILE) in page
    table = page.split('<table class="board reported" id="t-tiny-v1-reported"')[1].split("</table>")[0]
    assert table.count('data-kind="reported"') == 2 and 'data-kind="measured"' not in table
    assert '<a href="#t-tiny-v1-reported-s1">[1]</a>' in table
    assert 'id="t-tiny-v1-reported-s1">[1] <span class="badge b-reported">reported, not re-measured</span>' in page
    measured_tables = page.split('<table class="board reported"')[0]
    assert 'data-kind="reported"' not in measured_tables


def test_a_broken_shipped_file_is_a_rejection_not_a_crash(store, catalog, tiny_reported):
    (tiny_reported / "t.toml").write_text(GOOD_TABLE.replace("auroc = 0.8", "auroc = 8"))
    board = collect_board(store / "results", tasks=catalog)
    assert len(board.rejected) == 1 and "metrics.auroc" in board.rejected[0].reason
    assert not [r for r in board.rows if r.kind == "reported"]


def test_shipped_rows_on_the_real_board(store, catalog):
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    sd = _task_part(readme, "sd-v1-4-jeon", catalog["sd-v1-4-jeon"].version)
    assert sd.count("#### Reported, not re-measured") == 1 and "| #" not in sd  # no measured (ranked) table
    assert "FPR closest to x; labels flipped if AUROC &lt; 0.5" in sd and "last ROC point with FPR &lt; x" in sd
    assert f'id="t-sd-v2-v{catalog["sd-v2"].version}-reported"' in page


def test_lid_reported_rows_show_the_global_id_mpe_column():
    from mmh_bench.leaderboard.board.model import Row
    from mmh_bench.leaderboard.board.reported import reported_cells, reported_heads
    rows = [Row(kind="reported", task="lid-skdim", version="1", family="lid", track="lid", detector="twonn",
                access=None, metrics=r.metrics, method=r.method, model=r.model,
                tpr_rule=r.tpr_rule)
            for r in load_reported() if r.task == "lid-skdim"]
    heads = reported_heads(rows, "lid")
    assert heads[:5] == ["method (as published)", "model", "MAE", "concordance", "MPE % (global ID)"]
    cells = [reported_cells(r, 1, rows, "lid") for r in rows]
    assert all(len(c) == len(heads) for c in cells)
    assert [c[4][0] for c in cells] == ["11.120", "18.840", "20.200", "49.810"] and cells[0][2][0] == "–"
    without = [Row(kind="reported", task="t", version="1", family="lid", track="lid", detector="x", access=None,
                   metrics=ReportedMetrics(mae=0.5))]
    assert "MPE % (global ID)" not in reported_heads(without, "lid")
