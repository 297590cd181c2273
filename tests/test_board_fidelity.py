"""The fidelity table: published Stable Diffusion rows beside the same detector at the same protocol
on every text-to-image task, with Kendall's tau per (published table, task). Hand-made boards with
known answers: an agreeing order gives tau = 1, a reversed one -1, and a protocol without its
exact configuration is shown not comparable, never matched to a neighbour."""
from __future__ import annotations

import pytest

from board_store import mem_metrics
from mmh_bench.leaderboard.board import Board, InstanceFacts, Row, TaskFacts, render_html, render_markdown
from mmh_bench.leaderboard.board.fidelity import CAUSE_DOC, FIDELITY_TITLE, fidelity, protocol_params
from mmh_bench.leaderboard.schema import DetectionMetrics, PublishedMetrics
from test_board import _md_tables

HASH = "d1" * 32
INST = f"test-{HASH[:12]}"
SOURCE = "Paper A, Table 1"


def _published(detector: str, setting: str, auroc: float, method: str = "", source: str = SOURCE) -> Row:
    return Row(kind="reported", task="sd-x", version="1", family="stable-diffusion", track="memorization",
               detector=detector, access=None, metrics=PublishedMetrics(auroc=auroc), citation=source, model="SD v1.4",
               method=method or detector or "unshipped method", setting=setting)


def _measured(name: str, params: dict, auroc: float, sub: dict[str, float] | None = None, task: str = "t2i-a",
              n_pos: int = 40) -> Row:
    per = {k: mem_metrics(v, DetectionMetrics, n_pos=n_pos) for k, v in (sub or {}).items()}
    return Row(kind="measured", task=task, version="1", family="text-to-image", track="memorization",
               detector=name, access="generation", group="generation-time", instance=HASH,
               metrics=mem_metrics(auroc, per_subtype=per), params={"generations": 1, "n_steps": 1, **params})


def _board(rows: list[Row], tasks: tuple[str, ...] = ("t2i-a",)) -> Board:
    board = Board(rows=rows)
    board.tasks[("sd-x", "1")] = TaskFacts("sd-x", "1", "stable-diffusion", "memorization")
    for t in tasks:
        board.tasks[(t, "1")] = TaskFacts(t, "1", "text-to-image", "memorization", sampler_steps=100,
                                          instances={HASH: InstanceFacts(INST, "test", HASH)})
    return board


PUBLISHED = [_published("sharpness", "n = 1, steps 1", 0.95), _published("cfg-norm", "n = 1, steps 1", 0.90),
             _published("attention-entropy(layer=3)", "n = 1, steps 1", 0.80)]


def _task_rows(sharp: float, cfg: float, le: float, task: str = "t2i-a") -> list[Row]:
    return [_measured("sharpness", {}, sharp, {"DD": sharp}, task), _measured("cfg-norm", {}, cfg, {"DD": cfg}, task),
            _measured("attention-entropy", {"layer": 3}, le, {"DD": le}, task)]


def test_settings_read_as_generations_and_steps():
    assert protocol_params("n = 4, steps 5") == {"generations": 4, "n_steps": 5}
    assert protocol_params("n = 1, first step") == protocol_params("n = 1, first DDIM step") == {
        "generations": 1, "n_steps": 1}
    for other in ("n = 1, second DDIM step (labelled \"Step 1\" there)", "under 2 s, batch size 4", "n = 1", ""):
        assert protocol_params(other) is None


def test_an_agreeing_order_gives_tau_one():
    fid = fidelity(_board(PUBLISHED + _task_rows(0.9, 0.8, 0.6)))
    (a,) = fid.agreements
    assert (a.n_rows, a.n_detectors, a.tau, a.tau_verbatim) == (3, 3, pytest.approx(1.0), pytest.approx(1.0))
    assert not a.disagrees and a.verdict() == "agrees in order"
    assert [c.auroc for fr in fid.rows for c in fr.cells] == [0.9, 0.8, 0.6]


def test_a_reversed_order_gives_tau_minus_one_and_points_to_the_cause():
    board = _board(PUBLISHED + _task_rows(0.3, 0.6, 0.7))
    (a,) = fidelity(board).agreements
    assert a.tau == pytest.approx(-1.0) and a.tau_verbatim == pytest.approx(-1.0)
    assert a.disagrees and a.best_below == ["sharpness(generations=1,n_steps=1)"]  # the paper's best, below chance
    assert a.verdict().startswith("disagrees: order reversed on all memorized (tau -1.00)")
    readme = render_markdown(board)
    assert f"[{CAUSE_DOC}](../{CAUSE_DOC})" in readme
    assert f'<a href="../{CAUSE_DOC}">{CAUSE_DOC}</a>' in render_html(board)


def test_the_best_detector_below_chance_is_a_disagreement_even_in_order():
    (a,) = fidelity(_board(PUBLISHED + _task_rows(0.45, 0.40, 0.30))).agreements
    assert a.tau == pytest.approx(1.0) and a.disagrees
    assert "below chance here" in a.verdict()


