"""Replicated instances on the board: three test instances of one task (constructed results)
summarised by mean and standard deviation, ranked by the mean, with Kendall's tau between the
replicates' orderings; never mixed with another task's or another kind's rows."""
from __future__ import annotations

import html
import statistics
from itertools import combinations

import pytest
from scipy.stats import kendalltau

from board_store import as_instance, dump, load, on_task, renamed_task, with_negatives
from mmh_bench.leaderboard.board import collect_board, overviews, render_html, render_markdown
from mmh_bench.leaderboard.board import overview
from mmh_bench.leaderboard.schema import LIDMetrics
from mmh_bench.leaderboard.store import known_tasks
from test_board import _at, _md_tables, _render, _task_part, catalog, store  # noqa: F401 (fixtures)

HASHES = ["a1" * 32, "b2" * 32, "c3" * 32]
IDS = [f"test-{h[:12]}" for h in HASHES]
#: detector -> (base result, AUROC on each replicate; None: no result there)
AUROC = {"eps-norm": ("eps-norm", [0.90, 0.91, 0.92]), "norm": ("norm", [0.70, 0.72, 0.74]),
         "norm-b": ("norm", [0.80, 0.60, 0.78]), "norm-c": ("norm", [0.50, 0.55, None]),
         "random": ("random", [0.50, 0.49, 0.51])}
TPR = [0.3, 0.2, 0.4]  # every detector's strict TPR@1%FPR on the three replicates


def _replicates(store, task: str = "tiny", spec=None, aurocs=AUROC, hashes=HASHES) -> None:
    for det, (base, values) in aurocs.items():
        for i, (data_hash, auroc) in enumerate(zip(hashes, values)):
            if auroc is None:
                continue
            doc = as_instance(with_negatives(load(_at(store, base)), 600), "test", data_hash)
            doc["instance"]["replicate"] = i
            doc["detector"] = det
            doc["metrics"]["auroc"], doc["metrics"]["tpr_at_fpr"]["0.01"] = auroc, TPR[i]
            if spec is not None:
                on_task(doc, spec)
            dump(store / "results" / task / "v1" / doc["instance"]["id"] / f"{det}.json", doc)


@pytest.fixture()
def replicated(store, catalog):
    _replicates(store)
    readme, page, rejected = _render(store, catalog)
    assert not rejected, rejected
    return readme, page


def _summary(readme: str) -> tuple[str, list[list[str]]]:
    part = _task_part(readme)
    block = part.split("#### Across the 3 test replicates")[1].split("#### Instance")[0]
    heads, *rows = _md_tables(block)[0]
    return block, [heads] + rows


def test_mean_sd_and_rank_by_replicate_mean(replicated):
    readme, _ = replicated
    block, (heads, *rows) = _summary(readme)
    assert heads == ["#", "group", "detector", "source", "access", "replicates", "AUROC mean ± sd",
                     "TPR@1%FPR mean ± sd"]
    got = {r[2]: (r[0], r[1], r[5], r[6], r[7]) for r in rows}
    sd = lambda v: statistics.stdev(v)  # noqa: E731
    assert got["eps-norm"] == ("1", "model-side", "3 of 3", f"0.910 ± {sd([0.90, 0.91, 0.92]):.3f}", "0.300 ± 0.100")
    assert got["norm-b"][:4] == ("1", "sample-side", "3 of 3", f"0.727 ± {sd([0.80, 0.60, 0.78]):.3f}")
    assert got["norm"][:4] == ("2", "sample-side", "3 of 3", "0.720 ± 0.020")
    # a detector missing on one replicate shows how many it has and is not ranked
    assert got["norm-c"][:4] == ("–", "sample-side", "2 of 3", f"0.525 ± {sd([0.50, 0.55]):.3f}")
    assert got["random"][:2] == ("1", "chance")
    assert [r[2] for r in rows] == ["eps-norm", "norm-b", "norm", "norm-c", "random"]  # group order, then rank
    assert "a detector ranks only with a result on every replicate" in block


