"""The leaderboard: schema, hostile input, escaping, reported numbers, submissions, plots."""
from __future__ import annotations

import copy
import html
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from board_store import (add_hostile_row, as_instance, copy_store, dump, load, on_task, renamed_task,
                         result_file, with_negatives)
from mmh_bench.leaderboard.board import (GROUP_NOTE, collect_board, md, overview, overviews, pareto_front, render_board,
                             render_html, render_markdown)
from mmh_bench.leaderboard.store import ResultError, group_of, known_tasks, read_result, scan_results
from mmh_bench.task.spec import load_spec
from mmh_bench.leaderboard.schema import MAX_FILE_BYTES, ReportedFile, SchemaError, validate_model, validate_result


@pytest.fixture()
def store(tiny_spec, tmp_path):
    return copy_store(tiny_spec, tmp_path)


@pytest.fixture()
def catalog(tiny_spec):
    return known_tasks([tiny_spec])


def _render(root: Path, catalog) -> tuple[str, str, list]:
    board = collect_board(root / "results", tasks=catalog)
    return render_markdown(board), render_html(board), board.rejected


def _good(root: Path) -> dict:
    return load(_at(root, "norm"))


def _at(root: Path, det: str, task: str = "tiny", version: str = "1") -> Path:
    return result_file(root, det, task, version)


# -- the schema accepts what the evaluator writes ------------------------------------------------
def test_evaluator_output_validates(store, catalog):
    scan = scan_results(store / "results", tasks=catalog)
    assert not scan.rejected and len(scan.accepted) == 4
    assert {res.access for res in scan.results} == {"samples", "model", "train_data"}


def test_unknown_task_without_catalog_entry(store):
    # tiny is not a registered task: the default catalog (the registry) refuses it
    scan = scan_results(store / "results")
    assert not scan.accepted and all("unknown task 'tiny'" in r.reason for r in scan.rejected)


# -- hostile input -------------------------------------------------------------------------------
def _mut(det, fn, task="tiny", version="1"):
    """Write the good result, renamed to ``det`` and changed by ``fn``, at its canonical place."""
    def make(root, good):
        doc = copy.deepcopy(good)
        doc["detector"] = det
        fn(doc)
        path = _at(root, det, task, version)
        dump(path, doc)
        return path
    return make


def _raw(det, data: bytes):
    def make(root, good):
        path = _at(root, det)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path
    return make


def _set(path: str | tuple[str, ...], value):
    def fn(doc):
        *head, last = path.split(".") if isinstance(path, str) else path
        d = doc
        for k in head:
            d = d[k]
        d[last] = value
    return fn