def test_an_unmatched_protocol_is_not_comparable_never_a_neighbour():
    published = [_published("cfg-norm", "n = 4, steps 1", 0.99), _published("cfg-norm", "n = 1, steps 5", 0.98),
                 _published("attention-entropy(layer=3)", "n = 1, steps 1", 0.85),
                 _published("", "n = 1, steps 50", 0.6, method="Ren et al. AE"),
                 _published("cfg-norm", "n = 1, second DDIM step", 0.96)]
    measured = [_measured("cfg-norm", {}, 0.7),  # n = 1, steps 1: asked by no row
                _measured("cfg-norm(n_steps=5,t_start=0.5)", {"n_steps": 5, "t_start": 0.5}, 0.7),  # an extra parameter
                _measured("attention-entropy(layer=null)", {"layer": None}, 0.7)]  # another layer
    fid = fidelity(_board(published + measured))
    reasons = [fr.cells[0].reason for fr in fid.rows]
    assert [fr.cells[0].row for fr in fid.rows] == [None] * 5
    assert reasons == [f"no result at this protocol on {INST}"] * 3 + ["no mmh-bench detector",
                                                                       "setting not given as n and steps"]
    assert fid.rows[0].config == "cfg-norm(generations=4,n_steps=1)"
    (a,) = fid.agreements
    assert a.n_rows == 0 and a.tau is None and a.verdict() == "not enough shared detectors"
    assert fid.cells(fid.rows[0])[-2:] == [(f"not comparable: no result at this protocol on {INST}", None),
                                           ("–", None)]


def test_a_named_variant_matches_its_own_protocol():
    fid = fidelity(_board([_published("cfg-norm", "n = 4, steps 5", 0.99)]
                          + [_measured("cfg-norm", {}, 0.5),
                             _measured("cfg-norm(generations=4,n_steps=5)", {"generations": 4, "n_steps": 5}, 0.66)]))
    assert fid.rows[0].cells[0].auroc == 0.66


def test_one_shared_detector_is_not_enough():
    rows = [_published("cfg-norm", "n = 1, steps 1", 0.9), _published("cfg-norm", "n = 1, steps 50", 0.95),
            _measured("cfg-norm", {}, 0.4), _measured("cfg-norm(n_steps=50)", {"n_steps": 50}, 0.6)]
    (a,) = fidelity(_board(rows)).agreements
    assert (a.n_rows, a.n_detectors, a.tau) == (2, 1, None) and a.verdict() == "not enough shared detectors"


def test_every_text_to_image_task_gets_columns_and_vm_is_its_verbatim_subtype():
    rows = PUBLISHED + _task_rows(0.9, 0.8, 0.6) + [
        _measured("sharpness", {}, 0.7, {"VM": 0.5, "TM": 0.9}, "t2i-b"),
        _measured("cfg-norm", {}, 0.8, {"VM": 0.6, "TM": 0.9}, "t2i-b", n_pos=5)]
    fid = fidelity(_board(rows, ("t2i-a", "t2i-b")))
    assert [(t.label, t.verbatim) for t in fid.tasks] == [("t2i-a", "DD"), ("t2i-b", "VM")]
    assert fid.heads()[-4:] == ["t2i-a: all memorized", "t2i-a: verbatim (DD)", "t2i-b: all memorized",
                                "t2i-b: verbatim (VM)"]
    assert [t for t, _ in fid.cells(fid.rows[1])[-2:]] == ["0.800", "n=5"]  # too few VM positives: the count
    b = fid.agreements[1]
    assert (b.task.label, b.n_rows, b.tau) == ("t2i-b", 2, pytest.approx(-1.0))


def test_the_board_renders_the_table_in_the_text_to_image_section_escaped():
    hostile = "<img src=x onerror=alert(1)>"
    board = _board([_published("cfg-norm", "n = 1, steps 1", 0.9, method=hostile)] + PUBLISHED[:1]
                   + _task_rows(0.9, 0.8, 0.6))
    readme = render_markdown(board)
    section = readme.split("## Text-to-image")[1]
    assert section.index(f"### {FIDELITY_TITLE}") < section.index("### t2i-a (v1)")
    table = next(t for t in _md_tables(section) if t[0][0] == "table")
    assert table[0][-2:] == ["t2i-a: all memorized", "t2i-a: verbatim (DD)"]
    assert table[1][5:] == ["0.900", "0.800", "0.800"] and hostile not in readme
    assert "t2i-a samples with 100 steps" in readme
    page = render_html(board)
    part = page.split('id="t-text-to-image-memorization-section"')[1].split("</section>")[0]
    assert f'<h3 id="fidelity">{FIDELITY_TITLE}</h3>' in part and hostile not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in part
    assert '<td class="s8">0.800</td>' in part  # AUROC cells shaded as in the measured tables


def test_no_table_without_published_rows_or_text_to_image_tasks():
    assert fidelity(_board(_task_rows(0.9, 0.8, 0.6))) is None
    assert fidelity(_board(PUBLISHED, tasks=())) is None
    assert FIDELITY_TITLE not in render_markdown(_board(_task_rows(0.9, 0.8, 0.6)))