def test_rank_stability_is_mean_kendall_tau_over_pairs(replicated):
    readme, _ = replicated
    block, _ = _summary(readme)
    ranked = [v for d, (_, v) in AUROC.items() if None not in v]  # eps-norm, norm, norm-b, random
    taus = [kendalltau([v[a] for v in ranked], [v[b] for v in ranked]).statistic
            for a, b in combinations(range(3), 2)]
    assert taus == pytest.approx([2 / 3, 1.0, 2 / 3])
    assert (f"of the 4 detectors with a result on every replicate (shortcuts apart): mean "
            f"{statistics.fmean(taus):.2f} over 3 of 3 pairs (lowest {min(taus):.2f})") in block


def test_per_instance_tables_and_intervals_stay(replicated):
    readme, page = replicated
    part = _task_part(readme)
    for inst_id in IDS:
        assert part.count(f"#### Instance {inst_id} (test, public)") == 1
    dev = [i for i in part.split("#### Instance ")[1:] if "(dev)" in i.splitlines()[0]]
    assert len(dev) == 1  # the dev instance keeps its own table, outside the test summary
    first = _md_tables(part.split(f"#### Instance {IDS[0]} (test, public)")[1])[0]
    assert any("[" in cell for row in first[1:] for cell in row)  # bootstrap intervals shown per instance
    assert "the 3 test instances are replicates (one spec, different seeds)" in part
    assert "The overview uses the mean over the 3 test replicates." in part
    # the page: a summary table per kind, before the instances' own tables
    table = page.split('id="t-tiny-v1-test-replicates"')[1].split("</table>")[0]
    assert html.escape("0.720 ± 0.020") in table and 'data-v="0.72' in table
    assert page.index('id="t-tiny-v1-test-replicates"') < page.index(f'data-instance="{IDS[0]}"')
    assert html.escape("Kendall's tau") in page


def test_overview_ranks_the_task_by_the_replicate_mean(store, catalog):
    _replicates(store)
    board = collect_board(store / "results", tasks=catalog)
    heads, rows = overview(board, "memorization")
    col = heads.index("tiny")
    named = {r[1]: r[col] for r in rows}
    assert named["eps-norm"] == "0.910" and named["norm"] == "0.720" and named["norm-b"] == "0.727"
    assert named["norm-c"] == "2 of 3 replicates" and named["instance"] == "mean of 3 test"
    order = [r[1] for r in rows if r[0] == "sample-side"]
    assert order == ["norm-b", "norm", "norm-c"]  # norm-c not ranked on tiny: it has no rank to sort by
    assert "Where a task has several instances of that kind (replicates" in overviews(board)[0][1]


def test_other_tasks_and_kinds_never_mix(store, tiny_spec, tmp_path):
    other = renamed_task(tiny_spec, "tiny2", tmp_path)
    _replicates(store)
    # tiny2: the same detector names, far lower AUROCs, on two replicates of its own
    _replicates(store, "tiny2", other, {"norm": ("norm", [0.1, 0.2])}, HASHES[:2])
    catalog = known_tasks([tiny_spec, other])
    readme, _, rejected = _render(store, catalog)
    assert not rejected
    _, (heads, *rows) = _summary(readme)
    assert next(r for r in rows if r[2] == "norm")[6] == "0.720 ± 0.020"  # tiny's own three, nothing else
    block = _task_part(readme, "tiny2").split("#### Across the 2 test replicates")[1].split("#### Instance")[0]
    (h2, *r2), = _md_tables(block)[:1]
    assert [(r[2], r[5], r[6]) for r in r2] == [("norm", "2 of 2", "0.150 ± 0.071")]


def test_single_instance_and_dev_plus_test_render_without_a_summary(store, catalog):
    readme, page, _ = _render(store, catalog)
    assert "replicates" not in _task_part(readme) and "Kendall" not in page
    # one test instance beside the dev one: two instances of different kinds are not replicates
    _replicates(store, aurocs={"norm": ("norm", [0.7])}, hashes=HASHES[:1])
    readme, page, _ = _render(store, catalog)
    part = _task_part(readme)
    assert "Across the" not in part and "not comparable and are ranked apart" in part
    assert "Kendall" not in page