def _truncated(root, good):
    path = _at(root, "cut")
    good = dict(good, detector="cut")
    text = json.dumps(good)
    path.write_text(text[: len(text) // 2])
    return path


def _oversized(root, good):
    path = _at(root, "big")
    path.write_text(json.dumps(dict(good, detector="big")) + " " * (MAX_FILE_BYTES + 10))
    return path


def _duplicate(root, good):
    better = copy.deepcopy(good)  # same (task, detector) as an entry on the board, better numbers
    better["metrics"]["auroc"] = 0.999
    path = root / "results" / "tiny" / "v1" / "norm (copy).json"
    dump(path, better)
    return path


def _traversal(root, good):
    doc = dict(copy.deepcopy(good), detector="../../../etc/evil")
    path = root / "results" / "tiny" / "v1" / "evil.json"
    dump(path, doc)
    return path


def _symlink(root, good):
    outside = root.parent / "outside.json"
    dump(outside, dict(good, detector="linked"))
    path = _at(root, "linked")
    os.symlink(outside, path)
    return path


def _dup_key(root, good):
    text = json.dumps(dict(good, detector="twice"))
    path = _at(root, "twice")
    path.write_text(text.replace('"status": "ok"', '"status": "ok", "status": "ok"'))
    return path


def _wrong_hash(doc):
    doc["task_hash"] = doc["provenance"]["spec_hash"] = "0123456789abcdef"


def _no_prov(doc):
    del doc["provenance"]


def _not_an_object(root, good):
    path = _at(root, "list")
    dump(path, [good])
    return path


HOSTILE = {
    "malformed JSON": (_raw("junk", b'{"task": "tiny", "detector": '), "not valid JSON", ""),
    "truncated": (_truncated, "not valid JSON", ""),
    "oversized": (_oversized, "byte limit", ""),
    "not an object": (_not_an_object, "must be a JSON object", "(top level)"),
    "not UTF-8": (_raw("latin", b'{"task": "t\xe9"}'), "not UTF-8", ""),
    "deeply nested": (_raw("deep", b"[" * 200000), "not valid JSON", ""),
    "number as string": (_mut("str", _set("metrics.auroc", "0.97")), "valid number", "metrics.auroc"),
    "count as float": (_mut("flt", _set("n_samples", 300.0)), "valid integer", "n_samples"),
    "bool as count": (_mut("boo", _set("n_memorized", True)), "valid integer", "n_memorized"),
    "NaN literal": (_raw("nan", b'{"auroc": NaN}'), "NaN is not a number", ""),
    "infinite number": (_raw("inf", b'{"auroc": 1e999}'), "infinity", ""),
    "missing provenance": (_mut("noprov", _no_prov), "Field required", "provenance"),
    "AUROC above 1": (_mut("high", _set("metrics.auroc", 1.3)), "less than or equal to 1", "metrics.auroc"),
    "AUROC below 0": (_mut("low", _set("metrics.per_subtype.DD.auroc", -0.1)), "greater than or equal to 0",
                      "metrics.per_subtype.DD.auroc"),
    "unknown task": (_mut("ghost", _set("task", "no-such-task"), task="no-such-task"), "unknown task", "task"),
    "wrong task hash": (_mut("hash", _wrong_hash), "does not match the current spec", "task_hash"),
    "stale task version": (_mut("old", _set("task_version", "0"), version="0"), "not the current version",
                           "task_version"),
    "hash differs from provenance": (_mut("prov", _set("provenance.spec_hash", "0" * 16)), "differs from task_hash",
                                     ""),
    "unknown field": (_mut("extra", _set("claimed_auroc", 1.0)), "Extra inputs are not permitted", "claimed_auroc"),
    "ok without metrics": (_mut("empty", _set("metrics", None)), "needs metrics", ""),
    "counts disagree": (_mut("count", _set("n_memorized", 3)), "disagree", ""),
    "bad access level": (_mut("acc", _set("access", "everything")), "unknown access level", "access"),
    "date not a timestamp": (_mut("date", _set("provenance.date", "<script>")), "UTC timestamp",
                                  "provenance.date"),
    "path traversal in a name": (_traversal, "must not contain '/'", "detector"),
    "duplicate of a board entry": (_duplicate, "belongs at", "detector"),
    "repeated JSON key": (_dup_key, "appears twice", ""),
    "symbolic link": (_symlink, "symbolic link", ""),
    "unknown group": (_mut("grp", _set("group", "oracle-ish")), "Input should be", "group"),
    "group contradicts reference": (_mut("gref", _set("group", "reference")), "contradicts reference", ""),
    "instance id not its hash": (_mut("iid", _set("instance.id", "dev-000000000000")), "first 12 hex", "instance"),
    "instance kind unknown": (_mut("ikind", _set("instance.kind", "holdout")), "Input should be", "instance.kind"),
    "instance differs from provenance": (_mut("ihash", _set("provenance.data_hash", "0" * 64)),
                                         "differs from provenance", ""),
    "bad isolation": (_mut("iso", _set("isolation", "none")), "Input should be", "isolation"),
    "note with a control character": (_mut("note", _set("detector_note", "a\x00b")), "control", "detector_note"),
    "false resolvability claim": (_mut("resolv", _set(("metrics", "tpr_at_fpr_resolvable", "0.001"), True)),
                                  "contradicts the rule", "metrics"),
    "reversed TPR interval": (_mut("tci", _set(("metrics", "tpr_at_fpr_ci", "0.05"), [0.9, 0.1])), "low <= high",
                              "metrics.tpr_at_fpr_ci"),
}


@pytest.fixture()
def baseline(store, catalog):
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    return readme, page


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_is_rejected_and_board_unchanged(case, store, catalog, baseline):
    make, reason, fieldname = HOSTILE[case]
    path = make(store, _good(store))
    readme, page, rejected = _render(store, catalog)
    assert [r.path for r in rejected] == [path], rejected
    bad = rejected[0]
    assert reason in bad.reason, bad.reason
    assert str(path) in str(bad)  # the message names the file ...
    if fieldname:  # ... and the field
        assert bad.field == fieldname and repr(fieldname) in bad.reason, bad
    assert (readme, page) == baseline  # nothing on the board lost or changed


def test_at_least_ten_kinds_of_hostile_input():
    assert len(HOSTILE) >= 10


def test_read_result_raises_with_file_and_field(store, catalog):
    path = _mut("high", _set("metrics.auroc", 1.3))(store, _good(store))
    with pytest.raises(ResultError) as e:
        read_result(path, tasks=catalog)
    assert str(path) in str(e.value) and e.value.field == "metrics.auroc"


def test_rejected_files_keep_render_byte_identical_with_plots(store, catalog, tmp_path):
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    render_board(store / "results", out1, tasks=catalog)
    for case in ("AUROC above 1", "duplicate of a board entry", "unknown task"):
        HOSTILE[case][0](store, _good(store))
    written = render_board(store / "results", out2, tasks=catalog)
    names = sorted(p.relative_to(out2).as_posix() for p in written)
    # the shipped published numbers bring their tasks' pages (tasks/sd-*.md, tasks/lid-*.md)
    assert [n for n in names if not n.startswith("tasks/")] == [
        "README.md", "index.html", "plots/pareto-tiny-v1.png", "plots/roc-tiny-v1.png"]
    assert "tasks/tiny.md" in names
    for rel in names:
        assert (out1 / rel).read_bytes() == (out2 / rel).read_bytes(), rel


# -- escaping ------------------------------------------------------------------------------------
def test_markup_in_strings_renders_as_text(store, catalog):
    add_hostile_row(store)
    failed = _mut("breaks", _set("status", "failed"))(store, _good(store))
    doc = load(failed)
    doc.update(metrics=None, cost=None, roc=None, error="</td></script><script>alert(1)</script> | *x*")
    dump(failed, doc)
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    # HTML: no markup from a file survives
    assert "<img src=x" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;&amp;&#x27;" in page
    assert "&lt;/td&gt;&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own script
    # Markdown: no raw HTML, and pipes cannot open a new table cell
    assert "<img" not in readme and "<script>" not in readme and "&lt;img src=x" in readme
    assert "\\| \\*x\\*" in readme
    cells = lambda line: len(re.findall(r"(?<!\\)\|", line))  # noqa: E731
    tables, current = [], []  # every table's rows have as many cells as its header
    for line in readme.splitlines() + [""]:
        if line.startswith("| "):
            current.append(cells(line))
        elif current:
            tables, current = tables + [current], []
    assert tables and all(len(set(t)) == 1 for t in tables)


def test_md_escape():
    assert md("a|b") == "a\\|b" and md("<b>") == "&lt;b&gt;" and md("x\ny") == "x y"
    assert md("cfg_norm") == "cfg_norm" and md("_x_") == "\\_x\\_" and md("[l](javascript:x)") == "\\[l\\](javascript:x)"


# -- reported numbers ----------------------------------------------------------------------------
def _reported(**over):
    entry = {"task": "tiny", "detector": "norm", "metrics": {"auroc": 0.91, "tpr_at_fpr": {"0.01": 0.4, "0.001": None}},
             "citation": "Doe et al., <b>2024</b>", "url": "https://example.org/doe24",
             "protocol_notes": "their own negatives; 50 sampling steps", "model": "toy", "access": "samples"}
    entry.update(over)
    return {"entries": [entry]}


def test_reported_rows_are_separate(store, catalog, baseline):
    dump(store / "reported" / "papers.json", _reported())
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    measured_part, reported_part = _task_part(readme).split("#### Reported, not re-measured")
    assert "Doe et al." in reported_part and "Doe et al." not in measured_part
    assert "&lt;b&gt;2024&lt;/b&gt;" in reported_part and "[" in reported_part
    assert "their own negatives; 50 sampling steps" in reported_part  # the entry's protocol notes
    heads, row = _md_tables(reported_part)[0]
    assert row[heads.index("TPR rule")] == "not stated" and row[heads.index("TPR@0.1%FPR [95% CI]")] == "–"
    # in the page they sit in a table of their own, badged, never ranked
    table = page.split('<table class="board reported" id="t-tiny-v1-reported"')[1].split("</table>")[0]
    assert 'data-kind="reported"' in table and '<td data-v="">–</td>' in table
    assert "reported, not re-measured" in page.split('id="t-tiny-v1-reported-s1">')[1].split("</p>")[0]
    assert "Doe et al., &lt;b&gt;2024&lt;/b&gt;" in page
    assert page.split('<table class="board reported"')[0].count('data-kind="reported"') == 0
    # the measured part of the board is as before
    assert all(line in readme for line in baseline[0].splitlines())


@pytest.mark.parametrize("over, reason", [
    ({"url": "javascript:alert(1)"}, "http"),
    ({"metrics": {"auroc": 95.3}}, "less than or equal to 1"),
    ({"task": "no-such-task"}, "unknown task"),
    ({"citation": ""}, "at least 1 character"),
    ({"metrics": {"auroc": 0.9, "tpr_at_fpr": {"0.02": 0.1}}}, "tpr_at_fpr"),
])
def test_bad_reported_file_is_rejected(store, catalog, baseline, over, reason):
    path = store / "reported" / "bad.json"
    dump(path, _reported(**over))
    readme, page, rejected = _render(store, catalog)
    assert [r.path for r in rejected] == [path] and reason in rejected[0].reason, rejected
    assert (readme, page) == baseline


def test_reported_schema_example_validates():
    doc = validate_model(ReportedFile, _reported())
    assert doc.entries[0].metrics.tpr_at_fpr["0.001"] is None
    with pytest.raises(SchemaError):
        validate_model(ReportedFile, {"entries": [_reported()["entries"][0]] * 2})


def test_shipped_store_files_validate(tmp_path):
    """Whatever results/ submissions/ reported/ the repository ships must pass (or the board drops them)."""
    root = Path(__file__).parent.parent / "leaderboard"
    results = root / "results" if (root / "results").is_dir() else tmp_path  # git keeps no empty folder
    board = collect_board(results, submissions_dir=root / "submissions", reported_dir=root / "reported")
    assert not board.rejected, "\n".join(map(str, board.rejected))


# -- board structure -----------------------------------------------------------------------------
def test_html_has_filters_sorting_and_tracks(store, catalog):
    _, page, _ = _render(store, catalog)
    for flag in ("samples", "model", "model_cond", "train_data"):
        assert f'class="access-filter" value="{flag}"' in page
    assert 'data-type="num" data-first="descending"' in page and "Synthetic manifolds" in page
    assert 'data-access="model"' in page and 'data-access="train_data"' in page
    assert "http://" not in page.split("<body>")[0] and "https://" not in page.split("<body>")[0]  # no CDN
    assert "Content-Security-Policy" in page


def test_overview_matrix_and_task_ct(store, catalog):
    """One detector x task AUROC matrix per track, grouped, with the task's C_T (from the results'
    task_stats) and the instance each column uses."""
    board = collect_board(store / "results", tasks=catalog)
    heads, rows = overview(board, "memorization")
    assert heads == ["group", "detector", "tiny", "mean rank in group", "tasks ranked"]
    assert [r[:2] for r in rows] == [["model-side", "eps-norm"], ["sample-side", "norm"],
                                     ["training-set oracle", "nn-ratio"], ["chance", "random"],
                                     ["task", "C_T of the samples"], ["task", "instance"]]
    aurocs = {r.detector: r.auroc for r in board.rows}
    assert all(r[2] == f"{aurocs[r[1]]:.3f}" and r[3:] == ["1.00", "1 of 1"] for r in rows[:4])
    good = _good(store)
    ct = good["task_stats"]["data_copying_ct"]
    assert rows[-2][2] == f"{ct:+.2f}" and rows[-1][2] == good["instance"]["id"]
    readme, page, _ = _render(store, catalog)
    assert "## Overview: memorization" in readme and f"C_T {ct:+.2f}" in readme
    assert '<table class="overview sortable">' in page and f"C_T {ct:+.2f}" in page
    assert "mean rank" in readme.split("## Overview: memorization")[1].split("|")[0]
    assert overview(board, "lid") == (["group", "estimator", "mean rank in group", "tasks ranked"], [])


def test_validate_cli_lists_rejections(store, catalog, monkeypatch, capsys, tiny_spec):
    from mmh_bench.cli.main import main
    specs = store.parent / "specs"
    specs.mkdir()
    (specs / "tiny.toml").write_text(Path(tiny_spec.path).read_text())
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(specs))
    assert main(["validate", "--results", str(store / "results")]) == 0
    path = HOSTILE["AUROC above 1"][0](store, _good(store))
    assert main(["validate", "--results", str(store / "results")]) == 1
    out = capsys.readouterr().out
    assert f"REJECTED {path}: field 'metrics.auroc'" in out
    assert main(["validate", str(path)]) == 1


def test_pareto_front():
    pts = [(0, 0.5), (1, 0.9), (2, 0.8), (0.5, 0.95), (3, 0.99)]
    assert pareto_front(pts) == [0, 3, 4]


def test_schema_rejects_nan_from_python():
    doc = {"track": "memorization"}
    with pytest.raises(SchemaError):
        validate_result(doc)


# -- submissions on the board --------------------------------------------------------------------
def _submission(root: Path, name: str, doc: dict, submitted: str = "2025-01-01T00:00:00Z") -> Path:
    """A hand-made entry (what `mmh-bench submit` writes), from an existing result document."""
    from mmh_bench.files import sha256_file
    folder = root / "submissions" / name
    res = folder / "results" / doc["task"] / f"v{doc['task_version']}" / f"{doc['detector']}.json"
    dump(res, doc)
    (folder / "detector.py").write_text("# code\n")
    meta = {"schema_version": 1, "name": name, "detector": doc["detector"], "detector_ref": "detector.py:D",
            "detector_sha256": sha256_file(folder / "detector.py"),
            "authors": ["<script>alert(1)</script>"], "url": "https://example.org/x", "submitted": submitted,
            "mmh_bench_version": "0.1.0", "seed": 0,
            "tasks": [{"name": doc["task"], "version": doc["task_version"], "hash": doc["task_hash"], "spec": {}}],
            "checks": []}
    dump(folder / "metadata.json", meta)
    return folder


def _verify_record(folder: Path, ok: bool = True) -> None:
    from mmh_bench.files import sha256_file
    files = {str(p.relative_to(folder)): sha256_file(p) for p in sorted((folder / "results").rglob("*.json"))}
    meta = load(folder / "metadata.json")
    dump(folder / "verification.json", {
        "schema_version": 1, "name": folder.name, "ok": ok, "date": "2025-01-02T00:00:00Z",
        "mmh_bench_version": "0.1.0", "hardware": "cpu", "atol": 0.001,
        "detector_sha256": meta["detector_sha256"], "files": files, "differences": []})


def _row(readme: str, name: str) -> str:
    return next(line for line in readme.splitlines() if line.startswith("| ") and f"| {name} " in line)


def test_submissions_render_with_verification_state(store, catalog):
    doc = dict(_good(store), detector="theirs")
    folder = _submission(store, "their-entry", doc)
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    assert "(unverified)" in _row(readme, "theirs") and "[their-entry](https://example.org/x)" in readme
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    _verify_record(folder)
    readme, _, rejected = _render(store, catalog)
    assert not rejected and "(verified)" in _row(readme, "theirs")
    # any byte changed after verification drops the badge
    (folder / "detector.py").write_text("# other code\n")
    assert "(unverified)" in _row(_render(store, catalog)[0], "theirs")


@pytest.mark.parametrize("isolation", ["process", "in-process", None])
def test_a_submission_that_did_not_run_sandboxed_is_left_out(store, catalog, isolation):
    doc = dict(_good(store), detector="theirs")
    assert doc["isolation"] == "sandbox"
    doc["isolation"] = isolation
    if isolation is None:
        del doc["isolation"]
    _submission(store, "unsealed-entry", doc)
    readme, _, rejected = _render(store, catalog)
    assert len(rejected) == 1 and "count only when its code ran in the sandbox" in rejected[0].reason
    assert not any(line.startswith("| ") and "| theirs " in line for line in readme.splitlines())


def test_submission_cannot_displace_a_measured_row(store, catalog, baseline):
    better = copy.deepcopy(_good(store))  # claims the measured detector's name, with better numbers
    better["metrics"]["auroc"] = 0.999
    folder = _submission(store, "usurper", better)
    readme, page, rejected = _render(store, catalog)
    assert [r.path for r in rejected] == [folder] and "already on the board" in rejected[0].reason
    assert (readme, page) == baseline


def test_earlier_submission_keeps_its_name(store, catalog):
    doc = dict(_good(store), detector="shared-name")
    _submission(store, "zz-first", doc, "2024-01-01T00:00:00Z")
    late = _submission(store, "aa-late", doc, "2025-06-01T00:00:00Z")
    board = collect_board(store / "results", tasks=catalog)
    assert [r.path for r in board.rejected] == [late]
    assert [r.submission for r in board.rows if r.detector == "shared-name"] == ["zz-first"]


@pytest.mark.parametrize("change, reason", [
    (lambda m: m.update(name="someone-else"), "differs from the folder name"),
    (lambda m: m.update(url="javascript:alert(1)"), "http"),
    (lambda m: m.update(authors=[]), "at least 1 item"),
    (lambda m: m.pop("submitted"), "Field required"),
])
def test_bad_submission_metadata_is_rejected(store, catalog, baseline, change, reason):
    folder = _submission(store, "bad-entry", dict(_good(store), detector="theirs"))
    meta = load(folder / "metadata.json")
    change(meta)
    dump(folder / "metadata.json", meta)
    readme, page, rejected = _render(store, catalog)
    assert [r.path for r in rejected] == [folder / "metadata.json"] and reason in rejected[0].reason, rejected
    assert (readme, page) == baseline


def test_render_markdown_still_takes_result_documents(store, catalog):
    docs = scan_results(store / "results", tasks=catalog).results
    text = render_markdown(docs)
    assert "### tiny (v1)" in text and _row(_task_part(text), "nn-ratio").startswith("| 1   | training-set oracle ")


# -- groups, instances, support, honest numbers -------------------------------------------------
def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def _md_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in ``text``: its rows (header first, separator dropped) as cells."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(_cells(line))
        elif current:
            tables.append([current[0]] + current[2:])
            current = []
    return tables


def _task_part(readme: str, task: str = "tiny", version: str = "1") -> str:
    return readme.split(f"### {task} (v{version})")[1].split("\n### ")[0]


def _add(store: Path, det: str, base: str = "norm", path: Path | None = None, **fields) -> Path:
    """A copy of ``base``'s result as detector ``det`` (at ``path``, else beside ``base``), fields set."""
    doc = load(_at(store, base))
    doc["detector"] = det
    for key, value in fields.items():
        _set(tuple(key.split("__")), value)(doc)
    path = path or _at(store, base).parent / f"{det}.json"
    dump(path, doc)
    return path


def test_groups_rank_apart_in_order_and_shortcuts_render_apart(store, catalog):
    _add(store, "ref", group="reference", reference=True, access="train_data")
    _add(store, "oracle", base="nn-ratio", metrics__auroc=0.02)
    _add(store, "peek-a", group="shortcut", metrics__auroc=0.7)
    _add(store, "peek-b", group="shortcut", metrics__auroc=0.8)
    _add(store, "norm-b", metrics__auroc=0.01)  # sample-side beside norm
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    part = _task_part(readme)
    main, cut = _md_tables(part)
    assert [(r[0], r[1], r[2]) for r in main[1:]] == [
        ("1", "reference", "ref"), ("1", "model-side", "eps-norm"), ("1", "sample-side", "norm"),
        ("2", "sample-side", "norm-b"), ("1", "training-set oracle", "nn-ratio"),
        ("2", "training-set oracle", "oracle"), ("1", "chance", "random")]
    assert [(r[0], r[1], r[2]) for r in cut[1:]] == [("1", "shortcut", "peek-b"), ("2", "shortcut", "peek-a")]
    between = part.split("| chance")[1].split("| #")[0]
    assert md(GROUP_NOTE) in between  # the one-line explanation sits between the two tables
    # the page: one body per group (sorting stays inside it), in the same order, shortcuts marked
    body_groups = re.findall(r'<tbody class="measured( shortcut)?" data-group="([^"]+)"', page)
    assert body_groups == [("", "reference"), ("", "model-side"), ("", "sample-side"),
                           ("", "training-set oracle"), (" shortcut", "shortcut"), ("", "chance")]
    # the overview keeps the shortcut group apart too
    titles = [t for t, *_ in overviews(collect_board(store / "results", tasks=catalog))]
    assert titles == ["Overview: memorization", "Overview: memorization, shortcut baselines"]
    assert "peek-a" not in readme.split("## Overview: memorization, shortcut baselines")[0]


@pytest.mark.parametrize("reference, access, group", [
    (True, "train_data", "reference"), (False, "train_data", "training-set oracle"),
    (False, "model+train_data", "training-set oracle"), (False, "model_cond", "model-side"),
    (False, "model", "model-side"), (False, "samples", "sample-side")])
def test_group_of_results_without_the_field(store, catalog, reference, access, group):
    res = scan_results(store / "results", tasks=catalog).results[0]
    assert group_of(res.model_copy(update={"reference": reference, "access": access, "group": None})) == group
    assert group_of(res.model_copy(update={"reference": False, "access": access, "group": "chance"})) == "chance"


def test_results_without_the_new_fields_render_the_same(store, catalog, baseline):
    """Older results: the group comes from reference and access, the instance from provenance."""
    for path in sorted((store / "results").rglob("*.json")):
        doc = load(path)
        for key in ("instance", "detector_note", "isolation") + (("group",) if doc["group"] != "chance" else ()):
            doc.pop(key)
        dump(path, doc)
    readme, page, rejected = _render(store, catalog)
    assert not rejected and (readme, page) == baseline


TEST_HASH = "ab" * 32
TEST_ID = "test-" + TEST_HASH[:12]


def _test_instance(store: Path) -> None:
    """Three rows on a second (test) instance of tiny, in the store's instance subfolder."""
    for det, base, auroc in (("norm", "norm", 0.611), ("norm-b", "norm", 0.655), ("eps-norm", "eps-norm", 0.622)):
        doc = as_instance(load(_at(store, base)), "test", TEST_HASH)
        doc.update(detector=det)
        doc["metrics"]["auroc"] = auroc
        dump(store / "results" / "tiny" / "v1" / TEST_ID / f"{det}.json", doc)


def test_two_instances_are_two_tables_never_ranked_together(store, catalog, tmp_path):
    _test_instance(store)
    dump(store / "reported" / "papers.json", _reported())
    dev_id = _good(store)["instance"]["id"]
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    part = _task_part(readme)
    assert f"This task has 2 instances in the store ({TEST_ID}, {dev_id})" in part and "not comparable" in part
    assert part.index(f"#### Instance {TEST_ID} (test, public)") < part.index(f"#### Instance {dev_id} (dev)")
    test_table, dev_table, reported = _md_tables(part)
    assert [(r[0], r[1], r[2]) for r in test_table[1:]] == [
        ("1", "model-side", "eps-norm"), ("1", "sample-side", "norm-b"), ("2", "sample-side", "norm")]
    assert {r[2] for r in dev_table[1:]} == {"nn-ratio", "eps-norm", "norm", "random"}
    assert all(r[0] == "1" for r in dev_table[1:])  # norm-b (test only) is not ranked against dev's norm
    assert "0.611" in _cells(next(line for line in part.splitlines() if "| norm " in line))[5]
    assert reported[0][0] == "method (as published)"  # reported rows once, after both instances
    # the overview: the test instance, and it says so
    heads, rows = overview(collect_board(store / "results", tasks=catalog), "memorization")
    named = {r[1]: r for r in rows}
    assert named["instance"][2] == TEST_ID and named["norm"][2] == "0.611" and "nn-ratio" not in named
    # the page: one table per instance, then the task's reported table after both
    ids = re.findall(r'<table class="board" id="[^"]+" data-track="memorization" data-instance="([^"]+)"', page)
    assert ids == [TEST_ID, dev_id] and page.count('<table class="board reported" id="t-tiny-v1-reported"') == 1
    assert page.index('id="t-tiny-v1-reported"') > page.index(f'data-instance="{dev_id}"')
    # one ROC figure per instance
    written = render_board(store / "results", tmp_path / "site", tasks=catalog)
    rocs = sorted(p.name for p in written if p.name.startswith("roc-"))
    assert rocs == [f"roc-tiny-v1-{dev_id}.png", f"roc-tiny-v1-{TEST_ID}.png"]


def test_same_instance_twice_in_the_store_is_rejected(store, catalog):
    """A result in its instance's folder wins over a copy at the older flat place."""
    dev_id = _good(store)["instance"]["id"]
    folder = store / "results" / "tiny" / "v1"
    if _at(store, "norm").parent != folder / dev_id:
        _at(store, "norm").rename((folder / dev_id).mkdir(exist_ok=True) or folder / dev_id / "norm.json")
    baseline = _render(store, catalog)
    path = _add(store, "norm", path=folder / "norm.json", metrics__auroc=0.999)
    readme, page, rejected = _render(store, catalog)
    assert [r.path for r in rejected] == [path] and "already on the board" in rejected[0].reason
    assert (readme, page, []) == baseline


def test_submission_on_another_instance_gets_its_own_table(store, catalog):
    doc = as_instance(dict(_good(store), detector="theirs"), "test", TEST_HASH)
    _submission(store, "their-entry", doc)
    readme, _, rejected = _render(store, catalog)
    assert not rejected
    test_table = _md_tables(_task_part(readme).split(f"#### Instance {TEST_ID}")[1])[0]
    assert [r[2] for r in test_table[1:]] == ["theirs"] and test_table[1][0] == "1"


def test_overview_ranks_by_mean_rank_over_unequal_task_sets(store, tiny_spec, tmp_path):
    other = renamed_task(tiny_spec, "tiny2", tmp_path)
    catalog = known_tasks([tiny_spec, other])
    for det, auroc in (("norm", 0.30), ("only2", 0.80)):  # norm: best alone on tiny, second on tiny2
        doc = on_task(load(_at(store, "norm")), other)
        doc["detector"], doc["metrics"]["auroc"] = det, auroc
        dump(_at(store, det, "tiny2"), doc)
    board = collect_board(store / "results", tasks=catalog)
    heads, rows = overview(board, "memorization")
    assert heads == ["group", "detector", "tiny", "tiny2", "mean rank in group", "tasks ranked"]
    sample = [r for r in rows if r[0] == "sample-side"]
    assert [r[1] for r in sample] == ["only2", "norm"]
    assert sample[0][2:] == ["n/a", "0.800", "1.00", "1 of 2"]
    assert sample[1][3:] == ["0.300", "1.50", "2 of 2"]
    assert "mean rank" in overviews(board)[0][1] and not any("mean AUROC" in h for h in heads)


def test_lid_overview_ranks_by_mean_rank_over_unequal_task_sets(store, tiny_spec, tmp_path):
    lid = load_spec(Path(__file__).parent / "data" / "tiny_lid.toml")
    lid2 = renamed_task(lid, "tiny_lid2", tmp_path)
    for spec, det, mae in ((lid, "a", 1.0), (lid2, "a", 3.0), (lid2, "b", 2.0)):
        doc = on_task(_good(store), spec)
        doc.update(detector=det, track="lid", task_family="lid", n_memorized=None, roc=None,
                   metrics={"mae": mae, "mse": mae ** 2, "concordance": 0.5, "n": doc["n_samples"]})
        dump(_at(store, det, spec.name), doc)
    board = collect_board(store / "results", tasks=known_tasks([tiny_spec, lid, lid2]))
    assert not board.rejected, board.rejected
    heads, rows = overview(board, "lid")
    assert heads == ["group", "estimator", "tiny_lid", "tiny_lid2", "mean rank in group", "tasks ranked"]
    assert [r[1:] for r in rows[:2]] == [["b", "n/a", "2.000", "1.00", "1 of 2"],
                                         ["a", "1.000", "3.000", "1.50", "2 of 2"]]
    assert "mean rank" in overviews(board)[0][1]


def test_subtype_with_few_positives_prints_its_count(store, catalog):
    doc = load(_at(store, "eps-norm"))
    dd = doc["metrics"]["per_subtype"]["DD"]
    od = copy.deepcopy(dd)
    od["n_pos"], dd["n_pos"] = 4, dd["n_pos"] - 4
    doc["metrics"]["per_subtype"]["OD"] = od
    dump(_at(store, "eps-norm"), doc)
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    heads, *rows = _md_tables(_task_part(readme))[0]
    row = next(r for r in rows if r[2] == "eps-norm")
    assert row[heads.index("AUROC OD")] == "n=4" and row[heads.index("AUROC DD")] == f"{dd['auroc']:.3f}"
    assert "n=k: only k positives of that subtype (fewer than 20)" in readme
    assert '<td data-v="">n=4</td>' in page and "n=k: only k positives" in page


def test_tpr_hidden_when_negatives_cannot_resolve_it(store, catalog):
    for det in ("norm", "eps-norm", "random", "nn-ratio"):
        dump(_at(store, det), with_negatives(load(_at(store, det)), 200))
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    heads, *rows = _md_tables(_task_part(readme))[0]
    for col in ("TPR@0.1%FPR [95% CI]", "TPR@1%FPR [95% CI]"):  # 200 x 1% = 2 < 5 as well
        assert {r[heads.index(col)] for r in rows} == {"n/r"}
    reason = ("n/r: TPR@0.1%FPR not resolvable with 200 negatives (200 x 0.1% = 0.2 expected false "
              "positives, fewer than 5; a single false positive is already 0.50% FPR); hidden.")
    assert md(reason) in readme and html.escape(reason) in page
    assert "TPR@1%FPR not resolvable with 200 negatives (200 x 1% = 2 expected" in readme


def test_tpr_shown_with_its_interval_when_resolvable(store, catalog):
    doc = with_negatives(load(_at(store, "norm")), 600)
    m = doc["metrics"]
    m["tpr_at_fpr"]["0.01"], m["tpr_at_fpr_ci"]["0.01"] = 0.5, [0.41234, 0.6]
    dump(_at(store, "norm"), doc)
    readme, _, rejected = _render(store, catalog)
    assert not rejected
    heads, *rows = _md_tables(_task_part(readme))[0]
    row = next(r for r in rows if r[2] == "norm")
    assert row[heads.index("TPR@1%FPR [95% CI]")] == "0.500 [0.412, 0.600]"
    assert row[heads.index("TPR@0.1%FPR [95% CI]")] == "n/r"  # 600 x 0.1% < 5


def test_point_and_interval_share_their_precision(store, catalog):
    _add(store, "sharp", metrics__auroc=0.999, metrics__auroc_ci=[0.9984, 0.99996])
    readme, page, _ = _render(store, catalog)
    assert "0.999 [0.998, 1.000]" in readme and "0.999 [0.998, 1.000]" in page
    triples = re.findall(r"(\d+\.\d+) \[(\d+\.\d+), (\d+\.\d+)\]", readme)
    assert len(triples) >= 5 and all(len({len(x.split(".")[1]) for x in t}) == 1 for t in triples)


def test_detector_note_once_under_its_table(store, catalog):
    note = "t0 chosen by the <plateau> rule | see docs"
    _add(store, "eps-norm", base="eps-norm", path=_at(store, "eps-norm"), detector_note=note)
    _test_instance(store)
    path = store / "results" / "tiny" / "v1" / TEST_ID / "eps-norm.json"
    dump(path, dict(load(path), detector_note=note))
    readme, page, rejected = _render(store, catalog)
    assert not rejected
    line = md(f"Note on eps-norm: {note}")
    part = _task_part(readme)
    assert part.count(line) == 2  # once under each instance's table, never per row
    for table in part.split("#### Instance")[1:]:
        assert table.count(line) == 1 and table.index(line) > table.rindex("| eps-norm")
    assert page.count(html.escape(f"Note on eps-norm: {note}")) == 2 and "<plateau>" not in page


def test_lid_section_shows_the_truth_and_an_estimate_against_truth_plot(store, tiny_spec, tmp_path):
    """Issue 28, item 4: each LID task names its true LID* values and draws every estimator's
    estimates against them (mean and 10th-90th percentile per true value)."""
    from mmh_bench.evaluation.metrics import lid_metrics
    from mmh_bench.leaderboard.board import render_board
    lid = load_spec(Path(__file__).parent / "data" / "tiny_lid.toml")
    true = np.repeat([2.0, 5.0], [30, 20])
    for det, est in (("good", true + 0.1), ("flat", np.full(50, 3.0))):
        doc = on_task(_good(store), lid)
        doc.update(detector=det, track="lid", task_family="lid", n_memorized=None, roc=None, n_samples=50,
                   metrics=lid_metrics(true, est))
        dump(_at(store, det, lid.name), doc)
    out = tmp_path / "board"
    render_board(store / "results", out, tasks=known_tasks([tiny_spec, lid]))
    readme, page = (out / "tasks" / "tiny_lid.md").read_text(), (out / "index.html").read_text()
    assert "True LID\\* of the query points (count): 2 (30), 5 (20)" in readme
    assert "True LID* of the query points (count): 2 (30), 5 (20)" in page
    png = out / "plots" / "lid-tiny_lid-v1.png"
    assert png.read_bytes().startswith(b"\x89PNG") and "(../plots/lid-tiny_lid-v1.png)" in readme
    assert 'src="plots/lid-tiny_lid-v1.png"' in page
    # without the summary (results from before it) there is no plot, and a stale one is removed
    for det in ("good", "flat"):
        doc = load(_at(store, det, lid.name))
        del doc["metrics"]["by_true_lid"]
        dump(_at(store, det, lid.name), doc)
    render_board(store / "results", out, tasks=known_tasks([tiny_spec, lid]))
    assert not png.exists() and "True LID" not in (out / "tasks" / "tiny_lid.md").read_text()
