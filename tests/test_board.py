"""The leaderboard: schema, hostile input, escaping, reported numbers, submissions, plots."""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest

from board_store import add_hostile_row, copy_store, dump, load
from mmh_bench.board import collect_board, md, overview, pareto_front, render_board, render_html, render_markdown
from mmh_bench.results import ResultError, known_tasks, read_result, scan_results
from mmh_bench.schema import MAX_FILE_BYTES, ReportedFile, SchemaError, validate_model, validate_result


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
    return load(root / "results" / "tiny" / "v1" / "norm.json")


def _at(root: Path, det: str, task: str = "tiny", version: str = "1") -> Path:
    return root / "results" / task / f"v{version}" / f"{det}.json"


# -- the schema accepts what the evaluator writes ------------------------------------------------
def test_evaluator_output_validates(store, catalog):
    scan = scan_results(store / "results", tasks=catalog)
    assert not scan.rejected and len(scan.accepted) == 4
    assert {d["access"] for d in scan.results} == {"samples", "model", "train_data"}


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


def _set(path: str, value):
    def fn(doc):
        *head, last = path.split(".")
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
    assert names == ["README.md", "index.html", "plots/pareto-tiny-v1.png", "plots/roc-tiny-v1.png"]
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
    assert "Reported in papers, not re-measured" in readme
    measured_part, reported_part = readme.split("Reported in papers, not re-measured")
    assert "Doe et al." in reported_part and "Doe et al." not in measured_part
    assert "&lt;b&gt;2024&lt;/b&gt;" in reported_part and "[" in reported_part
    # in the page they sit in their own table body, badged, never ranked
    body = page.split('<tbody class="reported">')[1].split("</tbody>")[0]
    assert "reported, not re-measured" in body and "Doe et al., &lt;b&gt;2024&lt;/b&gt;" in body
    assert 'data-kind="reported"' in body and '<td data-v="">–</td>' in body
    assert page.split('<tbody class="reported">')[0].count('data-kind="reported"') == 0
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
    """One detector x task AUROC matrix per track, ordered by mean AUROC with the reference last,
    and the task's C_T (from the results' task_stats) in the matrix and the task facts."""
    board = collect_board(store / "results", tasks=catalog)
    heads, rows = overview(board, "memorization")
    assert heads == ["detector", "tiny", "mean AUROC (its tasks)"]
    names = [r[0] for r in rows]
    assert names[-2] == "nn-ratio (reference)" and names[-1].startswith("C_T")
    aurocs = {r.detector: r.auroc for r in board.rows}
    means = [float(r[1]) for r in rows[:-2]]
    assert means == sorted(means, reverse=True)
    assert rows[0][1] == f"{max(v for d, v in aurocs.items() if d != 'nn-ratio'):.3f}"
    ct = _good(store)["task_stats"]["data_copying_ct"]
    assert rows[-1][1] == f"{ct:+.2f}"
    readme, page, _ = _render(store, catalog)
    assert "## Overview: memorization" in readme and f"C_T {ct:+.2f}" in readme
    assert '<table class="overview">' in page and f"C_T {ct:+.2f}" in page
    assert overview(board, "lid") == (["estimator", "mean MAE (its tasks)"], [])


def test_validate_cli_lists_rejections(store, catalog, monkeypatch, capsys, tiny_spec):
    from mmh_bench.cli import main
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
    from mmh_bench.io import sha256_file
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
    from mmh_bench.io import sha256_file
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
    assert "### tiny (v1)" in text and "| 1 " in text and "nn-ratio (reference)" in text
