"""The rendered page in a real headless browser (Debian's chromium + chromedriver, via selenium).

Loads index.html from disk (no network), sorts a column (inside each detector group), filters by
access level, checks that a detector name made of markup stays text, and that the screenshot is not blank. Skips when
chromium is not installed, except in CI (CI=true), where .ci/run installs it and a skip would
hide a broken page.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile

import numpy as np
import pytest

from board_store import HOSTILE_NAME, add_hostile_row, copy_store, dump, load, result_file
from mmh_bench.leaderboard.board import render_board
from mmh_bench.leaderboard.store import known_tasks

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
DRIVER = shutil.which("chromedriver")


def _need_browser():
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not p]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        msg = "headless browser test needs " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI must install them: see .ci/run)")
        pytest.skip(msg)


@pytest.fixture()
def driver():
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="mmh-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _column(table, header: str) -> int:
    heads = [th.text.strip() for th in table.find_elements("css selector", "thead th")]
    return next(i for i, h in enumerate(heads) if h.startswith(header))


def _visible(table, kind: str = "measured"):
    rows = table.find_elements("css selector", f"tbody.{kind} tr.entry")
    return [r for r in rows if r.is_displayed()]


def _values(rows, col: int) -> list[float]:
    return [float(r.find_elements("css selector", "td")[col].get_attribute("data-v")) for r in rows]


def _bodies(table):
    return table.find_elements("css selector", "tbody.measured")


def test_page_sorts_filters_and_renders(driver, tiny_spec, tmp_path):
    root = copy_store(tiny_spec, tmp_path)
    add_hostile_row(root)
    norm = result_file(root, "norm")
    low = load(norm)  # a second sample-side row, lower AUROC
    low["detector"], low["metrics"]["auroc"] = "norm-low", 0.3
    dump(norm.parent / "norm-low.json", low)
    dump(root / "reported" / "papers.json", {"entries": [{
        "task": "tiny", "detector": "published-method", "metrics": {"auroc": 0.97},
        "citation": "Doe et al. 2024", "url": "https://example.org/doe24",
        "protocol_notes": "their own negatives", "access": "model"}]})
    out = tmp_path / "site"
    render_board(root / "results", out, tasks=known_tasks([tiny_spec]))
    driver.get((out / "index.html").as_uri())

    assert driver.title == "mmh-bench leaderboard"  # the markup in a name did not run
    table = driver.find_element("css selector", "table.board")
    det_col = _column(table, "detector")
    names = [r.find_elements("css selector", "td")[det_col].text for r in _visible(table)]
    assert HOSTILE_NAME in names and len(names) == 6
    groups = [b.get_attribute("data-group") for b in _bodies(table)]
    assert groups == ["model-side", "sample-side", "training-set oracle", "chance"]

    # sort: first click on AUROC sorts descending, the second ascending, each group's body on its
    # own (a ranking never crosses a group); the group's heading row stays on top; reported rows apart
    col = _column(table, "AUROC")
    th = table.find_elements("css selector", "thead th")[col]
    sample = _bodies(table)[1]

    def sample_values():
        return _values([r for r in sample.find_elements("css selector", "tr.entry") if r.is_displayed()], col)

    th.click()
    assert th.get_attribute("aria-sort") == "descending"
    vals = sample_values()
    assert vals == sorted(vals, reverse=True) and len(set(vals)) > 1 and len(vals) == 3
    th.click()
    assert th.get_attribute("aria-sort") == "ascending"
    assert sample_values() == sorted(vals)
    for body in _bodies(table):
        assert body.find_elements("css selector", "tr")[0].find_elements("css selector", "th.divider")
    assert [b.get_attribute("data-group") for b in _bodies(table)] == groups
    assert _visible(table, "reported") == []  # published numbers are never in a ranked table ...
    rep = driver.find_element("css selector", "#t-tiny-v1-reported")  # ... but in one of their own
    assert [r.get_attribute("data-kind") for r in _visible(rep, "reported")] == ["reported"]
    assert rep.find_elements("css selector", "thead th")[0].text.strip() == "method (as published)"
    # sort a text column too
    det_th = table.find_elements("css selector", "thead th")[det_col]
    det_th.click()
    shown = [r.find_elements("css selector", "td")[det_col].get_attribute("data-v")
             for r in sample.find_elements("css selector", "tr.entry")]
    assert shown == sorted(shown)

    # filter by access level: hide detectors that need the training data, then the model
    driver.find_element("css selector", "input.access-filter[value=train_data]").click()
    access = [r.get_attribute("data-access") for r in _visible(table)]
    assert "train_data" not in access and "model" in access and "samples" in access
    driver.find_element("css selector", "input.access-filter[value=model]").click()
    assert {r.get_attribute("data-access") for r in _visible(table)} == {"samples"}
    assert _visible(rep, "reported") == []  # the reported entry declared model access
    assert driver.find_element("css selector", "#t-tiny-v1-reported-count").text == "0 rows shown"
    count = driver.find_element("css selector", "#t-tiny-v1-count").text
    assert count == "4 rows shown"  # norm, norm-low, random, and the markup-named copy of norm
    driver.find_element("css selector", "input.access-filter[value=model]").click()
    driver.find_element("css selector", "input.access-filter[value=train_data]").click()
    assert len(_visible(table)) == 6

    # the screenshot shows a page, not a blank canvas
    from PIL import Image
    img = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L"), dtype=float)
    assert img.shape[0] > 500 and img.shape[1] > 1000
    assert img.std() > 20 and (img < 200).mean() > 0.02


def test_page_navigates_folds_definitions_and_marks_the_best(driver, tiny_spec, tmp_path):
    """One click from the navigation or the overview to a task's tables; the definitions folded
    away until asked for; AUROC cells shaded by value; each group's best AUROC starred."""
    root = copy_store(tiny_spec, tmp_path)
    out = tmp_path / "site"
    render_board(root / "results", out, tasks=known_tasks([tiny_spec]))
    driver.get((out / "index.html").as_uri())
    defs = driver.find_element("css selector", "details#definitions")
    assert defs.get_attribute("open") is None
    assert not driver.find_element("css selector", "details#definitions p").is_displayed()
    defs.find_element("css selector", "summary").click()
    assert driver.find_element("css selector", "details#definitions p").is_displayed()
    targets = [a.get_attribute("href").split("#")[1] for a in driver.find_elements("css selector", "nav#toc a")]
    assert "t-tiny-v1-task" in targets
    for t in targets:  # every link lands somewhere
        assert driver.find_elements("css selector", f"#{t}"), t
    link = driver.find_element("css selector", 'table.overview th a[href="#t-tiny-v1-task"]')
    link.click()
    assert driver.execute_script("return location.hash") == "#t-tiny-v1-task"
    table = driver.find_element("css selector", "table.board")
    col = _column(table, "AUROC")
    for body in _bodies(table):
        rows = [r for r in body.find_elements("css selector", "tr.entry")]
        cells = [r.find_elements("css selector", "td")[col] for r in rows]
        vals = [float(c.get_attribute("data-v")) for c in cells if c.get_attribute("data-v")]
        for c in cells:
            v = c.get_attribute("data-v")
            if v:
                assert f"s{min(9, int(float(v) * 10))}" in c.get_attribute("class").split()
        best = [c for c in cells if "best" in c.get_attribute("class").split()]
        if body.get_attribute("data-group") == "chance":
            assert not best
        else:
            assert best and all(float(c.get_attribute("data-v")) == max(vals) for c in best)
            assert best[0].text.startswith("\u2605")


