"""The Markdown board as the store keeps it: README.md is the overviews and a link to each task's
page (tasks/<task>.md), every page links back, a task that leaves the board takes its page with it,
and the pages hold what the single document holds."""
from __future__ import annotations

import re

from board_store import as_instance, copy_store, dump, load, on_task, renamed_task, result_file
from mmh_bench.leaderboard.board import (Board, TaskFacts, collect_board, markdown_pages, render_board,
                                         render_markdown, task_page)
from mmh_bench.leaderboard.store import known_tasks


def test_readme_links_each_task_page_and_each_page_links_back(tiny_spec, tmp_path):
    root = copy_store(tiny_spec, tmp_path)
    other = renamed_task(tiny_spec, "tiny-two", tmp_path)
    doc = on_task(load(result_file(root, "norm")), other)
    dump(root / "results" / "tiny-two" / "v1" / "norm.json", doc)
    out = tmp_path / "site"
    catalog = known_tasks([tiny_spec, other])
    render_board(root / "results", out, tasks=catalog, plots=False)
    readme = (out / "README.md").read_text()
    links = re.findall(r"\]\((tasks/[^)]+\.md)\)", readme)
    assert "tasks/tiny.md" in links and "tasks/tiny-two.md" in links
    assert sorted(links) == sorted(p.relative_to(out).as_posix() for p in (out / "tasks").glob("*.md"))
    assert "## Overview: memorization" in readme and "| norm" not in readme.split("## Tasks")[1]
    page = (out / "tasks" / "tiny.md").read_text()
    assert page.startswith("# tiny (v1)") and "[leaderboard](../README.md)" in page and "| norm" in page
    assert "<details><summary>How to read this board</summary>" in readme  # definitions folded away
    # the task leaves the store: its page goes at the next render
    (root / "results" / "tiny-two" / "v1" / "norm.json").unlink()
    render_board(root / "results", out, tasks=catalog, plots=False)
    assert not (out / "tasks" / "tiny-two.md").exists() and (out / "tasks" / "tiny.md").exists()
    assert "tiny-two" not in (out / "README.md").read_text()


def test_pages_hold_what_the_single_document_holds(tiny_spec, tmp_path):
    root = copy_store(tiny_spec, tmp_path)
    board = collect_board(root / "results", tasks=known_tasks([tiny_spec]))
    whole = [x for x in render_markdown(board).splitlines() if x.strip() and not x.startswith("#")]
    pages = "\n".join(markdown_pages(board).values()).splitlines()
    assert set(whole) <= set(pages)


def test_a_page_name_is_a_plain_file_name():
    board = Board()
    odd = TaskFacts("../x y", "1", "synthetic", "memorization")
    twice = [TaskFacts("t", v, "synthetic", "memorization") for v in ("1", "2")]
    for t in [odd, *twice]:
        board.tasks[(t.name, t.version)] = t
    assert re.fullmatch(r"tasks/x_y-v1-[0-9a-f]{8}\.md", task_page(board, odd))
    assert [task_page(board, t) for t in twice] == ["tasks/t-v1.md", "tasks/t-v2.md"]


def test_the_committed_pages_are_what_the_committed_results_render():
    """leaderboard/README.md, tasks/*.md and fidelity.md are current: re-rendered whenever results
    change (plots aside: their lines are compared without the figures)."""
    from pathlib import Path
    root = Path(__file__).parent.parent / "leaderboard"
    pages = markdown_pages(collect_board(root / "results"))

    def text(s: str) -> list[str]:
        return [x for x in s.splitlines() if x.strip() and not x.startswith("![")]
    committed = {p.relative_to(root).as_posix() for p in [root / "README.md", root / "fidelity.md",
                                                          *(root / "tasks").glob("*.md")]}
    assert committed == set(pages)
    for rel, want in pages.items():
        assert text((root / rel).read_text()) == text(want), rel


def test_plots_of_an_instance_no_longer_in_the_store_are_removed(tiny_spec, tmp_path):
    """An instance's ROC and Pareto plots go when its results do (as the issue found
    leaderboard/plots/*-test-099858fd0e9d.png left behind); the other instance's stay."""
    root = copy_store(tiny_spec, tmp_path)
    test_hash = "cd" * 32
    moved = []
    for det in ("norm", "random"):
        doc = as_instance(load(result_file(root, det)), "test", test_hash)
        path = root / "results" / "tiny" / "v1" / f"test-{test_hash[:12]}" / f"{det}.json"
        dump(path, doc)
        moved.append(path)
    out = tmp_path / "site"
    catalog = known_tasks([tiny_spec])
    render_board(root / "results", out, tasks=catalog)
    gone = sorted((out / "plots").glob(f"*-test-{test_hash[:12]}.png"))
    assert [p.name.split("-")[0] for p in gone] == ["pareto", "roc"]
    kept = sorted(set((out / "plots").glob("*.png")) - set(gone))
    assert kept
    for path in moved:
        path.unlink()
    render_board(root / "results", out, tasks=catalog)
    assert not any(p.exists() for p in gone)
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == ["pareto-tiny-v1.png", "roc-tiny-v1.png"]