def test_replicate_index_is_validated(store, catalog):
    path = _at(store, "norm")
    doc = load(path)
    doc["instance"]["replicate"] = -1
    dump(path, doc)
    _, _, rejected = _render(store, catalog)
    assert len(rejected) == 1 and rejected[0].field == "instance.replicate"
    doc["instance"]["replicate"] = True  # a boolean is not an index
    dump(path, doc)
    assert _render(store, catalog)[2][0].field == "instance.replicate"
    doc["instance"]["replicate"] = 2
    dump(path, doc)
    assert not _render(store, catalog)[2]


def test_lid_track_replicates_rank_by_mean_mae(store, catalog):
    from mmh_bench.leaderboard.board import Board, InstanceFacts, Row, TaskFacts
    from mmh_bench.leaderboard.board.replicates import summarize
    board = Board()
    t = TaskFacts("lid-x", "1", "lid", "lid")
    insts = [InstanceFacts(i, "test", h, replicate=k) for k, (i, h) in enumerate(zip(IDS, HASHES))]
    t.instances = {i.data_hash: i for i in insts}
    board.tasks[("lid-x", "1")] = t
    for det, maes in (("a", [1.0, 2.0, 3.0]), ("b", [0.5, 0.7, 3.5])):
        for inst, mae in zip(insts, maes):
            board.rows.append(Row("measured", "lid-x", "1", "lid", "lid", det, "samples", group="sample-side",
                                  instance=inst.data_hash, metrics=LIDMetrics(mae=mae, mse=mae, concordance=0.9, n=100)))
    s = summarize(board, t, insts)
    assert s.heads == ["replicates", "MAE mean ± sd", "concordance mean ± sd"]
    assert [(rank, rep.detector) for rank, rep in s.groups[0][1]] == [(1, "b"), (2, "a")]  # 1.567 < 2.0
    assert s.taus == pytest.approx([1.0, -1.0, -1.0])  # b beats a on replicates 0 and 1 only
    md, page = render_markdown(board), render_html(board)
    assert "| 1   | sample-side | b" in md and "Across the 3 test replicates" in page


def test_public_beside_held_out_ranks_on_held_out_and_flags_only_a_gap_beyond_the_spread(store, catalog):
    """Three public (test) and three held-out (fresh) replicates: the overview uses the held-out
    mean, each detector's public and held-out numbers sit side by side, and only the detector whose
    public score the replicates' spread cannot explain is flagged."""
    fresh = ["d4" * 32, "e5" * 32, "f6" * 32]
    public = {"eps-norm": ("eps-norm", [0.90, 0.91, 0.92]), "norm": ("norm", [0.99, 1.00, 0.99])}
    held = {"eps-norm": ("eps-norm", [0.89, 0.92, 0.90]), "norm": ("norm", [0.52, 0.49, 0.50])}
    _replicates(store, aurocs=public)
    for det, (base, values) in held.items():
        for i, (data_hash, auroc) in enumerate(zip(fresh, values)):
            doc = as_instance(with_negatives(load(_at(store, base)), 600), "fresh", data_hash)
            doc["instance"]["replicate"] = i
            doc["detector"], doc["metrics"]["auroc"] = det, auroc
            dump(store / "results" / "tiny" / "v1" / doc["instance"]["id"] / f"{det}.json", doc)
    board = collect_board(store / "results", tasks=catalog)
    heads, rows = overview(board, "memorization")
    named = {r[1]: r[heads.index("tiny")] for r in rows}
    assert named["instance"] == "mean of 3 fresh" and named["norm"] == "0.503" and named["eps-norm"] == "0.903"
    readme, _, rejected = _render(store, catalog)
    assert not rejected, rejected
    part = _task_part(readme, "tiny")
    table = _md_tables(part.split("#### Public and held-out")[1])[0]
    by = {r[1]: r for r in table[1:]}
    assert by["norm"][3].startswith("0.993 ±") and by["norm"][4].startswith("0.503 ±") and by["norm"][-1] == "FLAGGED"
    assert by["eps-norm"][-1] == ""
    assert "(fresh, held out)" in part and "(test, public)" in part