def test_overview_sorts_and_every_track_is_in_the_navigation(driver, tiny_spec, tmp_path):
    """The overview sorts by a task's column inside each group; the navigation reaches the
    detection tasks, the LID tasks and the mitigation track (whose tables sort too)."""
    from pathlib import Path
    from mmh_bench.mitigation.board import page_section
    root = copy_store(tiny_spec, tmp_path)
    norm = result_file(root, "norm")
    low = load(norm)
    low["detector"], low["metrics"]["auroc"] = "norm-low", 0.3
    dump(norm.parent / "norm-low.json", low)
    out = tmp_path / "site"
    section = page_section(Path(__file__).parent.parent / "leaderboard" / "mitigation-results")
    render_board(root / "results", out, tasks=known_tasks([tiny_spec]), sections=[section])
    driver.get((out / "index.html").as_uri())

    nav = {a.text: a.get_attribute("href").split("#")[1] for a in driver.find_elements("css selector", "nav#toc a")}
    assert nav["Mitigation track"] == "mitigation" and nav["tiny"] == "t-tiny-v1-task"
    assert any(k.startswith("LID") for k in nav)  # the shipped published LID numbers bring the LID track
    for target in nav.values():
        assert driver.find_elements("css selector", f"#{target}"), target
    driver.find_element("css selector", 'nav#toc a[href="#mitigation"]').click()
    assert driver.execute_script("return location.hash") == "#mitigation"

    over = driver.find_element("css selector", "table.overview.sortable")
    heads = over.find_elements("css selector", "thead th")
    col = next(i for i, th in enumerate(heads) if th.text.strip() == "tiny")
    sample = over.find_element("css selector", 'tbody[data-group="sample-side"]')

    def column():
        return [float(r.find_elements("css selector", "td")[col].get_attribute("data-v"))
                for r in sample.find_elements("css selector", "tr.entry")]
    heads[col].find_element("css selector", "a")  # the head links to the task ...
    driver.execute_script("arguments[0].click()", heads[col])  # ... and a click on the cell sorts
    assert heads[col].get_attribute("aria-sort") == "descending"
    assert column() == sorted(column(), reverse=True) and len(column()) >= 2
    driver.execute_script("arguments[0].click()", heads[col])
    assert column() == sorted(column())
    best = [c for c in sample.find_elements("css selector", "td.best")]
    assert len(best) == 1 and best[0].text.startswith("\u2605")

    mit = driver.find_element("css selector", "table.mitigation")
    mheads = mit.find_elements("css selector", "thead th")
    mcol = next(i for i, th in enumerate(mheads) if th.text.startswith("memorized"))
    mheads[mcol].click()
    assert mheads[mcol].get_attribute("aria-sort") == "ascending"  # lower memorized is better
    for body in mit.find_elements("css selector", "tbody"):
        vals = [float(r.find_elements("css selector", "td")[mcol].get_attribute("data-v"))
                for r in body.find_elements("css selector", "tr.entry")]
        assert vals == sorted(vals)
